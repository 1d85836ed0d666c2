//! What istioctl sends (`istioctl/pkg/xds/client.go` `GetXdsResponse` over
//! `pkg/adsc`): one ADS stream, one `DiscoveryRequest` with istioctl's node and a
//! timestamp nonce, then the first response of the requested type; unlimited
//! receive size; errors worded as istioctl prints them. istioctl 1.8-1.15 also
//! ACK that response on the same stream (`1.12.0:pkg/adsc/adsc.go` `ack`), which
//! the client does when it emulates those versions ([`IstioctlRules::acks`]).
//!
//! Credential modes (istioctl/pkg/clioptions/central.go, client.go `DialOptions`):
//! default = TLS without certificate checks plus a bearer token; `--plaintext`;
//! `--cert-dir` = mTLS with `root-cert.pem`, `cert-chain.pem`, `key.pem`
//! (`--insecure` skips verification); plus verified TLS (`--ca-file`), which
//! istioctl lacks. `--authority` is the name expected in the server's
//! certificate (`1.30.0:istioctl/pkg/clioptions/central.go` binds it to
//! `XDSSAN`; `1.30.0:pkg/adsc/adsc.go` `tlsConfig` uses it as the TLS
//! `ServerName`), not the HTTP/2 `:authority`, which stays the dialled address.

pub mod raw;

use http::Uri;
use hyper_util::rt::TokioIo;
use proto::envoy::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use proto::node::IstioctlNode;
use proto::{IstioVersion, IstioctlRules};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// istioctl's `--timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stream stays open in the background after an ACK (see [`fetch_request`]).
const ACK_LINGER: Duration = Duration::from_secs(2);

/// How to authenticate to the xDS address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `--plaintext`: no TLS, no token.
    Plaintext,
    /// Plaintext with a bearer token (not in istioctl: the bench uses it for
    /// proxies under test that serve plaintext but still authenticate callers).
    PlaintextWithToken { token: Option<String> },
    /// istioctl's default: TLS that accepts any server certificate, plus
    /// `authorization: Bearer <token>` when a token is given.
    InsecureTlsWithToken { token: Option<String> },
    /// TLS verified against `ca_pem` (not in istioctl), plus an optional bearer token.
    VerifiedTls {
        ca_pem: Vec<u8>,
        token: Option<String>,
    },
    /// `--cert-dir`: mTLS with `root-cert.pem`, `cert-chain.pem`, `key.pem`;
    /// no token. `insecure_skip_verify` is `--insecure`.
    MutualTls {
        cert_dir: PathBuf,
        insecure_skip_verify: bool,
    },
    /// mTLS verified against `ca_pem`, with a client certificate chain and
    /// key given as PEM instead of read from a `--cert-dir` (not in istioctl:
    /// tests and fake-istiod's `ask` hold them in memory), plus an optional
    /// bearer token.
    VerifiedMutualTls {
        ca_pem: Vec<u8>,
        cert_chain_pem: Vec<u8>,
        key_pem: Vec<u8>,
        token: Option<String>,
    },
}

impl Credentials {
    pub fn token(&self) -> Option<&str> {
        match self {
            Credentials::InsecureTlsWithToken { token }
            | Credentials::PlaintextWithToken { token }
            | Credentials::VerifiedTls { token, .. }
            | Credentials::VerifiedMutualTls { token, .. } => token.as_deref(),
            _ => None,
        }
    }
}

/// Where and how to send istioctl's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// `--xds-address`: `host:port`.
    pub address: String,
    pub credentials: Credentials,
    /// `--authority`: the name expected in the server's certificate (TLS
    /// server name and verification in `--cert-dir` and `--ca-file` modes;
    /// istioctl's default mode checks no certificate). Never the HTTP/2 `:authority`.
    pub authority: Option<String>,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--istioNamespace` / `ISTIOCTL_ISTIONAMESPACE`: the node's `NAMESPACE`.
    pub istio_namespace: String,
    /// The IP in the node id; `None` = the host's first non-loopback IP.
    pub node_ip: Option<IpAddr>,
    /// The istioctl version emulated on the wire (whether responses are ACKed).
    pub istioctl: IstioctlRules,
}

/// The istioctl the client emulates unless told otherwise (no ACK of debug types).
pub fn default_istioctl() -> IstioctlRules {
    IstioctlRules::new(IstioVersion::new(1, 30, 0))
}

impl ClientOptions {
    /// `--plaintext --xds-address address`, other settings as istioctl's defaults.
    pub fn plaintext(address: impl Into<String>) -> Self {
        ClientOptions {
            address: address.into(),
            credentials: Credentials::Plaintext,
            authority: None,
            timeout: DEFAULT_TIMEOUT,
            istio_namespace: proto::node::DEFAULT_ISTIO_NAMESPACE.to_string(),
            node_ip: None,
            istioctl: default_istioctl(),
        }
    }

    /// The node istioctl would send.
    pub fn node(&self) -> IstioctlNode {
        IstioctlNode::new(
            self.node_ip.unwrap_or_else(host_ip),
            self.istio_namespace.clone(),
        )
    }
}

/// Why no response came back; `Display` is istioctl's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Bad address or unreadable credentials (istioctl: `could not dial: ...`).
    #[error("could not dial: {0}")]
    Dial(String),
    /// The connection could not be made (gRPC `Unavailable` before the stream started).
    #[error(
        "ADSC: failed running rpc error: code = Unavailable desc = connection error: desc = \"{0}\""
    )]
    Connect(String),
    /// The server ended the stream with a gRPC status.
    #[error("rpc error: code = {} desc = {message}", go_code_name(*.code))]
    Status { code: tonic::Code, message: String },
    /// No response of the requested type within `--timeout`.
    #[error("timeout, still waiting for updates: {type_url}")]
    Timeout { type_url: String },
    /// The server closed the stream without answering.
    #[error("EOF")]
    Eof,
}

impl ClientError {
    /// The gRPC status code, when the error is one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            ClientError::Connect(_) => Some(tonic::Code::Unavailable),
            ClientError::Timeout { .. } => Some(tonic::Code::DeadlineExceeded),
            _ => None,
        }
    }
}

/// grpc-go's name for a status code (`codes.Code.String()`).
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The host's first non-loopback IP (adsc `getPrivateIPIfAvailable`), found
/// through the routing table; `0.0.0.0` when there is none, as in adsc.
pub fn host_ip() -> IpAddr {
    let probe = |bind: &str, target: &str| -> Option<IpAddr> {
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(target).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    };
    probe("0.0.0.0:0", "10.255.255.255:9")
        .or_else(|| probe("0.0.0.0:0", "192.0.2.1:9"))
        .or_else(|| probe("[::]:0", "[2001:db8::1]:9"))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `time.Now().String()` as adsc puts it in `response_nonce`.
fn go_now_string() -> String {
    let now = time::OffsetDateTime::now_utc();
    let nanos = now.nanosecond();
    let date = format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let time = format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second());
    let mut frac = format!("{nanos:09}");
    while frac.ends_with('0') && frac.len() > 1 {
        frac.pop();
    }
    let monotonic = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{date} {time}.{frac} +0000 UTC m=+0.{monotonic:09}")
}

/// The request istioctl sends for `type_url`.
pub fn discovery_request(
    node: &IstioctlNode,
    type_url: &str,
    resource_names: &[String],
) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(node.to_node()),
        type_url: type_url.to_string(),
        resource_names: resource_names.to_vec(),
        response_nonce: go_now_string(),
        ..Default::default()
    }
}

/// The ACK istioctl 1.8-1.15 send for a response (`1.12.0:pkg/adsc/adsc.go`
/// `ack`): the response's nonce, type URL and version, the node again, and no
/// resource names (adsc lists names only for EDS and RDS).
pub fn ack_request(node: &IstioctlNode, resp: &DiscoveryResponse) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(node.to_node()),
        type_url: resp.type_url.clone(),
        response_nonce: resp.nonce.clone(),
        version_info: resp.version_info.clone(),
        ..Default::default()
    }
}

/// Sends istioctl's request and returns the first response of `type_url`
/// (ACKing it on the same stream when the emulated istioctl does).
pub async fn fetch(
    opts: &ClientOptions,
    type_url: &str,
    resource_names: &[String],
) -> Result<DiscoveryResponse, ClientError> {
    let request = discovery_request(&opts.node(), type_url, resource_names);
    match tokio::time::timeout(opts.timeout, fetch_request(opts, request)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout {
            type_url: type_url.to_string(),
        }),
    }
}

/// Sends an arbitrary request (the node and nonce as given) and returns the
/// first response of its type URL. No timeout: wrap it in one.
pub async fn fetch_request(
    opts: &ClientOptions,
    request: DiscoveryRequest,
) -> Result<DiscoveryResponse, ClientError> {
    let type_url = request.type_url.clone();
    let channel = connect(opts).await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    // Like istioctl, the request side stays open while waiting; it closes when
    // `keep_open` is dropped (answer received, error or timeout), which also
    // lets the connection wind down.
    let (keep_open, rx) = tokio::sync::mpsc::channel::<DiscoveryRequest>(1);
    let outbound = tokio_stream::StreamExt::chain(
        tokio_stream::once(request),
        tokio_stream::wrappers::ReceiverStream::new(rx),
    );
    let req = authorized(opts, outbound)?;
    let mut stream = client
        .stream_aggregated_resources(req)
        .await
        .map_err(status)?
        .into_inner();
    loop {
        match stream.message().await.map_err(status)? {
            Some(resp) if resp.type_url == type_url => {
                if opts.istioctl.acks(&type_url) {
                    // adsc ACKs from its receive loop and istioctl returns
                    // without waiting for what the ACK brings. The stream stays
                    // open in the background until the server reacts to the ACK
                    // (istiod answers it) or 2 s passed, so the ACK reaches the
                    // wire instead of being cancelled with the stream.
                    let _ = keep_open.send(ack_request(&opts.node(), &resp)).await;
                    tokio::spawn(async move {
                        let _open = (keep_open, client);
                        let _ = tokio::time::timeout(ACK_LINGER, stream.message()).await;
                    });
                }
                return Ok(resp);
            }
            Some(_) => continue,
            None => return Err(ClientError::Eof),
        }
    }
}

/// What came on the stream after istioctl 1.8-1.15's ACK.
#[derive(Debug)]
pub enum AfterAck {
    /// A response (istiod answers a debug-type ACK again).
    Response(Box<DiscoveryResponse>),
    /// The server ended the stream cleanly.
    Closed,
    /// The server ended the stream with an error.
    Failed(ClientError),
    /// Nothing within the bound.
    Silent,
}

/// One istioctl 1.8-1.15 exchange on one stream: `request`, its first answer,
/// the ACK istioctl sends for it, then `follow_up` (so a server that answers
/// the ACK and one that ignores it both answer within `bound`), and the first
/// thing that came after the ACK.
pub async fn ack_exchange(
    opts: &ClientOptions,
    request: DiscoveryRequest,
    follow_up: Option<DiscoveryRequest>,
    bound: Duration,
) -> Result<(DiscoveryResponse, AfterAck), ClientError> {
    let type_url = request.type_url.clone();
    let exchange = async {
        let channel = connect(opts).await?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let (tx, rx) = tokio::sync::mpsc::channel::<DiscoveryRequest>(4);
        tx.send(request)
            .await
            .map_err(|_| ClientError::Dial("request channel closed".into()))?;
        let req = authorized(opts, tokio_stream::wrappers::ReceiverStream::new(rx))?;
        let mut inbound = client
            .stream_aggregated_resources(req)
            .await
            .map_err(status)?
            .into_inner();
        let first = loop {
            match inbound.message().await.map_err(status)? {
                Some(resp) if resp.type_url == type_url => break resp,
                Some(_) => continue,
                None => return Err(ClientError::Eof),
            }
        };
        let _ = tx.send(ack_request(&opts.node(), &first)).await;
        if let Some(next) = follow_up {
            let _ = tx.send(next).await;
        }
        let after = match tokio::time::timeout(bound, inbound.message()).await {
            Ok(Ok(Some(resp))) => AfterAck::Response(Box::new(resp)),
            Ok(Ok(None)) => AfterAck::Closed,
            Ok(Err(s)) => AfterAck::Failed(status(s)),
            Err(_) => AfterAck::Silent,
        };
        drop(tx);
        Ok((first, after))
    };
    match tokio::time::timeout(bound + bound, exchange).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { type_url }),
    }
}

/// A request with istioctl's `authorization: Bearer <token>` header, when the
/// credentials carry a token.
fn authorized<T>(opts: &ClientOptions, body: T) -> Result<tonic::Request<T>, ClientError> {
    with_token(opts.credentials.token(), body)
}

fn with_token<T>(token: Option<&str>, body: T) -> Result<tonic::Request<T>, ClientError> {
    let mut req = tonic::Request::new(body);
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::Dial("the token is not a valid header value".to_string()))?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(req)
}

fn status(s: tonic::Status) -> ClientError {
    ClientError::Status {
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// Sends several requests on ONE stream (left open, as istioctl leaves it) and
/// collects responses until `wait_for` arrived or `bound` passed, then keeps
/// listening `linger` for responses nobody asked for. The stream ending early
/// is not an error (what came is returned); a status before any response is.
pub async fn stream(
    opts: &ClientOptions,
    requests: Vec<DiscoveryRequest>,
    wait_for: usize,
    bound: Duration,
    linger: Duration,
) -> Result<Vec<DiscoveryResponse>, ClientError> {
    let channel = connect(opts).await?;
    stream_on(
        channel,
        opts.credentials.token(),
        requests,
        wait_for,
        bound,
        linger,
    )
    .await
}

/// As [`stream`], on a channel already made (e.g. by [`reconnecting_channel`]),
/// with `token` as the bearer token.
pub async fn stream_on(
    channel: Channel,
    token: Option<&str>,
    requests: Vec<DiscoveryRequest>,
    wait_for: usize,
    bound: Duration,
    linger: Duration,
) -> Result<Vec<DiscoveryResponse>, ClientError> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let outbound = tokio_stream::StreamExt::chain(
        tokio_stream::iter(requests),
        tokio_stream::pending::<DiscoveryRequest>(),
    );
    let req = with_token(token, outbound)?;
    let mut inbound =
        match tokio::time::timeout(bound, client.stream_aggregated_resources(req)).await {
            Ok(r) => r.map_err(status)?.into_inner(),
            Err(_) => return Ok(Vec::new()),
        };
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let until = if got.len() < wait_for {
            deadline
        } else {
            tokio::time::Instant::now() + linger
        };
        match tokio::time::timeout_at(until, inbound.message()).await {
            Ok(Ok(Some(resp))) => got.push(resp),
            Ok(Err(s)) if got.is_empty() => return Err(status(s)),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return Ok(got),
        }
    }
}

/// Opens a Delta xDS stream with one syncz request: `Ok(())` if a response
/// came back, the error (usually a gRPC status) otherwise, within the timeout.
pub async fn delta_probe(opts: &ClientOptions) -> Result<(), ClientError> {
    use proto::envoy::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    let probe = async {
        let channel = connect(opts).await?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let first = DeltaDiscoveryRequest {
            node: Some(opts.node().to_node()),
            type_url: proto::type_url::SYNCZ.to_string(),
            ..Default::default()
        };
        let outbound = tokio_stream::StreamExt::chain(
            tokio_stream::once(first),
            tokio_stream::pending::<DeltaDiscoveryRequest>(),
        );
        let mut inbound = client
            .delta_aggregated_resources(authorized(opts, outbound)?)
            .await
            .map_err(status)?
            .into_inner();
        match inbound.message().await.map_err(status)? {
            Some(_) => Ok(()),
            None => Err(ClientError::Eof),
        }
    };
    match tokio::time::timeout(opts.timeout, probe).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            type_url: "delta".to_string(),
        }),
    }
}

/// `host` and `port` of `host:port` (brackets stripped from IPv6).
fn split_host_port(address: &str) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::Dial(format!("address {address}: missing port in address"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

/// Go's wording for a dial error (`dial tcp ADDR: connect: connection refused`).
fn dial_error(address: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    format!("transport: Error while dialing: dial tcp {address}: {what}")
}

/// An established connection (handed to tonic once, or to a raw HTTP/2 client).
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

macro_rules! delegate_io {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => $e,
            Conn::Tls($s) => $e,
        }
    };
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate_io!(self, s => std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate_io!(self, s => std::pin::Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate_io!(self, s => std::pin::Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate_io!(self, s => std::pin::Pin::new(s).poll_shutdown(cx))
    }
}

/// Dials (TCP, then TLS if configured) and wraps the connection in a channel.
pub async fn connect(opts: &ClientOptions) -> Result<Channel, ClientError> {
    let conn = dial(opts).await?;
    // The HTTP/2 :authority is the dialled address, as grpc-go derives it from the target.
    let uri = format!("http://{}", opts.address);
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ClientError::Dial(format!("address {}: {e}", opts.address)))?;
    let slot = Arc::new(Mutex::new(Some(conn)));
    let connector = tower::service_fn(move |_: Uri| {
        let slot = slot.clone();
        async move {
            let conn = slot.lock().ok().and_then(|mut s| s.take());
            conn.map(TokioIo::new).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotConnected, "connection already used")
            })
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ClientError::Connect(format!("transport: {e}")))
}

/// A channel that dials again as [`dial`] does whenever its connection is
/// lost (the channel of [`connect`] uses its one connection only): for a
/// client that keeps a channel across a server going down and coming back.
/// The first connection is made before it returns.
pub async fn reconnecting_channel(opts: &ClientOptions) -> Result<Channel, ClientError> {
    let uri = format!("http://{}", opts.address);
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ClientError::Dial(format!("address {}: {e}", opts.address)))?;
    let opts = Arc::new(opts.clone());
    let connector = tower::service_fn(move |_: Uri| {
        let opts = opts.clone();
        async move {
            dial(&opts)
                .await
                .map(TokioIo::new)
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ClientError::Connect(format!("transport: {e}")))
}

/// A connection as istioctl's options dial it (TCP, then TLS with ALPN h2
/// if configured), for a client that speaks HTTP/2 itself.
pub async fn dial(opts: &ClientOptions) -> Result<Conn, ClientError> {
    let (host, port) = split_host_port(&opts.address)?;
    let tls = tls_config(opts)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ClientError::Connect(dial_error(&opts.address, &e)))?;
    let _ = tcp.set_nodelay(true);
    let conn = match tls {
        None => Conn::Plain(tcp),
        Some(cfg) => {
            // adsc `tlsConfig` (--cert-dir): ServerName = --authority, else the
            // address's host. istioctl's default mode (`DialOptions`) never sets
            // it ("We don't set the XDSSAN"): the host, and no check anyway.
            let name = match &opts.credentials {
                Credentials::MutualTls { .. }
                | Credentials::VerifiedTls { .. }
                | Credentials::VerifiedMutualTls { .. } => {
                    opts.authority.clone().unwrap_or_else(|| host.clone())
                }
                _ => host.clone(),
            };
            let server_name = ServerName::try_from(name.clone())
                .map_err(|_| ClientError::Dial(format!("invalid server name {name:?}")))?;
            let stream = TlsConnector::from(cfg)
                .connect(server_name, tcp)
                .await
                .map_err(|e| {
                    ClientError::Connect(format!("transport: authentication handshake failed: {e}"))
                })?;
            Conn::Tls(Box::new(stream))
        }
    };
    Ok(conn)
}

fn read_file(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            _ => e.to_string(),
        };
        ClientError::Dial(format!("open {}: {why}", path.display()))
    })
}

fn root_store(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientError::Dial(format!("{what}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Dial(format!("{what}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Dial(format!("{what}: no certificates found")));
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration of a credential mode (`None` = plaintext).
fn tls_config(opts: &ClientOptions) -> Result<Option<Arc<rustls::ClientConfig>>, ClientError> {
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Dial(e.to_string()))
    };
    let mut cfg = match &opts.credentials {
        Credentials::Plaintext | Credentials::PlaintextWithToken { .. } => return Ok(None),
        Credentials::InsecureTlsWithToken { .. } => builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth(),
        Credentials::VerifiedTls { ca_pem, .. } => builder()?
            .with_root_certificates(root_store(ca_pem, "--ca-file")?)
            .with_no_client_auth(),
        Credentials::MutualTls {
            cert_dir,
            insecure_skip_verify,
        } => {
            let root = cert_dir.join("root-cert.pem");
            let roots = root_store(&read_file(&root)?, &root.display().to_string())?;
            let chain_path = cert_dir.join("cert-chain.pem");
            let key_path = cert_dir.join("key.pem");
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(&read_file(&chain_path)?)
                    .collect::<Result<_, _>>()
                    .map_err(|e| ClientError::Dial(format!("{}: {e}", chain_path.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&read_file(&key_path)?)
                .map_err(|e| ClientError::Dial(format!("{}: {e}", key_path.display())))?;
            let b = builder()?;
            let b = if *insecure_skip_verify {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            } else {
                b.with_root_certificates(roots)
            };
            b.with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Dial(format!("{}: {e}", key_path.display())))?
        }
        Credentials::VerifiedMutualTls {
            ca_pem,
            cert_chain_pem,
            key_pem,
            ..
        } => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert_chain_pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| ClientError::Dial(format!("client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| ClientError::Dial(format!("client key: {e}")))?;
            builder()?
                .with_root_certificates(root_store(ca_pem, "CA")?)
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Dial(format!("client key: {e}")))?
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(cfg)))
}

/// `InsecureSkipVerify: true`: any certificate, signatures still checked.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::node::metadata_string;

    #[test]
    fn request_is_istioctls() {
        let node = IstioctlNode::new("10.0.0.7".parse().unwrap(), "external-istiod");
        let req = discovery_request(&node, proto::type_url::CONFIG_DUMP, &["a.b".to_string()]);
        let n = req.node.as_ref().unwrap();
        assert_eq!(
            n.id,
            "sidecar~10.0.0.7~test-1.default~default.svc.cluster.local"
        );
        assert_eq!(metadata_string(n, "NAMESPACE"), Some("external-istiod"));
        assert_eq!(metadata_string(n, "GENERATOR"), Some("event"));
        assert_eq!(metadata_string(n, "SERVICE_ACCOUNT"), Some("default"));
        assert_eq!(
            metadata_string(n, "ISTIO_VERSION"),
            Some("65536.65536.65536")
        );
        assert_eq!(req.resource_names, vec!["a.b".to_string()]);
        assert!(
            req.response_nonce.contains(" +0000 UTC m=+"),
            "{}",
            req.response_nonce
        );
    }

    #[test]
    fn ack_is_adscs() {
        // `1.12.0:pkg/adsc/adsc.go` `ack`: nonce, type URL and version of the
        // response, the node again, no resource names for debug types.
        let node = IstioctlNode::new("10.0.0.7".parse().unwrap(), "istio-system");
        let resp = DiscoveryResponse {
            type_url: proto::type_url::SYNCZ.into(),
            nonce: "n-1".into(),
            version_info: "2026-11-22T12:00:00Z/7".into(),
            ..Default::default()
        };
        let ack = ack_request(&node, &resp);
        assert_eq!(ack.response_nonce, "n-1");
        assert_eq!(ack.version_info, "2026-11-22T12:00:00Z/7");
        assert_eq!(ack.type_url, proto::type_url::SYNCZ);
        assert!(ack.resource_names.is_empty());
        assert_eq!(ack.node, Some(node.to_node()));
        // Only the versions that ACK debug types do it.
        let rules = |v: &str| IstioctlRules::new(v.parse().unwrap());
        assert!(rules("1.15.7").acks(proto::type_url::SYNCZ));
        assert!(!rules("1.16.0").acks(proto::type_url::SYNCZ));
        assert!(!default_istioctl().acks(proto::type_url::SYNCZ));
    }

    #[test]
    fn errors_read_like_istioctl() {
        let e = ClientError::Status {
            code: tonic::Code::Unauthenticated,
            message: "authentication required".into(),
        };
        assert_eq!(
            e.to_string(),
            "rpc error: code = Unauthenticated desc = authentication required"
        );
        assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
        let e = ClientError::Timeout {
            type_url: proto::type_url::SYNCZ.into(),
        };
        assert_eq!(
            e.to_string(),
            "timeout, still waiting for updates: istio.io/debug/syncz"
        );
        assert_eq!(go_code_name(tonic::Code::Cancelled), "Canceled");
    }

    #[test]
    fn host_ip_is_not_loopback() {
        assert!(!host_ip().is_loopback());
    }

    #[test]
    fn addresses_split_like_go() {
        assert_eq!(
            split_host_port("localhost:9090").unwrap(),
            ("localhost".into(), 9090)
        );
        assert_eq!(
            split_host_port("[::1]:15010").unwrap(),
            ("::1".into(), 15010)
        );
        assert!(split_host_port("nohost").is_err());
    }

    #[test]
    fn missing_cert_dir_is_a_dial_error() {
        let mut opts = ClientOptions::plaintext("127.0.0.1:1");
        opts.credentials = Credentials::MutualTls {
            cert_dir: PathBuf::from("/nonexistent-dir"),
            insecure_skip_verify: false,
        };
        let err = tls_config(&opts).unwrap_err().to_string();
        assert_eq!(
            err,
            "could not dial: open /nonexistent-dir/root-cert.pem: no such file or directory"
        );
    }
}
