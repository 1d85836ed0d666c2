//! `--topology real-istio`: the checks against real istiod replicas run here
//! as processes ([`RealIstio`]), the proxy under test in front of them. The
//! control plane the checks see is the cluster topology's (the replicas asked
//! directly with tokens from the remote API server, a restart as a new pod),
//! so a check cannot tell the two apart; only the name and what it can do
//! differ.

use super::world::{self, RealIstio, WorldOptions};
use super::{RealIstioError, objects::ISTIO_NAMESPACE};
use crate::suite::context::{CheckContext, ProxyEndpoint};
use crate::suite::memory::MemoryProbe;
use crate::topology::bench::{
    ProxyError, Session, StartedProxy, Teardown, private_tempdir, serving_cert, write,
    write_private,
};
use crate::topology::cluster::{ClusterControlPlane, PodRestarter, Successor, TokenRequests};
use crate::topology::local::{BUNDLED_REPLICA_TIMEOUT, BUNDLED_REQUEST_TIMEOUT};
use crate::topology::process::{Placeholders, ProxyProcess};
use crate::topology::{
    Capability, ControlPlane, Customize, Hooks, NetworkFaults, OpenError, ProxyMode,
    ProxyUnderTest, RealIstioctl, Replica, ReplicaTrust, Topology, TopologyError,
};
use cluster::live::{Live, LiveReplica};
use fake_istiod::TokenSpec;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// How long the bundled proxy's pod watch may take to list the replicas.
const DISCOVERY_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// The topology's name (`--topology real-istio`), and its one live mesh's.
pub const NAME: &str = "real-istio";

/// What real processes let the bench do: restart a replica (a new pod name
/// and address, as a Deployment's restart gives); cut one off (its process
/// frozen: connections hang, nothing refused, its pod still listed); remove
/// one and add one (as a Deployment scales: a new pod name and address).
pub const CAPABILITIES: &[Capability] = &[
    Capability::RestartReplicas,
    Capability::NetworkPartitions,
    Capability::AddRemoveReplicas,
    Capability::RealIstioctl,
];

/// The real-istio topology: [`RealIstio`] started once (`prepare`), one live
/// session on it, stopped at `finish`.
pub struct RealIstioTopology {
    proxy: ProxyUnderTest,
    options: WorldOptions,
    customize_bundled: Option<Customize>,
    world: Mutex<Option<Arc<RealIstio>>>,
}

impl RealIstioTopology {
    pub fn new(proxy: ProxyUnderTest, options: WorldOptions, hooks: &Hooks) -> Self {
        RealIstioTopology {
            proxy,
            options,
            customize_bundled: hooks.customize_bundled.clone(),
            world: Mutex::new(None),
        }
    }

    fn world(&self) -> Result<Arc<RealIstio>, ProxyError> {
        self.world
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .ok_or_else(|| ProxyError::Setup("the real-istio topology was not prepared".into()))
    }

    async fn connect(&self) -> Result<Session, ProxyError> {
        let world = self.world()?;
        let remote = world
            .remote
            .client()
            .map_err(|e| ProxyError::Setup(e.to_string()))?;
        let replicas = world
            .replicas()
            .await
            .into_iter()
            .map(|(pod, tls_addr)| LiveReplica {
                pod,
                image: format!("pilot-discovery:{}", world::STAMPED_VERSION),
                tls_addr,
            })
            .collect();
        let live = Live::reachable(replicas, world.mesh_root.clone(), None);
        let cp = ClusterControlPlane::from_live(live, ISTIO_NAMESPACE, &TokenRequests(remote))
            .await
            .map_err(|e| ProxyError::Setup(format!("the real istiod replicas: {e}")))?
            .as_topology(NAME, CAPABILITIES)
            .with_restarter(Box::new(Restarter(world.clone())));
        let cp = RealIstioControlPlane {
            inner: cp,
            envoys: world.real_sidecars().await,
            world: world.clone(),
        };
        let started = start_proxy(&self.proxy, &world, self.customize_bundled.as_ref()).await?;
        let ctx = CheckContext {
            memory: started.memory,
            scenario_name: NAME.to_string(),
            control_plane: Arc::new(cp),
            proxy: ProxyEndpoint {
                address: started.address,
                plaintext: self.proxy.plaintext,
                discovery_refresh: self.proxy.discovery_refresh,
            },
            families: self.proxy.families.clone(),
            snapshots: self.proxy.snapshots.clone(),
            proxy_output: started.output,
            notes: Default::default(),
        };
        Session::new(ctx, started.process, started.teardown, started.files)
            .ready(self.proxy.ready_timeout)
            .await
    }
}

impl Topology for RealIstioTopology {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    fn mode(&self) -> String {
        self.proxy.mode.name().to_string()
    }

    fn prepare<'a>(
        &'a mut self,
        _scenarios: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<String>, ProxyError>> {
        Box::pin(async move {
            let say = |line: &str| crate::say!("real-istio: {line}");
            let world = RealIstio::start(&self.options, &say)
                .await
                .map_err(|e| ProxyError::Setup(e.to_string()))?;
            let lines = vec![format!(
                "real-istio: up in {:.1}s: {} istiod replicas, topology RSS {} MiB (API servers, etcd, istiod, pilot-agents and Envoys); kubeconfig {}",
                world.uptime().as_secs_f64(),
                world.replicas().await.len(),
                world.rss_bytes().await / (1 << 20),
                world.kubeconfig.display()
            )];
            if let Ok(mut w) = self.world.lock() {
                *w = Some(Arc::new(world));
            }
            Ok(lines)
        })
    }

    fn open<'a>(&'a self, _live: &'a str) -> BoxFuture<'a, Result<Session, OpenError>> {
        Box::pin(async move { Ok(self.connect().await?) })
    }

    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let world = self.world.lock().ok().and_then(|mut w| w.take());
            if let Some(world) = world {
                match Arc::try_unwrap(world) {
                    Ok(w) => w.stop().await,
                    // Still held (a session not stopped): its processes die
                    // with it (their groups are killed on drop).
                    Err(w) => drop(w),
                }
            }
        })
    }
}

/// The cluster topology's control plane, plus what only processes allow:
/// freezing a replica ([`NetworkFaults::partition`]), removing one and
/// adding one as a Deployment scales.
struct RealIstioControlPlane {
    inner: ClusterControlPlane,
    world: Arc<RealIstio>,
    /// The real sidecars' node ids and Envoy admin addresses.
    envoys: Vec<(String, std::net::SocketAddr)>,
}

impl ControlPlane for RealIstioControlPlane {
    fn topology(&self) -> &'static str {
        self.inner.topology()
    }
    fn capabilities(&self) -> &'static [Capability] {
        self.inner.capabilities()
    }
    fn converge_after_restart(&self) -> std::time::Duration {
        self.inner.converge_after_restart()
    }
    fn replicas(&self) -> Vec<Replica> {
        self.inner.replicas()
    }
    fn istio_namespace(&self) -> &str {
        self.inner.istio_namespace()
    }
    fn replica_trust(&self) -> ReplicaTrust {
        self.inner.replica_trust()
    }
    fn token(&self, spec: &TokenSpec) -> Result<String, TopologyError> {
        self.inner.token(spec)
    }
    fn restart<'a>(&'a self, replica: &'a str) -> Option<BoxFuture<'a, Result<(), TopologyError>>> {
        self.inner.restart(replica)
    }
    fn network(&self) -> Option<&dyn NetworkFaults> {
        Some(self)
    }
    fn real_istioctl(&self) -> Option<RealIstioctl> {
        let bins = super::binaries::Binaries::find(&["istioctl"]).ok()?;
        Some(RealIstioctl {
            envoys: self
                .envoys
                .iter()
                .map(|(id, admin)| (id.split('~').nth(2).unwrap_or(id).to_string(), *admin))
                .collect(),
            binary: bins.path("istioctl"),
            kubeconfig: self.world.kubeconfig.clone(),
            context: world::REMOTE.to_string(),
            version: world::STAMPED_VERSION
                .split('-')
                .next()
                .and_then(|v| v.parse().ok())?,
        })
    }
}

impl RealIstioControlPlane {
    async fn freeze(&self, replica: &str, frozen: bool) -> Result<(), TopologyError> {
        self.world
            .freeze(replica, frozen)
            .await
            .map_err(|e| TopologyError::Failed(e.to_string()))
    }
}

impl NetworkFaults for RealIstioControlPlane {
    fn partition<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(self.freeze(replica, true))
    }
    fn heal<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(self.freeze(replica, false))
    }
    fn remove<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<Replica, TopologyError>> {
        Box::pin(async move {
            self.world
                .remove(replica)
                .await
                .map_err(|e| TopologyError::Failed(e.to_string()))?;
            self.inner
                .forget_replica(replica)
                .ok_or_else(|| TopologyError::Failed(format!("no replica {replica}")))
        })
    }
    /// A Deployment scaled up: a new pod (name and address), not the removed one.
    fn add<'a>(&'a self, _replica: &'a str) -> BoxFuture<'a, Result<Replica, TopologyError>> {
        Box::pin(async move {
            let like = self
                .inner
                .replicas()
                .into_iter()
                .next()
                .ok_or_else(|| TopologyError::Failed("no replica left to copy".into()))?;
            let (name, tls_addr) = self
                .world
                .add()
                .await
                .map_err(|e| TopologyError::Failed(e.to_string()))?;
            let added = Replica {
                name,
                tls_addr,
                ..like
            };
            self.inner.add_replica(added.clone());
            Ok(added)
        })
    }
}

/// Restarts a replica in [`RealIstio`].
struct Restarter(Arc<RealIstio>);

impl PodRestarter for Restarter {
    fn restart<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, Result<Successor, String>> {
        Box::pin(async move {
            let (name, tls_addr) = self.0.restart(pod).await.map_err(|e| e.to_string())?;
            let successor = LiveReplica {
                pod: name,
                image: format!("pilot-discovery:{}", world::STAMPED_VERSION),
                tls_addr,
            };
            Ok((successor, None))
        })
    }
}

/// The proxy under test, started for the topology.
pub struct StartedOnWorld {
    pub address: String,
    pub process: Option<Box<dyn StartedProxy>>,
    pub teardown: Vec<Box<dyn Teardown>>,
    pub files: Option<tempfile::TempDir>,
    pub output: Option<crate::suite::output_log::OutputLog>,
    pub memory: Option<MemoryProbe>,
}

/// Keeps the bundled proxy's pod watch running until the session stops.
struct KeepDiscovery {
    _watch: istioctl_proxy::discovery::DiscoveryHandle,
}

impl Teardown for KeepDiscovery {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        drop(self);
        Box::pin(async {})
    }
}

/// Starts the proxy under test in front of the replicas: the bundled one
/// (finding them through the external cluster's API, as a deployed proxy
/// would), a command, or none (`--proxy-addr`).
pub async fn start_proxy(
    proxy: &ProxyUnderTest,
    world: &RealIstio,
    customize: Option<&Customize>,
) -> Result<StartedOnWorld, ProxyError> {
    let dir = private_tempdir()?;
    let (cert_pem, key_pem) = serving_cert(&["localhost", "127.0.0.1"])?;
    let cert = dir.path().join("proxy.crt");
    let key = dir.path().join("proxy.key");
    write(&cert, &cert_pem)?;
    write_private(&key, &key_pem)?;
    // The remote cluster's service-account key: what istioctl's tokens are signed with.
    let token_key = world.remote.dir().join("sa.pub");
    match &proxy.mode {
        ProxyMode::Bundled => {
            use istioctl_proxy::config::*;
            let external = world
                .external
                .client()
                .map_err(|e| ProxyError::Setup(e.to_string()))?;
            let discovery = istioctl_proxy::discovery::kubernetes::start(
                external,
                istioctl_proxy::discovery::kubernetes::PodSelector {
                    namespace: ISTIO_NAMESPACE.to_string(),
                    revision: None,
                    port: super::istiod::TLS_PORT,
                },
            );
            // A deployed proxy's watch has listed the pods before its
            // readiness probe passes: the same here (bounded), so that the
            // first check does not meet "no istiod replicas (yet)".
            let want = world.replicas().await.len();
            let mut seen = discovery.replicas.clone();
            tokio::time::timeout(DISCOVERY_BOUND, seen.wait_for(|set| set.len() >= want))
                .await
                .map_err(|_| {
                    ProxyError::Setup(format!(
                        "the bundled proxy's Kubernetes discovery did not list the {want} istiod pods of the external cluster within {DISCOVERY_BOUND:?}"
                    ))
                })?
                .map_err(|_| ProxyError::Setup("the bundled proxy's discovery stopped".into()))?;
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let mut c = ProxyConfig::plaintext_static(listen, vec![]);
            c.discovery = Discovery::Dynamic(discovery.replicas.clone());
            if !proxy.plaintext {
                c.serve = ServeTransport::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                };
            }
            c.upstream = UpstreamTransport::Tls {
                ca: world.mesh_root_file.clone(),
                server_name: world::istiod_server_name(),
                client_identity: None,
            };
            c.identity = IdentityMode::Passthrough;
            c.token_verification.public_keys = vec![token_key];
            c.replica_timeout = BUNDLED_REPLICA_TIMEOUT;
            c.request_timeout = BUNDLED_REQUEST_TIMEOUT;
            if let Some(custom) = customize {
                custom(&mut c);
            }
            let p = istioctl_proxy::start(c)
                .await
                .map_err(|e| ProxyError::Setup(format!("cannot start the bundled proxy: {e}")))?;
            Ok(StartedOnWorld {
                address: p.local_addr().to_string(),
                process: Some(Box::new(p)),
                teardown: vec![Box::new(KeepDiscovery { _watch: discovery })],
                files: Some(dir),
                output: None,
                memory: Some(MemoryProbe::HarnessProcess),
            })
        }
        ProxyMode::Command(template) => {
            let listen = {
                let l = std::net::TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| ProxyError::Setup(format!("no free port on 127.0.0.1: {e}")))?;
                l.local_addr()
                    .map_err(|e| ProxyError::Setup(format!("no free port: {e}")))?
                    .to_string()
            };
            let replicas = world.replicas().await;
            let mut v = Placeholders::new();
            v.insert("listen", listen.clone());
            v.insert(
                "istiod",
                replicas
                    .iter()
                    .map(|(n, a)| format!("{n}={a}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            v.insert("istiod_plaintext", String::new());
            v.insert("namespace", ISTIO_NAMESPACE.to_string());
            v.insert("ca", world.mesh_root_file.display().to_string());
            v.insert("server_name", world::istiod_server_name());
            v.insert("cert", cert.display().to_string());
            v.insert("key", key.display().to_string());
            v.insert("token_file", String::new());
            v.insert("token_issuer_key", token_key.display().to_string());
            v.insert("kubeconfig", world.kubeconfig.display().to_string());
            v.insert("context", world::EXTERNAL.to_string());
            v.insert("scenario", NAME.to_string());
            let p =
                ProxyProcess::spawn(template, &v).map_err(|e| ProxyError::Setup(e.to_string()))?;
            let output = p.output.clone();
            let memory = p.pid().map(MemoryProbe::Tree);
            Ok(StartedOnWorld {
                address: listen,
                process: Some(Box::new(p)),
                teardown: vec![],
                files: Some(dir),
                output: Some(output),
                memory,
            })
        }
        ProxyMode::Address(a) => Ok(StartedOnWorld {
            address: a.clone(),
            process: None,
            teardown: vec![],
            files: Some(dir),
            output: None,
            memory: None,
        }),
        ProxyMode::Image(i) => Err(ProxyError::Setup(format!(
            "the proxy image {i} runs on the docker topology; on real-istio give --proxy-cmd or --proxy-addr, or nothing for the bundled proxy"
        ))),
    }
}

/// Why the topology could not start, for the run's error.
impl From<RealIstioError> for ProxyError {
    fn from(e: RealIstioError) -> Self {
        ProxyError::Setup(e.to_string())
    }
}
