//! A minimal istioctl-style client for tests, benches and quick checks: open
//! a stream, send requests, read the answers. The wire work is the
//! `istioctl-client` crate's (the faithful istioctl client the harness uses);
//! this keeps a small address-and-[`Dial`] front with `tonic::Status` errors.

use istioctl_client::{ClientError, ClientOptions, Credentials};
use prost::Message;
use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proto::envoy::envoy::service::status::v3::ClientConfig;
use proto::node::IstioctlNode;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::Status;
use tonic::transport::Channel;

/// How long [`ask_many`], [`ask_on`] and [`ask_first`] wait for all their answers.
pub const ANSWERS_BOUND: Duration = Duration::from_secs(30);

/// How to reach a replica.
#[derive(Debug, Clone, Default)]
pub struct Dial {
    /// CA PEM to trust; Some = TLS.
    pub ca_pem: Option<String>,
    /// Bearer token sent as `authorization`.
    pub token: Option<String>,
    /// Client certificate and key (PEM) for mutual TLS, istioctl's `--cert-dir`
    /// (used with `ca_pem` only).
    pub client_cert: Option<(String, String)>,
    /// Server name checked against the certificate (default: the IP address, which
    /// every serving certificate carries).
    pub domain: Option<String>,
}

impl Dial {
    /// The client's credentials for this dial.
    pub fn credentials(&self) -> Credentials {
        let token = self.token.clone();
        match (&self.ca_pem, &self.client_cert) {
            (None, _) if token.is_none() => Credentials::Plaintext,
            (None, _) => Credentials::PlaintextWithToken { token },
            (Some(ca), None) => Credentials::VerifiedTls {
                ca_pem: ca.clone().into_bytes(),
                token,
            },
            (Some(ca), Some((cert, key))) => Credentials::VerifiedMutualTls {
                ca_pem: ca.clone().into_bytes(),
                cert_chain_pem: cert.clone().into_bytes(),
                key_pem: key.clone().into_bytes(),
                token,
            },
        }
    }

    /// The client's options to reach `addr` with this dial.
    pub fn options(&self, addr: SocketAddr) -> ClientOptions {
        ClientOptions {
            credentials: self.credentials(),
            authority: self.domain.clone(),
            ..ClientOptions::plaintext(addr.to_string())
        }
    }
}

/// The node IP of [`istioctl_request`]'s node id.
pub const NODE_IP: [u8; 4] = [10, 0, 0, 1];

/// A request as istioctl builds it (node id with an IP, metadata GENERATOR,
/// SERVICE_ACCOUNT=default, NAMESPACE, ISTIO_VERSION; a timestamp nonce).
pub fn istioctl_request(
    type_url: &str,
    resource_names: &[&str],
    namespace: &str,
) -> DiscoveryRequest {
    let names: Vec<String> = resource_names.iter().map(|s| s.to_string()).collect();
    istioctl_client::discovery_request(
        &IstioctlNode::new(NODE_IP.into(), namespace),
        type_url,
        &names,
    )
}

/// A client error as the gRPC status a caller of this module expects.
pub fn status_of(e: ClientError) -> Status {
    match e {
        ClientError::Status { code, message } => Status::new(code, message),
        ClientError::Dial(m) => Status::invalid_argument(m),
        ClientError::Connect(m) => Status::unavailable(m),
        ClientError::Timeout { type_url } => {
            Status::deadline_exceeded(format!("no answer for {type_url}"))
        }
        ClientError::Eof => Status::unavailable("stream closed before any answer"),
    }
}

/// A channel to `addr` that reconnects when its connection is lost.
pub async fn channel(addr: SocketAddr, dial: &Dial) -> Result<Channel, Status> {
    istioctl_client::reconnecting_channel(&dial.options(addr))
        .await
        .map_err(status_of)
}

/// Sends requests on one stream and returns one answer per request, in order
/// (the stream stays open until all answers are read, istioctl-style: no ACK).
pub async fn ask_many(
    addr: SocketAddr,
    dial: &Dial,
    requests: Vec<DiscoveryRequest>,
) -> Result<Vec<DiscoveryResponse>, Status> {
    let n = requests.len();
    let got = istioctl_client::stream(
        &dial.options(addr),
        requests,
        n,
        ANSWERS_BOUND,
        Duration::ZERO,
    )
    .await
    .map_err(status_of)?;
    all_answers(got, n)
}

/// As [`ask_many`], on an existing channel (connections are reused).
pub async fn ask_on(
    ch: Channel,
    dial: &Dial,
    requests: Vec<DiscoveryRequest>,
) -> Result<Vec<DiscoveryResponse>, Status> {
    let n = requests.len();
    let got = istioctl_client::stream_on(
        ch,
        dial.token.as_deref(),
        requests,
        n,
        ANSWERS_BOUND,
        Duration::ZERO,
    )
    .await
    .map_err(status_of)?;
    all_answers(got, n)
}

/// The first `n` answers, or an error if fewer came.
fn all_answers(
    mut got: Vec<DiscoveryResponse>,
    n: usize,
) -> Result<Vec<DiscoveryResponse>, Status> {
    if got.len() < n {
        return Err(Status::unavailable(format!(
            "stream closed before all answers ({} of {n})",
            got.len()
        )));
    }
    got.truncate(n);
    Ok(got)
}

/// Sends every request on one stream and returns the FIRST answer, whichever
/// request it answers (a replica answers in order, so a later request's answer
/// coming first proves the earlier ones got none: istiod ≤1.19's silence).
pub async fn ask_first(
    addr: SocketAddr,
    dial: &Dial,
    requests: Vec<DiscoveryRequest>,
) -> Result<DiscoveryResponse, Status> {
    let got = istioctl_client::stream(
        &dial.options(addr),
        requests,
        1,
        ANSWERS_BOUND,
        Duration::ZERO,
    )
    .await
    .map_err(status_of)?;
    got.into_iter()
        .next()
        .ok_or_else(|| Status::unavailable("stream closed before any answer"))
}

/// One request, one answer (the first of its type URL).
pub async fn ask(
    addr: SocketAddr,
    dial: &Dial,
    request: DiscoveryRequest,
) -> Result<DiscoveryResponse, Status> {
    istioctl_client::fetch_request(&dial.options(addr), request)
        .await
        .map_err(status_of)
}

/// The ClientConfigs of a syncz answer.
pub fn decode_syncz(resp: &DiscoveryResponse) -> Result<Vec<ClientConfig>, prost::DecodeError> {
    resp.resources
        .iter()
        .map(|a| ClientConfig::decode(a.value.as_slice()))
        .collect()
}

/// The ControlPlane ID istioctl would show for an answer.
pub fn control_plane_id(resp: &DiscoveryResponse) -> String {
    proto::IstioControlPlaneInstance::istioctl_id(
        resp.control_plane.as_ref().map(|c| c.identifier.as_str()),
    )
}
