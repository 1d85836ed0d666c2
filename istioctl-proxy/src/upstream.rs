//! Talking to istiod replicas: one long-lived gRPC channel per replica address,
//! reused by every request (tonic reconnects it after failures), and the
//! one-request-one-answer exchange istioctl itself does.

use crate::config::UpstreamTransport;
use crate::discovery::Replica;
use crate::error::{Error, read_file};
use crate::grpc_frames::{FrameError, Messages};
use crate::merge::Checks;
use crate::wire::Received;
use futures::StreamExt;
use prost::Message;
use prost::bytes::Bytes;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// HTTP/2 flow-control window: answers of many MiB need far more than 64 KiB
/// in flight to be fast (istioctl's grpc-go sizes its window dynamically).
/// Used for the upstream channels (what replicas may send us).
pub(crate) const HTTP2_WINDOW: u32 = 8 * 1024 * 1024;

const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// Why one replica gave no usable answer. `Display` is the short reason shown
/// in errors and marker rows (`istiod-2 (unreachable: deadline exceeded)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("deadline exceeded after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("request deadline exceeded before it answered")]
    RequestDeadline,
    #[error("answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("stream closed without an answer")]
    Closed,
    #[error("invalid answer: {0}")]
    Invalid(String),
    #[error("not asked: an earlier replica failed (sequential fail-fast)")]
    NotAsked,
}

/// The channels to the replicas and how to dial new ones.
pub struct Upstream {
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// The largest answer read from a replica (`--max-replica-answer-bytes`).
    pub(crate) max_answer_bytes: usize,
    /// How much of each answer is checked on arrival (see [`Checks`]).
    pub(crate) checks: Checks,
}

/// The default of `--max-replica-answer-bytes`: 512 MiB, ten times the
/// syncz answer of a 100,000-proxy mesh (49 MB, `PERFORMANCE.md`).
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 512 * 1024 * 1024;

impl Upstream {
    /// Reads the upstream TLS material now, so a missing CA or client key is a
    /// start-up error, not a per-request surprise.
    pub fn new(transport: &UpstreamTransport, connect_timeout: Duration) -> Result<Self, Error> {
        let tls = match transport {
            UpstreamTransport::Plaintext => None,
            UpstreamTransport::Tls {
                ca,
                server_name,
                client_identity,
            } => {
                let ca_pem = read_file("istiod CA bundle", ca)?;
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .domain_name(server_name.clone());
                if let Some((cert, key)) = client_identity {
                    let cert = read_file("upstream client certificate", cert)?;
                    let key = read_file("upstream client key", key)?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                Some(tls)
            }
        };
        Ok(Upstream {
            tls,
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            checks: Checks::Full,
        })
    }

    /// The channel to `address`, created on first use and then reused.
    fn channel(&self, address: &str) -> Result<Channel, ReplicaError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| ReplicaError::Connect("channel cache poisoned".into()))?;
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| ReplicaError::Connect(format!("invalid address {address}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(HTTP2_WINDOW)
            .initial_connection_window_size(HTTP2_WINDOW);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ReplicaError::Connect(format!("TLS setup for {address}: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// Drops the channels of replicas that discovery no longer lists.
    pub fn retain(&self, replicas: &[Replica]) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.retain(|addr, _| replicas.iter().any(|r| r.address == *addr));
        }
    }

    /// How many channels are open (tests: channel reuse).
    pub fn channel_count(&self) -> usize {
        self.channels.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Sends `request` on a new stream of the replica's channel and returns the
    /// first response of the same type URL (what istioctl does). The send side
    /// stays open until then (a half-close could end the stream before the answer).
    /// The answer is read with [`Messages`]: at most `max_answer_bytes`, its
    /// buffer growing with what arrived.
    pub async fn ask(
        &self,
        replica: &Replica,
        request: DiscoveryRequest,
        token: Option<&str>,
    ) -> Result<Received, ReplicaError> {
        use http_body_util::BodyExt;
        use tonic::codegen::Service;
        let mut channel = self.channel(&replica.address)?;
        let type_url = request.type_url.clone();
        // The send side stays open until this call returns (answer, error or
        // deadline): then `_done` drops, the request stream ends and the
        // dropped response cancels the stream, so no stream is left open on istiod.
        let (_done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut framed = Vec::with_capacity(5 + request.encoded_len());
        framed.push(0);
        framed.extend_from_slice(&(request.encoded_len() as u32).to_be_bytes());
        request
            .encode(&mut framed)
            .map_err(|e| ReplicaError::Connect(format!("encoding the request: {e}")))?;
        let outbound = futures::stream::once(async move {
            Ok::<_, tonic::Status>(http_body::Frame::data(Bytes::from(framed)))
        })
        .chain(futures::stream::once(done_rx).filter_map(|_| async { None }));
        let mut call = http::Request::builder()
            .method(http::Method::POST)
            .uri(ADS_PATH)
            .header(http::header::TE, "trailers")
            .header(http::header::CONTENT_TYPE, "application/grpc");
        if let Some(token) = token {
            let value = http::HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| ReplicaError::Connect("token is not a valid header value".into()))?;
            call = call.header(http::header::AUTHORIZATION, value);
        }
        let call = call
            .body(tonic::body::Body::new(http_body_util::StreamBody::new(
                outbound,
            )))
            .map_err(|e| ReplicaError::Connect(format!("building the request: {e}")))?;
        futures::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(transport_error)?;
        let response = channel.call(call).await.map_err(transport_error)?;
        // A trailers-only answer (an error before any message).
        if let Some(status) = tonic::Status::from_header_map(response.headers())
            && status.code() != tonic::Code::Ok
        {
            return Err(status_error(status));
        }
        if response.status() != http::StatusCode::OK {
            return Err(ReplicaError::Status {
                code: tonic::Code::Unknown,
                message: format!("HTTP status {}", response.status()),
            });
        }
        let mut body = response.into_body();
        let mut messages = Messages::new(self.max_answer_bytes);
        let too_large = |e: FrameError| ReplicaError::Invalid(e.to_string());
        loop {
            let frame = match body.frame().await {
                None => return Err(ReplicaError::Closed),
                Some(Err(status)) => return Err(status_error(status)),
                Some(Ok(frame)) => frame,
            };
            let frame = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // Trailers: the stream ended without the answer.
                    let status = frame
                        .trailers_ref()
                        .and_then(tonic::Status::from_header_map);
                    return Err(match status {
                        Some(s) if s.code() != tonic::Code::Ok => status_error(s),
                        _ => ReplicaError::Closed,
                    });
                }
            };
            messages.push(frame).map_err(too_large)?;
            while let Some(message) = messages.next_message().map_err(too_large)? {
                // As tonic-prost reports a message that does not decode.
                let resp = Received::decode(message).map_err(|e| ReplicaError::Status {
                    code: tonic::Code::Internal,
                    message: e.to_string(),
                })?;
                if resp.type_url == type_url {
                    return Ok(resp);
                }
            }
        }
    }
}

/// A failure of the channel itself (connecting, or the connection).
fn transport_error(e: tonic::transport::Error) -> ReplicaError {
    use std::error::Error as _;
    let mut deepest = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        deepest = s.to_string();
        source = s.source();
    }
    ReplicaError::Connect(deepest)
}

/// A transport failure (no answer from istiod) or istiod's own status.
fn status_error(status: tonic::Status) -> ReplicaError {
    use std::error::Error as _;
    // tonic reports connection failures as Unavailable with a transport source.
    let mut source = status.source();
    let mut deepest = None;
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = deepest
        && status.code() == tonic::Code::Unavailable
    {
        return ReplicaError::Connect(cause);
    }
    ReplicaError::Status {
        code: status.code(),
        message: status.message().to_string(),
    }
}
