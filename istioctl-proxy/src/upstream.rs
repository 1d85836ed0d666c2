//! Talking to istiod replicas: one long-lived gRPC channel per replica address,
//! reused by every request (tonic reconnects it after failures), and the
//! one-request-one-answer exchange istioctl itself does.

use crate::config::UpstreamTransport;
use crate::discovery::Replica;
use crate::error::{Error, read_file};
use crate::wire::Received;
use futures::StreamExt;
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
}

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
    pub async fn ask(
        &self,
        replica: &Replica,
        request: DiscoveryRequest,
        token: Option<&str>,
    ) -> Result<Received, ReplicaError> {
        let channel = self.channel(&replica.address)?;
        // What the generated client does, with the answer read as a
        // `Received` (resources left encoded, see crate::wire).
        let mut client = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let type_url = request.type_url.clone();
        // The send side stays open until this call returns (answer, error or
        // deadline): then `_done` drops, the request stream ends and the
        // dropped response cancels the stream, so no stream is left open on istiod.
        let (_done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let outbound = futures::stream::once(async move { request }).chain(
            futures::stream::once(done_rx).filter_map(|_| async { None::<DiscoveryRequest> }),
        );
        let mut call = tonic::Request::new(outbound);
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ReplicaError::Connect("token is not a valid header value".into()))?;
            call.metadata_mut().insert("authorization", value);
        }
        client.ready().await.map_err(|e| {
            status_error(tonic::Status::unknown(format!(
                "Service was not ready: {}",
                Into::<tonic::codegen::StdError>::into(e)
            )))
        })?;
        let codec = ReceivedCodec;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(ADS_PATH);
        let mut inbound = client
            .streaming(call, path, codec)
            .await
            .map_err(status_error)?
            .into_inner();
        loop {
            match inbound.message().await.map_err(status_error)? {
                Some(resp) if resp.type_url == type_url => return Ok(resp),
                Some(_) => continue,
                None => return Err(ReplicaError::Closed),
            }
        }
    }
}

/// The ADS codec of the proxy's upstream side: requests encoded as tonic's
/// generated client does, answers read as [`Received`].
struct ReceivedCodec;

impl tonic::codec::Codec for ReceivedCodec {
    type Encode = DiscoveryRequest;
    type Decode = Received;
    type Encoder = tonic_prost::ProstEncoder<DiscoveryRequest>;
    type Decoder = ReceivedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReceivedDecoder
    }
}

/// Takes the message's bytes out of tonic's receive buffer as they are (a
/// split, no copy) and reads them as a [`Received`] that keeps them.
struct ReceivedDecoder;

impl tonic::codec::Decoder for ReceivedDecoder {
    type Item = Received;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Received>, tonic::Status> {
        use prost::bytes::Buf;
        let whole = buf.copy_to_bytes(buf.remaining());
        // As tonic-prost reports a message that does not decode.
        Received::decode(whole)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
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
