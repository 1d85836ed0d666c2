//! A minimal istioctl-style client: open a stream, send one request, read the
//! first answer. For tests, benches and quick checks (the harness has the
//! faithful istioctl client).

use prost::Message;
use proto::envoy::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use proto::envoy::envoy::service::status::v3::ClientConfig;
use proto::node::IstioctlNode;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// How to reach a replica.
#[derive(Debug, Clone, Default)]
pub struct Dial {
    /// CA PEM to trust; Some = TLS.
    pub ca_pem: Option<String>,
    /// Bearer token sent as `authorization`.
    pub token: Option<String>,
    /// Client certificate and key (PEM) for mutual TLS, istioctl's `--cert-dir`.
    pub client_cert: Option<(String, String)>,
    /// Server name checked against the certificate (default: the IP address, which
    /// every serving certificate carries).
    pub domain: Option<String>,
}

/// A request as istioctl builds it (node id with an IP, metadata GENERATOR,
/// SERVICE_ACCOUNT=default, NAMESPACE, ISTIO_VERSION).
pub fn istioctl_request(
    type_url: &str,
    resource_names: &[&str],
    namespace: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: resource_names.iter().map(|s| s.to_string()).collect(),
        response_nonce: "2026-11-22T02:00:00Z".to_string(),
        node: Some(IstioctlNode::new([10, 0, 0, 1].into(), namespace).to_node()),
        ..Default::default()
    }
}

pub async fn channel(addr: SocketAddr, dial: &Dial) -> Result<Channel, Status> {
    let scheme = if dial.ca_pem.is_some() {
        "https"
    } else {
        "http"
    };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(ca) = &dial.ca_pem {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(dial.domain.clone().unwrap_or_else(|| addr.ip().to_string()));
        if let Some((cert, key)) = &dial.client_cert {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        ep = ep
            .tls_config(tls)
            .map_err(|e| Status::unavailable(e.to_string()))?;
    }
    ep.connect()
        .await
        .map_err(|e| Status::unavailable(format!("connect {addr}: {e}")))
}

/// Sends requests on one stream and returns one answer per request, in order
/// (the stream stays open until all answers are read, istioctl-style: no ACK).
pub async fn ask_many(
    addr: SocketAddr,
    dial: &Dial,
    requests: Vec<DiscoveryRequest>,
) -> Result<Vec<DiscoveryResponse>, Status> {
    let ch = channel(addr, dial).await?;
    ask_on(ch, dial, requests).await
}

/// As [`ask_many`], on an existing channel (connections are reused).
pub async fn ask_on(
    ch: Channel,
    dial: &Dial,
    requests: Vec<DiscoveryRequest>,
) -> Result<Vec<DiscoveryResponse>, Status> {
    let mut client = AggregatedDiscoveryServiceClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let n = requests.len();
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for r in requests {
        let _ = tx.send(r).await;
    }
    // Keep the sender alive: istioctl never closes its side.
    let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(t) = &dial.token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|_| Status::invalid_argument("token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", v);
    }
    let mut stream = client.stream_aggregated_resources(req).await?.into_inner();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match stream.message().await? {
            Some(r) => out.push(r),
            None => return Err(Status::unavailable("stream closed before all answers")),
        }
    }
    drop(tx);
    Ok(out)
}

/// Sends every request on one stream and returns the FIRST answer, whichever
/// request it answers (a replica answers in order, so a later request's answer
/// coming first proves the earlier ones got none: istiod ≤1.19's silence).
pub async fn ask_first(
    addr: SocketAddr,
    dial: &Dial,
    requests: Vec<DiscoveryRequest>,
) -> Result<DiscoveryResponse, Status> {
    let ch = channel(addr, dial).await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(ch).max_decoding_message_size(usize::MAX);
    let (tx, rx) = tokio::sync::mpsc::channel(requests.len().max(1));
    for r in requests {
        let _ = tx.send(r).await;
    }
    let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(t) = &dial.token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|_| Status::invalid_argument("token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", v);
    }
    let mut stream = client.stream_aggregated_resources(req).await?.into_inner();
    let first = stream
        .message()
        .await?
        .ok_or_else(|| Status::unavailable("stream closed before any answer"));
    drop(tx);
    first
}

/// One request, one answer.
pub async fn ask(
    addr: SocketAddr,
    dial: &Dial,
    request: DiscoveryRequest,
) -> Result<DiscoveryResponse, Status> {
    let mut v = ask_many(addr, dial, vec![request]).await?;
    v.pop().ok_or_else(|| Status::internal("no answer"))
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
