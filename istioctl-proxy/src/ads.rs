//! The ADS gRPC service as the proxy serves it: requests are decoded by tonic
//! as usual; answers ([`crate::wire::Answer`]) are written by [`AnswerBody`]
//! in chunks straight from the replicas' encoded resources, pulled as the
//! client's HTTP/2 window opens, so an answer is never copied whole (tonic's
//! generated server would encode each one into a buffer of its full size).
//! Otherwise this is what `tonic-build` generates for the service: same
//! paths, headers, trailers and statuses.

use crate::limits::{ConnInfo, Written};
use crate::server::AdsService;
use crate::wire::{Answer, Encoding};
use futures::Stream;
use http_body::Frame;
use prost::bytes::Bytes;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codegen::{BoxFuture, Service, StdError, http};

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const STREAM_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// How much of an answer is copied out at a time (one chunk per poll of the
/// body; hyper polls again once the client's window has room).
const CHUNK: usize = 128 * 1024;
/// Answer bytes handed to HTTP/2 but not yet written to the connection, at
/// most (plus one chunk): hyper takes chunks as long as the client's window
/// has room, and istioctl's window grows to several MiB, so without this
/// bound each reader would hold that much of a copy.
const UNWRITTEN: u64 = 1024 * 1024;

/// The service, ready for `tonic::transport::Server::add_service`.
#[derive(Clone)]
pub(crate) struct AdsServer {
    inner: Arc<AdsService>,
    max_decoding: usize,
    max_encoding: usize,
    /// Hold chunks back while [`UNWRITTEN`] bytes are not written (off only
    /// for the `unbounded-answers` defect).
    bounded: bool,
}

impl AdsServer {
    pub fn new(inner: AdsService, max_decoding: usize, max_encoding: usize, bounded: bool) -> Self {
        AdsServer {
            inner: Arc::new(inner),
            max_decoding,
            max_encoding,
            bounded,
        }
    }
}

impl tonic::server::NamedService for AdsServer {
    const NAME: &'static str = SERVICE;
}

/// Compressed requests are refused, as tonic does without compression features.
fn check_encoding<B>(req: &http::Request<B>) -> Result<(), Status> {
    match req.headers().get("grpc-encoding") {
        None => Ok(()),
        Some(v) if v.as_bytes() == b"identity" => Ok(()),
        Some(v) => Err(Status::unimplemented(format!(
            "Content is compressed with `{}` which isn't supported",
            String::from_utf8_lossy(v.as_bytes())
        ))),
    }
}

impl<B> Service<http::Request<B>> for AdsServer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            STREAM_PATH => {
                if let Err(status) = check_encoding(&req) {
                    return Box::pin(async move { Ok(status.into_http()) });
                }
                let inner = self.inner.clone();
                let max_encoding = self.max_encoding;
                let ext = req.extensions();
                let written = ext
                    .get::<ConnInfo>()
                    .or_else(|| {
                        ext.get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                            .map(|t| t.get_ref())
                    })
                    .map(|c| c.written.clone())
                    .filter(|_| self.bounded);
                let decoder = tonic_prost::ProstDecoder::<DiscoveryRequest>::default();
                let max_decoding = self.max_decoding;
                let req = req.map(|body| {
                    tonic::Streaming::new_request(decoder, body, None, Some(max_decoding))
                });
                let req = tonic::Request::from_http(req);
                Box::pin(async move {
                    Ok(match inner.stream_aggregated_resources(req).await {
                        Err(status) => status.into_http(),
                        Ok(resp) => {
                            let (metadata, stream, _) = resp.into_parts();
                            let body = AnswerBody::new(stream, max_encoding, written);
                            let mut http = http::Response::new(tonic::body::Body::new(body));
                            *http.headers_mut() = metadata.into_headers();
                            http.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                tonic::metadata::GRPC_CONTENT_TYPE,
                            );
                            http
                        }
                    })
                })
            }
            DELTA_PATH => Box::pin(async move {
                Ok(Status::unimplemented(
                    "istioctl-proxy does not serve DeltaAggregatedResources (delta xDS); \
                     istioctl uses StreamAggregatedResources",
                )
                .into_http())
            }),
            _ => Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            }),
        }
    }
}

/// The response body of one ADS stream: each answer as gRPC messages in
/// chunks, the next answer only once the previous one is out, then trailers
/// (`grpc-status`, from the stream's error or OK at its end).
pub(crate) struct AnswerBody<S> {
    answers: S,
    current: Option<Encoding>,
    max_message: usize,
    done: bool,
    /// The connection's written bytes (when served through
    /// `limits::incoming`), to hold back chunks the connection has not written.
    written: Option<Arc<Written>>,
    /// Bytes handed over so far, and the connection's count when this body began.
    handed: u64,
    base: u64,
    /// Waiting for the connection to write more.
    wait: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl<S> AnswerBody<S> {
    pub fn new(answers: S, max_message: usize, written: Option<Arc<Written>>) -> Self {
        let base = written.as_ref().map_or(0, |w| w.bytes());
        AnswerBody {
            answers,
            current: None,
            max_message,
            done: false,
            written,
            handed: 0,
            base,
            wait: None,
        }
    }

    /// Pending while more than [`UNWRITTEN`] bytes handed over are not
    /// written yet (the connection's count includes frame overhead and other
    /// streams: it can only run ahead, letting more through, never less).
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(wait) = &mut self.wait {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let Some(written) = &self.written else {
                return Poll::Ready(());
            };
            let out = written.bytes().saturating_sub(self.base);
            if self.handed <= out + UNWRITTEN {
                return Poll::Ready(());
            }
            let target = self.base + self.handed - UNWRITTEN;
            let w = written.clone();
            self.wait = Some(Box::pin(async move { w.reach(target).await }));
        }
    }

    fn trailers(&mut self, status: &Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.done = true;
        let mut map = http::HeaderMap::new();
        if let Err(e) = status.add_header(&mut map) {
            tracing::warn!(error = %e, "the answer's status could not be written");
            map = http::HeaderMap::new();
            map.insert(Status::GRPC_STATUS, (tonic::Code::Internal as i32).into());
        }
        Poll::Ready(Some(Ok(Frame::trailers(map))))
    }
}

impl<S> http_body::Body for AnswerBody<S>
where
    S: Stream<Item = Result<Answer, Status>> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.current.is_some() {
                if this.poll_room(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(chunk) = this.current.as_mut().and_then(|e| e.next_chunk(CHUNK)) {
                    this.handed += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                this.current = None;
            }
            match Pin::new(&mut this.answers).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return this.trailers(&Status::ok("")),
                Poll::Ready(Some(Err(status))) => return this.trailers(&status),
                Poll::Ready(Some(Ok(answer))) => {
                    let len = answer.encoded_len();
                    // As tonic's encoder says it (gRPC frames carry a u32 length).
                    let limit = this.max_message.min(u32::MAX as usize);
                    if len > limit {
                        return this.trailers(&Status::out_of_range(format!(
                            "Error, encoded message length too large: found {len} bytes, the limit is: {limit} bytes"
                        )));
                    }
                    this.current = Some(Encoding::new(answer, true));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
