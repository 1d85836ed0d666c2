//! What a check gets: the control plane of its topology (the replicas, asked
//! directly as the ground truth; tokens; a scripted mesh where the topology has
//! one), the proxy under test (asked as istioctl asks), and the expected tables.

use super::Verdict;
use super::control_plane::{Capability, ControlPlane, Replica, ScriptedMesh};
use super::output_log::OutputLog;
use super::snapshots::Snapshots;
use crate::client::{self, ClientError, ClientOptions, Credentials};
use fake_istiod::TokenSpec;
use prost::Message;
use proto::IstioctlFamily;
use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proto::envoy::envoy::service::status::v3::ClientConfig;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the proxy under test.
#[derive(Debug, Clone)]
pub struct ProxyEndpoint {
    /// host:port
    pub address: String,
    /// The proxy serves plaintext (no TLS).
    pub plaintext: bool,
    /// How often the proxy says it re-discovers its replicas (the docker
    /// topology's `--proxy-discovery-refresh`).
    pub discovery_refresh: Duration,
}

/// Everything one check may use for one scenario (or, on a topology without a
/// scripted mesh, for the live mesh).
pub struct CheckContext {
    /// The scenario's name, or the live mesh's (e.g. `cluster`).
    pub scenario_name: String,
    pub control_plane: Arc<dyn ControlPlane>,
    pub proxy: ProxyEndpoint,
    pub families: Vec<IstioctlFamily>,
    pub snapshots: Arc<Snapshots>,
    /// Output of the proxy process, when it is one.
    pub proxy_output: Option<OutputLog>,
    /// Where the proxy's memory can be read (`None` for --proxy-addr).
    pub memory: Option<super::memory::MemoryProbe>,
    /// What a check measured, for the report also when it passes (e.g. the
    /// proxy's peak memory under an attack); the runner takes them after each check.
    pub notes: std::sync::Mutex<Vec<String>>,
}

/// istioctl's `--timeout` default: a proxy slower than this fails for real users.
pub const ISTIOCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// The IP the bench's requests claim in their node id (istiod needs a valid
/// one; a fixed one keeps runs identical on every machine).
pub const BENCH_NODE_IP: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

/// What the checks need to know about a client error.
pub trait ClientErrorExt {
    /// The server answered (with a gRPC status): it is alive and decided.
    fn is_answer(&self) -> bool;
    /// Nothing came back within the client's timeout.
    fn is_timeout(&self) -> bool;
}

impl ClientErrorExt for ClientError {
    fn is_answer(&self) -> bool {
        matches!(self, ClientError::Status { .. })
    }
    fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

impl CheckContext {
    /// Records a measurement for the report (shown with the check's result).
    pub fn note(&self, note: impl Into<String>) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(note.into());
        }
    }

    /// The notes recorded since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    /// The istio (system) namespace: istioctl's `--istioNamespace`.
    pub fn istio_namespace(&self) -> &str {
        self.control_plane.istio_namespace()
    }

    /// The scripted mesh, or the Skip outcome a check returns on a topology
    /// without one (the runner skips checks that declare
    /// [`Capability::ScriptedMesh`] before they run; this is the backstop).
    pub fn scripted(&self) -> Result<&dyn ScriptedMesh, Verdict> {
        self.control_plane.scripted().ok_or_else(|| {
            Verdict::Skip(format!(
                "the {} topology has no {}",
                self.control_plane.topology(),
                Capability::ScriptedMesh
            ))
        })
    }

    /// A token for `namespace/service_account`, valid for the replicas.
    pub fn token_for(&self, namespace: &str, service_account: &str) -> Result<String, String> {
        self.token(&TokenSpec::new(namespace, service_account))
    }

    /// A token with a specific defect (expired, wrong audience, bad signature...).
    pub fn token(&self, spec: &TokenSpec) -> Result<String, String> {
        self.control_plane.token(spec).map_err(|e| {
            format!(
                "no token for {}/{}: {e}",
                spec.namespace, spec.service_account
            )
        })
    }

    /// The token istioctl presents: the istio namespace's `default` service
    /// account (`1.30.0:istioctl/pkg/multixds/gather.go`, `tokenServiceAccount`).
    /// Every topology gives it (the cluster topology mints it when it
    /// connects, or fails to connect); `None` if one did not.
    pub fn istioctl_token(&self) -> Option<String> {
        self.token_for(self.istio_namespace(), "default").ok()
    }

    /// The options istioctl would use against the proxy: its default mode (TLS
    /// without certificate checks plus a bearer token for the istio namespace's
    /// `default` service account), or plaintext when the proxy serves plaintext.
    pub fn istioctl(&self) -> ClientOptions {
        self.istioctl_with(self.istioctl_token())
    }

    /// Like [`Self::istioctl`] but with this token (or none).
    pub fn istioctl_with(&self, token: Option<String>) -> ClientOptions {
        let credentials = if self.proxy.plaintext {
            Credentials::PlaintextWithToken { token }
        } else {
            Credentials::InsecureTlsWithToken { token }
        };
        ClientOptions {
            credentials,
            istio_namespace: self.istio_namespace().to_string(),
            timeout: ISTIOCTL_TIMEOUT,
            node_ip: Some(BENCH_NODE_IP),
            ..ClientOptions::plaintext(self.proxy.address.clone())
        }
    }

    /// One request through the proxy, as istioctl sends it.
    pub async fn fetch(
        &self,
        type_url: &str,
        resource_names: &[String],
    ) -> Result<DiscoveryResponse, ClientError> {
        client::fetch(&self.istioctl(), type_url, resource_names).await
    }

    /// syncz through the proxy.
    pub async fn syncz(&self) -> Result<DiscoveryResponse, ClientError> {
        self.fetch(proto::type_url::SYNCZ, &[]).await
    }

    /// The replicas, in a stable order (the scenario's, locally).
    pub fn replicas(&self) -> Vec<Replica> {
        self.control_plane.replicas()
    }

    /// Options to ask one replica directly: its TLS port, verified against the
    /// replicas' CA, with a token of the istio namespace (debug endpoints need an
    /// authenticated caller).
    pub fn replica_client(&self, replica: &Replica) -> ClientOptions {
        self.replica_client_as(replica, self.istio_namespace(), "default")
    }

    /// Like [`Self::replica_client`], as another caller (`namespace/service_account`,
    /// also claimed in the node metadata, as istiod requires).
    pub fn replica_client_as(
        &self,
        replica: &Replica,
        namespace: &str,
        service_account: &str,
    ) -> ClientOptions {
        let trust = self.control_plane.replica_trust();
        ClientOptions {
            credentials: Credentials::VerifiedTls {
                ca_pem: trust.ca_pem.into_bytes(),
                // No token: the replica's own refusal shows in the answer.
                token: self.token_for(namespace, service_account).ok(),
            },
            authority: trust.server_name,
            istio_namespace: namespace.to_string(),
            timeout: Duration::from_secs(10),
            node_ip: Some(BENCH_NODE_IP),
            ..ClientOptions::plaintext(replica.tls_addr.to_string())
        }
    }

    /// Asks one replica directly: the ground truth.
    pub async fn replica_fetch(
        &self,
        replica: &Replica,
        type_url: &str,
        resource_names: &[String],
    ) -> Result<DiscoveryResponse, ClientError> {
        client::fetch(&self.replica_client(replica), type_url, resource_names).await
    }

    /// syncz of every healthy replica, asked directly (all at once, as the
    /// replicas of slow scenarios each take their delay): (replica, its
    /// ClientConfigs), in the replicas' order.
    pub async fn ground_truth(&self) -> Result<Vec<(Replica, Vec<ClientConfig>)>, String> {
        let replicas = self.replicas();
        let answers = futures::future::join_all(
            replicas
                .iter()
                .map(|r| self.replica_fetch(r, proto::type_url::SYNCZ, &[])),
        )
        .await;
        let mut out = Vec::new();
        for (r, resp) in replicas.into_iter().zip(answers) {
            let resp = resp
                .map_err(|e| format!("the bench could not ask replica {} directly: {e}", r.name))?;
            out.push((
                r,
                client_configs(&resp).map_err(|e| format!("replica answer: {e}"))?,
            ));
        }
        Ok(out)
    }

    /// istioctl's request for `type_url`.
    pub fn request(&self, type_url: &str, resource_names: &[String]) -> DiscoveryRequest {
        client::discovery_request(&self.istioctl().node(), type_url, resource_names)
    }

    /// A Delta xDS stream to the proxy with one request (see [`client::delta_probe`]).
    pub async fn delta_probe(&self) -> Result<(), ClientError> {
        let mut o = self.istioctl();
        o.timeout = Duration::from_secs(5);
        client::delta_probe(&o).await
    }

    /// The ids of every proxy of every replica (the union the proxy must return).
    pub async fn expected_ids(&self) -> Result<BTreeSet<String>, String> {
        Ok(self
            .ground_truth()
            .await?
            .iter()
            .flat_map(|(_, ccs)| ccs.iter().map(|c| node_id(c).to_string()))
            .collect())
    }

    /// syncz through the proxy, decoded: the answer and its ClientConfigs, or
    /// why there are none (a failed request, resources that are not ClientConfigs).
    pub async fn merged(&self) -> Result<(DiscoveryResponse, Vec<ClientConfig>), String> {
        let resp = self
            .syncz()
            .await
            .map_err(|e| format!("syncz through the proxy failed: {e}"))?;
        let ccs = client_configs(&resp)?;
        Ok((resp, ccs))
    }

    /// A raw ADS stream to the proxy (several requests on one stream).
    pub async fn stream(
        &self,
        requests: Vec<DiscoveryRequest>,
        wait_for: usize,
        bound: Duration,
        linger: Duration,
    ) -> Result<Vec<DiscoveryResponse>, ClientError> {
        client::stream(&self.istioctl(), requests, wait_for, bound, linger).await
    }
}

/// Decodes the ClientConfigs of a syncz answer (any resource of another type is an error).
pub fn client_configs(resp: &DiscoveryResponse) -> Result<Vec<ClientConfig>, String> {
    resp.resources
        .iter()
        .enumerate()
        .map(|(i, any)| {
            if any.type_url != proto::type_url::CLIENT_CONFIG {
                return Err(format!(
                    "resource {i} has type {:?}, expected {}",
                    any.type_url,
                    proto::type_url::CLIENT_CONFIG
                ));
            }
            ClientConfig::decode(any.value.as_slice())
                .map_err(|e| format!("resource {i} is not a ClientConfig: {e}"))
        })
        .collect()
}

/// The node id of a ClientConfig (`pod.namespace`).
pub fn node_id(cc: &ClientConfig) -> &str {
    cc.node.as_ref().map(|n| n.id.as_str()).unwrap_or_default()
}
