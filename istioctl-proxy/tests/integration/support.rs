//! Shared helpers of the loopback tests: fake-istiod replicas on 127.0.0.x,
//! the proxy on 127.0.0.1:0, and istioctl's client (`istioctl_client`).
#![allow(dead_code)]

use fake_istiod::scenario::Scenario;
use fake_istiod::{FakeIstiod, StartOptions};
use istioctl_client::{ClientError, ClientOptions, Credentials};
use istioctl_proxy::{ProxyConfig, RunningProxy};
use prost::Message;
use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proto::envoy::envoy::service::status::v3::ClientConfig;
use proto::node::IstioctlNode;
use proto::{IstioControlPlaneInstance, type_url};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

/// Bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

/// A scenario file, optionally adjusted.
pub fn scenario(name: &str) -> Scenario {
    Scenario::load(scenario_path(name)).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// A scenario whose replicas answer debug requests without a token (plaintext tests).
pub fn open_scenario(name: &str) -> Scenario {
    let mut s = scenario(name);
    s.auth.debug_endpoint_auth = false;
    s
}

pub async fn fake(scenario: Scenario) -> FakeIstiod {
    FakeIstiod::start(scenario, StartOptions::ephemeral())
        .await
        .expect("fake-istiod starts")
}

/// `name=plaintext_addr` for every replica, in scenario order.
pub fn plaintext_replicas(fake: &FakeIstiod) -> Vec<String> {
    fake.replicas()
        .iter()
        .map(|r| format!("{}={}", r.name, r.plaintext_addr))
        .collect()
}

pub fn plaintext_config(fake: &FakeIstiod) -> ProxyConfig {
    let mut c =
        ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), plaintext_replicas(fake));
    c.replica_timeout = Duration::from_secs(3);
    c.request_timeout = Duration::from_secs(6);
    c
}

pub async fn proxy(config: ProxyConfig) -> RunningProxy {
    istioctl_proxy::start(config).await.expect("proxy starts")
}

/// The node istioctl sends.
pub fn istioctl_request(type_url: &str, resource_names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: resource_names.iter().map(|s| s.to_string()).collect(),
        response_nonce: "2026-11-22T03:00:00Z".to_string(),
        node: Some(IstioctlNode::new("10.1.2.3".parse().unwrap(), "istio-system").to_node()),
        ..Default::default()
    }
}

/// istioctl's client for `addr`: plaintext, with `token` as a bearer token
/// if given, the node as [`istioctl_request`] has it.
pub fn client(addr: SocketAddr, token: Option<&str>) -> ClientOptions {
    let mut opts = ClientOptions::plaintext(addr.to_string());
    opts.node_ip = Some("10.1.2.3".parse().unwrap());
    opts.istio_namespace = "istio-system".to_string();
    opts.timeout = PATIENCE;
    if let Some(t) = token {
        opts.credentials = Credentials::PlaintextWithToken {
            token: Some(t.to_string()),
        };
    }
    opts
}

/// istioctl's client for a TLS address whose certificate names `authority`
/// and is signed by the CA `ca_pem`.
pub fn tls_client(
    addr: SocketAddr,
    ca_pem: &[u8],
    authority: &str,
    token: Option<&str>,
) -> ClientOptions {
    let mut opts = client(addr, None);
    opts.credentials = Credentials::VerifiedTls {
        ca_pem: ca_pem.to_vec(),
        token: token.map(str::to_string),
    };
    opts.authority = Some(authority.to_string());
    opts
}

/// A connection to `addr` as istioctl dials it (for tests that drive a
/// stream themselves).
pub async fn channel(addr: SocketAddr) -> Channel {
    istioctl_client::connect(&client(addr, None))
        .await
        .expect("connects to the proxy")
}

/// What istioctl does: one stream, one request, the first response.
pub async fn ask(
    addr: SocketAddr,
    type_url: &str,
    resource_names: &[&str],
    token: Option<&str>,
) -> Result<DiscoveryResponse, tonic::Status> {
    ask_with(
        &client(addr, token),
        istioctl_request(type_url, resource_names),
    )
    .await
}

/// Sends `req` as istioctl does (one stream, the request side open until
/// the answer) and returns the first response of its type, or the error as
/// a gRPC status.
pub async fn ask_with(
    opts: &ClientOptions,
    req: DiscoveryRequest,
) -> Result<DiscoveryResponse, tonic::Status> {
    match tokio::time::timeout(PATIENCE, istioctl_client::fetch_request(opts, req)).await {
        Ok(answer) => answer.map_err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded("test patience exhausted")),
    }
}

/// A client error as the gRPC status the tests look at.
fn status(e: ClientError) -> tonic::Status {
    match e {
        ClientError::Status { code, message } => tonic::Status::new(code, message),
        ClientError::Eof => tonic::Status::unknown("stream ended without a response"),
        ClientError::Timeout { .. } => tonic::Status::deadline_exceeded("test patience exhausted"),
        other => tonic::Status::unavailable(other.to_string()),
    }
}

/// Node ids of a syncz answer, in answer order.
pub fn node_ids(resp: &DiscoveryResponse) -> Vec<String> {
    resp.resources
        .iter()
        .map(|a| {
            assert_eq!(a.type_url, type_url::CLIENT_CONFIG);
            ClientConfig::decode(a.value.as_slice())
                .expect("ClientConfig")
                .node
                .map(|n| n.id)
                .unwrap_or_default()
        })
        .collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every proxy id of a scenario, sorted.
pub fn scenario_ids(s: &Scenario) -> Vec<String> {
    sorted(s.proxies.iter().map(|p| p.id.clone()).collect())
}

pub fn control_plane(resp: &DiscoveryResponse) -> IstioControlPlaneInstance {
    let cp = resp.control_plane.as_ref().expect("a ControlPlane");
    serde_json::from_str(&cp.identifier).expect("ControlPlane identifier is JSON")
}

/// Asks one replica directly (the reference answer).
pub async fn ask_replica(addr: SocketAddr, type_url: &str, names: &[&str]) -> DiscoveryResponse {
    ask(addr, type_url, names, None)
        .await
        .expect("replica answers")
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A ClientConfig with its update times cleared: fake-istiod computes them
/// from "now" on every answer, so two answers differ only there.
pub fn without_times(any: &prost_types_any::Any) -> ClientConfig {
    let mut cc = ClientConfig::decode(any.value.as_slice()).expect("ClientConfig");
    for g in &mut cc.generic_xds_configs {
        g.last_updated = None;
    }
    cc
}

/// The ClientConfig for `id` in an answer.
pub fn client_config(resp: &DiscoveryResponse, id: &str) -> Option<ClientConfig> {
    resp.resources
        .iter()
        .map(|a| ClientConfig::decode(a.value.as_slice()).expect("ClientConfig"))
        .find(|cc| cc.node.as_ref().is_some_and(|n| n.id == id))
}

mod prost_types_any {
    pub use proto::envoy::google::protobuf::Any;
}

/// A plaintext, anonymous proxy that dials the replicas' TLS ports with its
/// own token (`istio-system/istioctl-proxy`): what istiod 1.30's debug rules
/// need. The returned directory holds the token; keep it alive.
pub fn own_token_config(fake: &FakeIstiod) -> (ProxyConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("proxy.token");
    let spec = fake_istiod::TokenSpec::new("istio-system", "istioctl-proxy");
    std::fs::write(&token, fake.mint_token(&spec)).expect("token file");
    let replicas = fake
        .replicas()
        .iter()
        .map(|r| format!("{}={}", r.name, r.tls_addr))
        .collect();
    let mut c = ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), replicas);
    c.upstream = istioctl_proxy::UpstreamTransport::Tls {
        ca: fake.ca_file().to_path_buf(),
        server_name: "istiod.istio-system.svc".into(),
        client_identity: None,
    };
    c.identity = istioctl_proxy::IdentityMode::Anonymous {
        token_file: Some(token),
    };
    (c, dir)
}
