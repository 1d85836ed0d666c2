//! The `cluster` topology: the real external control plane that
//! `proxy-conformance cluster up` builds (or any like it: two kubeconfig
//! contexts). The ground truth is every Ready istiod pod asked directly
//! through a port-forward; tokens come from the remote cluster's
//! TokenRequest API, whose API server istiod checks them against. It has no
//! capability beyond that: no scripted mesh, no fake faults, no forged tokens
//! (the issuer's key is the cluster's).

use super::bench::{ProxyError, Session};
use super::{Capability, ControlPlane, Replica, ReplicaTrust, TopologyError};
use super::{ConnectCluster, Hooks, OpenError, ProxyMode, ProxyUnderTest, Topology};
use crate::client::{self, ClientOptions, Credentials};
use crate::suite::context::{BENCH_NODE_IP, client_configs, node_id};
use crate::suite::context::{CheckContext, ProxyEndpoint};
use cluster::kubeops::{self, KubeError};
use cluster::live::{self, Live, LiveOptions, LiveReplica};
use fake_istiod::TokenSpec;
use futures::future::BoxFuture;
use kube::Client;
use proto::{IstioControlPlaneInstance, IstioVersion};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// The audience istioctl asks the TokenRequest API for, and istiod accepts
/// (`1.30.0:istioctl/pkg/xds/client.go`, `tokenAudiences`).
pub const AUDIENCE: &str = fake_istiod::auth::ISTIO_CA_AUDIENCE;
/// Lifetime of the tokens minted at connect time: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Where bearer tokens (audience `istio-ca`) come from.
pub trait TokenSource: Send + Sync {
    fn mint<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<String, String>>;
}

/// The remote cluster's TokenRequest API.
pub struct TokenRequests(pub Client);

impl TokenSource for TokenRequests {
    fn mint<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            kubeops::token_request(&self.0, namespace, service_account, AUDIENCE, TOKEN_TTL)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Where the two clusters are (`run --topology cluster`).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The external cluster (istiod and the proxy under test).
    pub external_context: String,
    /// The remote cluster (the mesh, and the API server that issues tokens).
    pub remote_context: String,
    pub live: LiveOptions,
}

/// The topology's name: its one mesh is the live one.
pub const NAME: &str = "cluster";

/// What a real cluster lets the bench do: restart an istiod pod.
pub const CAPABILITIES: &[Capability] = &[Capability::RestartReplicas];

/// The cluster topology: a real external control plane (`proxy-conformance
/// cluster up`), its istiod pods as the ground truth, the deployed proxy (or
/// the one at `--proxy-addr`) under test. One session: the live mesh.
pub struct ClusterTopology {
    proxy: ProxyUnderTest,
    options: ClusterOptions,
    connect: Option<ConnectCluster>,
}

impl ClusterTopology {
    pub fn new(proxy: ProxyUnderTest, options: ClusterOptions, hooks: &Hooks) -> Self {
        ClusterTopology {
            proxy,
            options,
            connect: hooks.connect_cluster.clone(),
        }
    }

    /// The cluster topology: the proxy deployed in the external cluster (its
    /// Service port-forwarded) or the one at `--proxy-addr`, against the real
    /// istiod pods. One bench for the whole run: the live mesh.
    pub async fn connect(&self) -> Result<Session, ProxyError> {
        let c = &self.options;
        let proxy = &self.proxy;
        let connected = match &self.connect {
            Some(connect) => connect().await,
            None => ClusterControlPlane::connect(c).await,
        };
        let cp = connected.map_err(|e| {
            ProxyError::Setup(format!(
                "cannot connect to the external control plane (contexts {} and {}, namespace {}): {e}",
                c.external_context, c.remote_context, c.live.namespace
            ))
        })?;
        let address = match (&proxy.mode, cp.proxy_addr()) {
            (ProxyMode::Address(a), _) => a.clone(),
            (_, Some(a)) => a.to_string(),
            (_, None) => {
                return Err(ProxyError::Setup(
                    "no proxy to test: give --proxy-addr or --proxy-service".to_string(),
                ));
            }
        };
        let ctx = CheckContext {
            memory: None,
            scenario_name: NAME.to_string(),
            control_plane: Arc::new(cp),
            proxy: ProxyEndpoint {
                address,
                plaintext: proxy.plaintext,
                discovery_refresh: proxy.discovery_refresh,
            },
            families: proxy.families.clone(),
            snapshots: proxy.snapshots.clone(),
            proxy_output: None,
            notes: Default::default(),
        };
        Session::new(ctx, None, vec![], None)
            .ready(proxy.ready_timeout)
            .await
    }
}

impl Topology for ClusterTopology {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    fn mode(&self) -> String {
        match self.proxy.mode {
            ProxyMode::Address(_) => "cluster address".to_string(),
            _ => "cluster service".to_string(),
        }
    }

    fn prepare<'a>(
        &'a mut self,
        _scenarios: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<String>, ProxyError>> {
        Box::pin(async { Ok(vec![]) })
    }

    fn open<'a>(&'a self, _live: &'a str) -> BoxFuture<'a, Result<Session, OpenError>> {
        Box::pin(async move { Ok(self.connect().await?) })
    }
}

/// A restarted pod's successor, and the port-forward that reaches it (kept
/// running by the control plane).
pub type Successor = (LiveReplica, Option<tokio::task::JoinHandle<()>>);

/// Restarts an istiod pod and gives its successor, reachable.
pub trait PodRestarter: Send + Sync {
    fn restart<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, Result<Successor, String>>;
}

/// Deletes the pod; its Deployment makes the successor ([`live::restart_pod`]).
pub struct KubeRestarter {
    pub client: Client,
    pub opts: LiveOptions,
}

/// How long a new istiod pod may take to become Ready (image already on the
/// node; istiod's readiness waits for its first config sync).
const RESTART_BOUND: Duration = Duration::from_secs(180);

impl PodRestarter for KubeRestarter {
    fn restart<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, Result<Successor, String>> {
        Box::pin(async move {
            live::restart_pod(
                &self.client,
                &self.opts,
                pod,
                Duration::from_secs(1),
                RESTART_BOUND,
            )
            .await
            .map(|(r, task)| (r, Some(task)))
            .map_err(|e| format!("{e} ({})", e.hint()))
        })
    }
}

/// The connected control plane. Dropping it stops its port-forwards.
pub struct ClusterControlPlane {
    /// The topology it serves (`cluster`; `real-istio` runs the same control
    /// plane as processes) and what that one can do.
    topology: &'static str,
    capabilities: &'static [Capability],
    /// The port-forwards (a restart adds one).
    live: Mutex<Live>,
    /// Where the proxy under test is reachable, if forwarded.
    proxy_addr: Option<std::net::SocketAddr>,
    /// The replicas now (a restart replaces one).
    replicas: Mutex<Vec<Replica>>,
    restarter: Option<Box<dyn PodRestarter>>,
    namespace: String,
    trust: ReplicaTrust,
    /// Tokens minted at connect time, by (namespace, service account).
    tokens: BTreeMap<(String, String), String>,
    /// Why a wanted token could not be minted.
    refused: BTreeMap<(String, String), String>,
}

fn kube_failed(e: KubeError) -> TopologyError {
    match e {
        // Its message already says what is wrong and what to do.
        KubeError::Invalid { .. } => TopologyError::Failed(e.to_string()),
        KubeError::Api { .. } | KubeError::Timeout { .. } => {
            let hint = e.hint();
            TopologyError::Failed(format!("{e} ({hint})"))
        }
    }
}

/// `1.22.8` out of `1.22.8`, `1.22.8-distroless` or `1.30-dev`, parsed.
fn release(text: &str) -> Option<IstioVersion> {
    text.split('-').next()?.parse().ok()
}

impl ClusterControlPlane {
    /// Connects through the two kubeconfig contexts: forwards every istiod
    /// pod (and the proxy's Service), then [`Self::from_live`] with tokens
    /// from the remote cluster's TokenRequest API.
    pub async fn connect(opts: &ClusterOptions) -> Result<Self, TopologyError> {
        let external = kubeops::client_for_context(&opts.external_context)
            .await
            .map_err(kube_failed)?;
        let remote = kubeops::client_for_context(&opts.remote_context)
            .await
            .map_err(kube_failed)?;
        let live = live::connect(&external, &remote, &opts.live)
            .await
            .map_err(kube_failed)?;
        let restarter = KubeRestarter {
            client: external,
            opts: opts.live.clone(),
        };
        Self::from_live(live, &opts.live.namespace, &TokenRequests(remote))
            .await
            .map(|cp| cp.with_restarter(Box::new(restarter)))
    }

    /// The same control plane as another topology's (its name, its capabilities).
    pub fn as_topology(mut self, name: &'static str, capabilities: &'static [Capability]) -> Self {
        self.topology = name;
        self.capabilities = capabilities;
        self
    }

    /// Replicas restart through this ([`Capability::RestartReplicas`]).
    pub fn with_restarter(mut self, restarter: Box<dyn PodRestarter>) -> Self {
        self.restarter = Some(restarter);
        self
    }

    /// Mints istioctl's token, asks each replica directly for its version and
    /// its proxies, and mints a token for every namespace those proxies live
    /// in (the callers of the authorization checks).
    pub async fn from_live(
        live: Live,
        namespace: &str,
        token_source: &dyn TokenSource,
    ) -> Result<Self, TopologyError> {
        let namespace = namespace.to_string();
        let trust = ReplicaTrust {
            ca_pem: live.root_cert_pem.clone(),
            server_name: Some(live::istiod_server_name(&namespace)),
        };
        // istioctl's own identity: the istio namespace's `default` service
        // account (`1.30.0:istioctl/pkg/multixds/gather.go`, `tokenServiceAccount`).
        let system = token_source
            .mint(&namespace, "default")
            .await
            .map_err(|e| TopologyError::Failed(format!("istioctl's token: {e}")))?;
        let mut tokens = BTreeMap::new();
        tokens.insert((namespace.clone(), "default".to_string()), system.clone());

        let mut replicas = Vec::new();
        let mut namespaces = BTreeSet::new();
        for r in &live.replicas {
            let ask = ClientOptions {
                credentials: Credentials::VerifiedTls {
                    ca_pem: trust.ca_pem.clone().into_bytes(),
                    token: Some(system.clone()),
                },
                authority: trust.server_name.clone(),
                istio_namespace: namespace.clone(),
                timeout: Duration::from_secs(10),
                node_ip: Some(BENCH_NODE_IP),
                ..ClientOptions::plaintext(r.tls_addr.to_string())
            };
            let answer = client::fetch(&ask, proto::type_url::SYNCZ, &[])
                .await
                .map_err(|e| {
                    TopologyError::Failed(format!(
                        "istiod pod {namespace}/{} (reached at {}) does not answer syncz: {e}",
                        r.pod, r.tls_addr
                    ))
                })?;
            let reported_text = answer
                .control_plane
                .as_ref()
                .and_then(|cp| {
                    serde_json::from_str::<IstioControlPlaneInstance>(&cp.identifier).ok()
                })
                .map(|id| id.info.version);
            let reported = reported_text.as_deref().and_then(release);
            let version = reported
                .or_else(|| live::release_of_image(&r.image).and_then(|v| release(&v)))
                .ok_or_else(|| {
                    TopologyError::Failed(format!(
                        "istiod pod {namespace}/{}: no Istio release in its ControlPlane answer nor in its image {:?}",
                        r.pod, r.image
                    ))
                })?;
            if let Ok(ccs) = client_configs(&answer) {
                namespaces.extend(
                    ccs.iter()
                        .filter_map(|c| node_id(c).rsplit_once('.').map(|(_, ns)| ns.to_string())),
                );
            }
            replicas.push(Replica {
                name: r.pod.clone(),
                version,
                tls_addr: r.tls_addr,
                plaintext_addr: None,
                reported_version: reported_text,
            });
        }
        let mut refused = BTreeMap::new();
        for ns in namespaces.into_iter().filter(|ns| *ns != namespace) {
            let key = (ns.clone(), "default".to_string());
            match token_source.mint(&ns, "default").await {
                Ok(t) => {
                    tokens.insert(key, t);
                }
                Err(e) => {
                    refused.insert(key, e);
                }
            }
        }
        Ok(ClusterControlPlane {
            topology: NAME,
            capabilities: CAPABILITIES,
            proxy_addr: live.proxy_addr,
            live: Mutex::new(live),
            replicas: Mutex::new(replicas),
            restarter: None,
            namespace,
            trust,
            tokens,
            refused,
        })
    }

    /// Takes a replica out of [`ControlPlane::replicas`] (it was removed).
    pub fn forget_replica(&self, name: &str) -> Option<Replica> {
        let mut replicas = self.replicas.lock().ok()?;
        let at = replicas.iter().position(|r| r.name == name)?;
        Some(replicas.remove(at))
    }

    /// Adds a replica to [`ControlPlane::replicas`] (one was started).
    pub fn add_replica(&self, replica: Replica) {
        if let Ok(mut replicas) = self.replicas.lock() {
            replicas.push(replica);
        }
    }

    /// Where the proxy under test's Service is forwarded, if it was asked for.
    pub fn proxy_addr(&self) -> Option<std::net::SocketAddr> {
        self.proxy_addr
    }
}

impl ControlPlane for ClusterControlPlane {
    fn topology(&self) -> &'static str {
        self.topology
    }

    fn capabilities(&self) -> &'static [Capability] {
        self.capabilities
    }

    /// A new istiod pod, a restarted port-forward, sidecars reconnecting
    /// with Envoy's backoff: a real cluster needs seconds.
    fn converge_after_restart(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn replicas(&self) -> Vec<Replica> {
        self.replicas.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn restart<'a>(&'a self, replica: &'a str) -> Option<BoxFuture<'a, Result<(), TopologyError>>> {
        let restarter = self.restarter.as_ref()?;
        Some(Box::pin(async move {
            let old = self
                .replicas()
                .into_iter()
                .find(|r| r.name == replica)
                .ok_or_else(|| TopologyError::Failed(format!("no replica {replica}")))?;
            let (successor, forward) = restarter
                .restart(replica)
                .await
                .map_err(|e| TopologyError::Failed(format!("restarting {replica}: {e}")))?;
            if let (Some(task), Ok(mut live)) = (forward, self.live.lock()) {
                live.keep(task);
            }
            let version = live::release_of_image(&successor.image)
                .and_then(|v| release(&v))
                .unwrap_or(old.version);
            let new = Replica {
                name: successor.pod,
                version,
                tls_addr: successor.tls_addr,
                plaintext_addr: None,
                // The same image: the same build tag.
                reported_version: old.reported_version.clone(),
            };
            if let Ok(mut replicas) = self.replicas.lock()
                && let Some(slot) = replicas.iter_mut().find(|r| r.name == replica)
            {
                *slot = new;
            }
            Ok(())
        }))
    }

    fn istio_namespace(&self) -> &str {
        &self.namespace
    }

    fn replica_trust(&self) -> ReplicaTrust {
        self.trust.clone()
    }

    fn token(&self, spec: &TokenSpec) -> Result<String, TopologyError> {
        let unsupported = |what: &str| TopologyError::Unsupported {
            topology: self.topology,
            what: what.to_string(),
        };
        if spec.expired || spec.bad_signature || spec.subject.is_some() || spec.audience != AUDIENCE
        {
            return Err(unsupported(
                "forge a defective token (the issuer's key is the cluster's)",
            ));
        }
        let key = (spec.namespace.clone(), spec.service_account.clone());
        if let Some(t) = self.tokens.get(&key) {
            return Ok(t.clone());
        }
        Err(match self.refused.get(&key) {
            Some(why) => TopologyError::Failed(why.clone()),
            None => unsupported(&format!(
                "give a token for {}/{}: tokens are minted at start for the istio namespace and the mesh's namespaces (`default` service account)",
                spec.namespace, spec.service_account
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(release("1.22.8"), Some(IstioVersion::new(1, 22, 8)));
        assert_eq!(
            release("1.12.9-distroless"),
            Some(IstioVersion::new(1, 12, 9))
        );
        assert_eq!(release("unknown"), None);
    }
}
