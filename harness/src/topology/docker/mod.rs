//! The `docker` topology: one scenario's fake-istiod replicas as containers
//! (the FROM-scratch `fake-istiod` image, `serve --replica`, one replica per
//! container) on a user-defined network of their own, each reachable by its
//! name and all of them under one shared alias, [`REPLICA_ALIAS`], as a
//! headless Service resolves to every istiod pod. The proxy under test runs as
//! a container on the same network ([`proxy`]). Containers are started with
//! testcontainers; networks, aliases and partitions go through [`engine`].
//!
//! Besides everything the local topology does (scripted mesh, faults through
//! each replica's control API, moved proxies, forged tokens, restarts), a real
//! network can partition a replica (its container disconnected: packets to it
//! go nowhere) and remove or add one (its DNS record goes or comes).
//!
//! The harness reaches every container at its address on the network's bridge
//! (routed from the host on Linux), so the ground truth and the proxy see the
//! same addresses.

pub mod engine;
pub mod proxy;

use super::bench::{ProxyError, Session, Shared, serving_cert};
use super::{Capability, ControlPlane, Replica, ReplicaTrust, ScriptedMesh, TopologyError};
use super::{OpenError, ProxyMode, ProxyUnderTest, Topology};
use crate::suite::context::{CheckContext, ProxyEndpoint};
use crate::suite::memory::MemoryProbe;
use engine::{Engine, RUN_LABEL};
use fake_istiod::TokenSpec;
use fake_istiod::scenario::{Fault, Scenario};
use futures::future::BoxFuture;
use proxy::{ProxyContainer, ProxyFiles, ProxySpec};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use testcontainers::{CopyDataSource, CopyTargetOptions};

/// The DNS name every replica shares on the network (a headless Service's).
pub const REPLICA_ALIAS: &str = "istiod-headless";
/// The replicas' control API port inside their containers.
pub const CONTROL_PORT: u16 = 15099;
/// istiod's ports.
pub const PLAINTEXT_PORT: u16 = 15010;
pub const TLS_PORT: u16 = 15012;
/// Where files given to a container are put inside it.
pub const FILES_DIR: &str = "/conformance";
/// Longest a container may take to serve after it was started.
pub const START_BOUND: Duration = Duration::from_secs(30);

/// Default images (built locally, see [`DockerOptions`]).
pub const DEFAULT_REPLICA_IMAGE: &str = "fake-istiod:local";
pub const DEFAULT_PROXY_IMAGE: &str = "istioctl-proxy:local";
pub const BUILD_REPLICA_IMAGE: &str = "bash fake-istiod/build-image.sh";
pub const BUILD_PROXY_IMAGE: &str = "bash istioctl-proxy/build-image.sh";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "no Docker engine answers ({error}); start dockerd or set DOCKER_HOST (ci/docker-setup.sh installs and starts Debian's docker.io)"
    )]
    NoEngine { error: String },
    #[error(
        "image {image} is not on the local Docker engine ({error}); images are never pulled: build or load it first (this repository's: `{build} {image}`)"
    )]
    MissingImage {
        image: String,
        build: String,
        error: String,
    },
    #[error("docker: {what}: {error}")]
    Api { what: String, error: String },
    #[error("{0}")]
    Setup(String),
}

impl From<DockerError> for TopologyError {
    fn from(e: DockerError) -> Self {
        TopologyError::Failed(e.to_string())
    }
}

/// How `--topology docker` runs the replicas and the proxy image.
#[derive(Debug, Clone)]
pub struct DockerRunOptions {
    pub replicas: DockerOptions,
    /// `--proxy-args`; `None`: the reference proxy's.
    pub proxy_args: Option<String>,
    pub proxy_env: Vec<(String, String)>,
    pub discovery_refresh: Duration,
    /// Labels every container and network of this run (and names them), so
    /// that whatever is left after Ctrl-C or a crash is found and removed.
    pub run_id: String,
}

/// The reference proxy's arguments in a container: it finds the replicas by
/// DNS (the shared name, re-resolved every {discovery_refresh}), as it
/// would through a headless Service.
pub const REFERENCE_PROXY_ARGS: &str = "--listen {listen} --health-listen off --discovery dns --istiod {istiod_dns} --dns-refresh {discovery_refresh} --cert {cert} --key {key} --istiod-ca {ca} --istiod-server-name istiod.{namespace}.svc --identity passthrough --token-public-key {token_issuer_key} --replica-timeout 2s --request-timeout 4s";

/// Where the docker topology's pieces come from.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// The fake-istiod image (`fake-istiod/build-image.sh`).
    pub replica_image: String,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            replica_image: DEFAULT_REPLICA_IMAGE.to_string(),
        }
    }
}

/// `repo:tag` split as testcontainers wants it (a missing tag is `latest`).
pub fn split_image(image: &str) -> (String, String) {
    // A registry port (`host:5000/x`) is not a tag: only a colon after the last '/'.
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            image[slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Where a file given to a container goes (readable by its user, which is
/// not root in a FROM-scratch image).
pub fn file(name: &str) -> CopyTargetOptions {
    CopyTargetOptions::new(format!("{FILES_DIR}/{name}")).with_mode(0o444)
}

/// A file's contents for [`file`].
pub fn data(text: &str) -> CopyDataSource {
    CopyDataSource::Data(text.as_bytes().to_vec())
}

/// The last lines a container wrote to stderr, for errors.
async fn last_output(container: &ContainerAsync<GenericImage>) -> String {
    let logs = container.stderr_to_vec().await.unwrap_or_default();
    let logs = String::from_utf8_lossy(&logs);
    let mut tail: Vec<&str> = logs.lines().rev().take(10).collect();
    tail.reverse();
    tail.join("\n")
}

/// One replica's container.
struct ReplicaContainer {
    name: String,
    container_name: String,
    version: proto::IstioVersion,
    ip: Ipv4Addr,
    container: ContainerAsync<GenericImage>,
    /// Disconnected from the network.
    partitioned: bool,
}

impl ReplicaContainer {
    fn replica(&self) -> Replica {
        Replica {
            name: self.name.clone(),
            version: self.version.clone(),
            tls_addr: SocketAddr::from((self.ip, TLS_PORT)),
            plaintext_addr: Some(SocketAddr::from((self.ip, PLAINTEXT_PORT))),
            reported_version: None,
        }
    }
}

/// One scenario's replicas as containers on their own network.
pub struct DockerControlPlane {
    engine: Engine,
    run: String,
    network: String,
    options: DockerOptions,
    scenario: Scenario,
    scenario_text: String,
    scenario_time: SystemTime,
    ca_pem: String,
    /// The CA and token key files every replica gets (name, contents).
    state_files: Vec<(String, String)>,
    authority: fake_istiod::TokenAuthority,
    replicas: tokio::sync::Mutex<Vec<ReplicaContainer>>,
    /// A snapshot of `replicas` for the synchronous [`ControlPlane::replicas`].
    listed: Mutex<Vec<Replica>>,
    /// Containers started so far (successors get fresh container names).
    started: std::sync::atomic::AtomicUsize,
}

impl DockerControlPlane {
    /// Creates the network and starts every replica of `scenario` (its YAML
    /// is `scenario_text`), each serving before this returns.
    pub async fn start(
        engine: Engine,
        run: &str,
        scenario_name: &str,
        scenario: Scenario,
        scenario_text: String,
        options: DockerOptions,
    ) -> Result<DockerControlPlane, DockerError> {
        engine
            .require_image(&options.replica_image, BUILD_REPLICA_IMAGE)
            .await?;
        // The CA and token key, made here and given to every replica.
        let dir = tempfile::Builder::new()
            .prefix("proxy-conformance-docker-")
            .tempdir()
            .map_err(|e| DockerError::Setup(format!("cannot create a temporary folder: {e}")))?;
        fake_istiod::init_state_dir(dir.path())
            .map_err(|e| DockerError::Setup(format!("cannot create the replicas' CA: {e}")))?;
        let read = |name: &str| {
            std::fs::read_to_string(dir.path().join(name)).map_err(|e| {
                DockerError::Setup(format!(
                    "cannot read {}: {e}",
                    dir.path().join(name).display()
                ))
            })
        };
        let mut state_files = Vec::new();
        for f in [
            fake_istiod::CA_FILE,
            fake_istiod::CA_KEY_FILE,
            fake_istiod::SIGNING_KEY_FILE,
            fake_istiod::SIGNING_KEY_FILE_PUB,
        ] {
            state_files.push((f.to_string(), read(f)?));
        }
        let ca_pem = read(fake_istiod::CA_FILE)?;
        let authority = fake_istiod::TokenAuthority::from_private_key_pem(&read(
            fake_istiod::SIGNING_KEY_FILE,
        )?)
        .map_err(|e| DockerError::Setup(format!("the token key: {e}")))?;
        drop(dir);

        let network = format!("{run}-{scenario_name}");
        engine.create_network(&network, run).await?;
        let cp = DockerControlPlane {
            engine,
            run: run.to_string(),
            network,
            options,
            scenario_time: SystemTime::now(),
            scenario,
            scenario_text,
            ca_pem,
            state_files,
            authority,
            replicas: tokio::sync::Mutex::new(Vec::new()),
            listed: Mutex::new(Vec::new()),
            started: std::sync::atomic::AtomicUsize::new(0),
        };
        // Started one after the other: a failure names its replica, and
        // what was started (and the network) is removed before it is reported.
        let names: Vec<String> = cp
            .scenario
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .collect();
        for name in names {
            match cp.start_replica(&name).await {
                Ok(rc) => {
                    cp.replicas.lock().await.push(rc);
                    cp.relist().await;
                }
                Err(e) => {
                    cp.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(cp)
    }

    /// The scenario's replica names (also their DNS names on the network).
    pub fn scenario_names(&self) -> Vec<String> {
        self.scenario
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }
    pub fn namespace(&self) -> &str {
        &self.scenario.istiod.namespace
    }

    /// The network the scenario's containers are on.
    pub fn network(&self) -> &str {
        &self.network
    }
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    pub fn run_id(&self) -> &str {
        &self.run
    }
    pub fn ca_pem_text(&self) -> &str {
        &self.ca_pem
    }
    pub fn authority(&self) -> &fake_istiod::TokenAuthority {
        &self.authority
    }

    /// Refreshes the list [`ControlPlane::replicas`] returns. Partitioned
    /// replicas stay listed: they exist, the network lost them.
    async fn relist(&self) {
        let all: Vec<Replica> = self
            .replicas
            .lock()
            .await
            .iter()
            .map(ReplicaContainer::replica)
            .collect();
        if let Ok(mut l) = self.listed.lock() {
            *l = all;
        }
    }

    /// Starts replica `name` of the scenario in a new container under its
    /// name and the shared alias; returns once it accepts connections.
    async fn start_replica(&self, name: &str) -> Result<ReplicaContainer, DockerError> {
        let Some(spec) = self.scenario.replicas.iter().find(|r| r.name == name) else {
            return Err(DockerError::Setup(format!(
                "replica {name} is not in the scenario"
            )));
        };
        let version = self.scenario.replica_version(spec);
        let (repo, tag) = split_image(&self.options.replica_image);
        // The first container of a replica is named after it; a successor
        // (restart, re-add) gets a number, as the old one may still exist.
        let n = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let container_name = if n < self.scenario.replicas.len() {
            format!("{}-{}", self.network, name)
        } else {
            format!("{}-{}-{}", self.network, name, n)
        };
        let epoch_ms = self
            .scenario_time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let cmd: Vec<String> = vec![
            "serve".into(),
            "--scenario".into(),
            format!("{FILES_DIR}/scenario.yaml"),
            "--replica".into(),
            name.into(),
            "--listen-ip".into(),
            "0.0.0.0".into(),
            "--dns-name".into(),
            REPLICA_ALIAS.into(),
            "--control-address".into(),
            format!("0.0.0.0:{CONTROL_PORT}"),
            "--scenario-epoch-ms".into(),
            epoch_ms.to_string(),
            "--state-dir".into(),
            FILES_DIR.into(),
        ];
        // Started on docker's default bridge, then joined to the scenario's
        // network under its aliases (set only when joining a network), as
        // `heal` joins it again. (No `--dns-name` for the container's own
        // name: it can exceed a DNS label's 63 characters, and the harness
        // and the proxy verify `istiod.<ns>.svc`.)
        let mut req = GenericImage::new(repo, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_cmd(cmd)
            .with_container_name(container_name.clone())
            .with_label(RUN_LABEL, self.run.clone())
            .with_copy_to(file("scenario.yaml"), data(&self.scenario_text));
        for (f, text) in &self.state_files {
            req = req.with_copy_to(file(f), data(text));
        }
        let container = req.start().await.map_err(|e| DockerError::Api {
            what: format!("start replica {name} ({})", self.options.replica_image),
            error: e.to_string(),
        })?;
        let aliases = [name.to_string(), REPLICA_ALIAS.to_string()];
        let ip = match self
            .engine
            .join_with_address(&self.network, &container_name, &aliases)
            .await
        {
            Ok(ip) => ip,
            Err(e) => {
                return Err(DockerError::Setup(format!(
                    "replica {name} ({container_name}): {e}; its last output:\n{}",
                    last_output(&container).await
                )));
            }
        };
        let rc = ReplicaContainer {
            name: name.to_string(),
            container_name,
            version,
            ip,
            container,
            partitioned: false,
        };
        self.wait_serving(&rc).await?;
        Ok(rc)
    }

    /// Waits (bounded) until the replica's control API accepts connections:
    /// fake-istiod binds its replica's ports first (unless the scenario
    /// starts it down), then the control API.
    async fn wait_serving(&self, rc: &ReplicaContainer) -> Result<(), DockerError> {
        let deadline = Instant::now() + START_BOUND;
        let mut pause = Duration::from_millis(20);
        let addr = SocketAddr::from((rc.ip, CONTROL_PORT));
        loop {
            let tried = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            match tried {
                Ok(Ok(_)) => return Ok(()),
                _ if Instant::now() >= deadline => {
                    return Err(DockerError::Setup(format!(
                        "replica {} ({}) does not accept connections on {addr} after {}s; its last output:\n{}",
                        rc.name,
                        rc.container_name,
                        START_BOUND.as_secs(),
                        last_output(&rc.container).await
                    )));
                }
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// The control API of the replica serving `name`.
    async fn control(
        &self,
        name: &str,
    ) -> Result<
        proto::control::fake_istiod_control_client::FakeIstiodControlClient<
            tonic::transport::Channel,
        >,
        TopologyError,
    > {
        let ip = {
            let guard = self.replicas.lock().await;
            guard
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.ip)
                .ok_or_else(|| TopologyError::Failed(format!("no running replica {name}")))?
        };
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{ip}:{CONTROL_PORT}"))
                .map_err(|e| TopologyError::Failed(e.to_string()))?
                .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| {
            TopologyError::Failed(format!("the control API of replica {name} ({ip}): {e}"))
        })?;
        Ok(proto::control::fake_istiod_control_client::FakeIstiodControlClient::new(channel))
    }

    /// Removes every container and the network (also what is left of a
    /// partial start). Errors are reported, not fatal: the run's label sweep
    /// catches anything left.
    pub async fn stop(self) {
        let replicas = std::mem::take(&mut *self.replicas.lock().await);
        for r in replicas {
            if let Err(e) = r.container.rm().await {
                tracing::warn!(replica = %r.name, error = %e, "cannot remove the replica's container");
            }
        }
        if let Err(e) = self.engine.remove_network(&self.network).await {
            tracing::warn!(network = %self.network, error = %e, "cannot remove the network");
        }
    }

    /// Removes a replica's container: its address stops answering and its
    /// DNS names disappear. The future ends when it is gone.
    pub async fn remove(&self, name: &str) -> Result<Replica, TopologyError> {
        let rc = {
            let mut guard = self.replicas.lock().await;
            let i = guard
                .iter()
                .position(|r| r.name == name)
                .ok_or_else(|| TopologyError::Failed(format!("no running replica {name}")))?;
            guard.remove(i)
        };
        let gone = rc.replica();
        self.relist().await;
        rc.container
            .rm()
            .await
            .map_err(|e| TopologyError::Failed(format!("cannot remove replica {name}: {e}")))?;
        Ok(gone)
    }

    /// Starts a removed replica again in a new container (a new address)
    /// under its name and the shared alias; ends once it serves.
    pub async fn add(&self, name: &str) -> Result<Replica, TopologyError> {
        if self.replicas.lock().await.iter().any(|r| r.name == name) {
            return Err(TopologyError::Failed(format!("replica {name} is running")));
        }
        let rc = self.start_replica(name).await?;
        let added = rc.replica();
        self.replicas.lock().await.push(rc);
        self.sort().await;
        Ok(added)
    }

    /// Keeps scenario order.
    async fn sort(&self) {
        let order: Vec<String> = self
            .scenario
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .collect();
        self.replicas
            .lock()
            .await
            .sort_by_key(|r| order.iter().position(|n| *n == r.name));
        self.relist().await;
    }

    /// Disconnects a replica's container from the network: connections to
    /// it hang (no RST), its DNS names disappear.
    pub async fn partition(&self, name: &str) -> Result<(), TopologyError> {
        let container = {
            let mut guard = self.replicas.lock().await;
            let rc = guard
                .iter_mut()
                .find(|r| r.name == name)
                .ok_or_else(|| TopologyError::Failed(format!("no running replica {name}")))?;
            rc.partitioned = true;
            rc.container_name.clone()
        };
        self.engine.disconnect(&self.network, &container).await?;
        Ok(())
    }

    /// Connects a partitioned replica again (under its names; its address
    /// may change); ends once it serves.
    pub async fn heal(&self, name: &str) -> Result<(), TopologyError> {
        let container = {
            let guard = self.replicas.lock().await;
            guard
                .iter()
                .find(|r| r.name == name && r.partitioned)
                .map(|r| r.container_name.clone())
                .ok_or_else(|| {
                    TopologyError::Failed(format!("replica {name} is not partitioned"))
                })?
        };
        let ip = self
            .engine
            .join_with_address(
                &self.network,
                &container,
                &[name.to_string(), REPLICA_ALIAS.to_string()],
            )
            .await?;
        {
            let mut guard = self.replicas.lock().await;
            if let Some(rc) = guard.iter_mut().find(|r| r.name == name) {
                rc.ip = ip;
                rc.partitioned = false;
            }
        }
        self.relist().await;
        let guard = self.replicas.lock().await;
        if let Some(rc) = guard.iter().find(|r| r.name == name) {
            self.wait_serving(rc).await?;
        }
        Ok(())
    }
}

impl ControlPlane for DockerControlPlane {
    fn topology(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    fn replicas(&self) -> Vec<Replica> {
        self.listed.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn istio_namespace(&self) -> &str {
        &self.scenario.istiod.namespace
    }

    fn replica_trust(&self) -> ReplicaTrust {
        // Certificates name istiod.<ns>.svc (and the aliases), not the
        // containers' addresses, which docker picks.
        ReplicaTrust {
            ca_pem: self.ca_pem.clone(),
            server_name: Some(format!("istiod.{}.svc", self.scenario.istiod.namespace)),
        }
    }

    fn token(&self, spec: &TokenSpec) -> Result<String, TopologyError> {
        Ok(self.authority.mint(spec))
    }

    fn scripted(&self) -> Option<&dyn ScriptedMesh> {
        Some(self)
    }

    fn network(&self) -> Option<&dyn super::NetworkFaults> {
        Some(self)
    }

    /// A rolling restart: a successor container is started under the same
    /// replica name and alias (so a new address: the old one still holds its
    /// own), then the old container is removed.
    fn restart<'a>(&'a self, replica: &'a str) -> Option<BoxFuture<'a, Result<(), TopologyError>>> {
        Some(Box::pin(async move {
            let successor = self.start_replica(replica).await?;
            let old = {
                let mut guard = self.replicas.lock().await;
                let i = guard
                    .iter()
                    .position(|r| r.name == replica)
                    .ok_or_else(|| {
                        TopologyError::Failed(format!("no running replica {replica}"))
                    })?;
                std::mem::replace(&mut guard[i], successor)
            };
            self.relist().await;
            old.container
                .rm()
                .await
                .map_err(|e| TopologyError::Failed(format!("cannot remove the old {replica}: {e}")))
        }))
    }
}

impl super::NetworkFaults for DockerControlPlane {
    fn partition<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(DockerControlPlane::partition(self, replica))
    }
    fn heal<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(DockerControlPlane::heal(self, replica))
    }
    fn remove<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<Replica, TopologyError>> {
        Box::pin(DockerControlPlane::remove(self, replica))
    }
    fn add<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<Replica, TopologyError>> {
        Box::pin(DockerControlPlane::add(self, replica))
    }
}

impl ScriptedMesh for DockerControlPlane {
    fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    fn scenario_time(&self) -> SystemTime {
        self.scenario_time
    }

    /// Through the replica's own control API (each container serves one).
    fn set_fault<'a>(
        &'a self,
        replica: &'a str,
        fault: Option<Fault>,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(async move {
            use proto::control as pb;
            let mut c = self.control(replica).await?;
            let done = match fault {
                Some(f) => c
                    .set_fault(pb::SetFaultRequest {
                        replica: replica.to_string(),
                        fault: Some(fake_istiod::control::fault_to_pb(&f)),
                    })
                    .await
                    .map(|_| ()),
                None => c
                    .clear_fault(pb::ClearFaultRequest {
                        replica: replica.to_string(),
                    })
                    .await
                    .map(|_| ()),
            };
            done.map_err(|s| TopologyError::Failed(format!("replica {replica}: {}", s.message())))
        })
    }

    /// Every replica holds the whole mesh: each is told, so the one the proxy
    /// leaves stops reporting it and the one it joins starts.
    fn move_proxy<'a>(
        &'a self,
        proxy_id: &'a str,
        to_replica: &'a str,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(async move {
            let names: Vec<String> = self.replicas().into_iter().map(|r| r.name).collect();
            for name in names {
                let mut c = self.control(&name).await?;
                c.move_proxy(proto::control::MoveProxyRequest {
                    id: proxy_id.to_string(),
                    to_replica: to_replica.to_string(),
                })
                .await
                .map_err(|s| TopologyError::Failed(format!("replica {name}: {}", s.message())))?;
            }
            Ok(())
        })
    }
}

/// Makes a panic anywhere in the process remove the run's containers and
/// networks first (by label, from a thread of its own), then report the
/// panic as before: unwinding alone would leave them when the runtime dies.
pub fn sweep_on_panic(run: String) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let run = run.clone();
        let swept = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let engine = engine::Engine::connect().await.map_err(|e| e.to_string())?;
                engine.sweep(&run).await.map_err(|e| e.to_string())
            })
        })
        .join();
        match swept {
            Ok(Ok((c, n))) => {
                eprintln!("panic: removed {c} containers and {n} networks of the run")
            }
            Ok(Err(e)) => eprintln!("panic: cannot remove the run's containers: {e}"),
            Err(_) => eprintln!("panic: cannot remove the run's containers"),
        }
        previous(info);
    }));
}

/// A fresh id for one run's containers and networks (also their label).
pub fn new_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pc-{}-{:08x}", std::process::id(), nanos)
}

/// The topology's name (`--topology docker`).
pub const NAME: &str = "docker";

/// The docker topology: per scenario, its replicas as containers on a network
/// of their own and the proxy image as a container on it.
pub struct DockerTopology {
    proxy: ProxyUnderTest,
    options: DockerRunOptions,
    /// `--scenarios`; `None`: the embedded ones.
    scenarios: Option<PathBuf>,
    /// Connected in [`Topology::prepare`], once for the run.
    engine: Option<Engine>,
}

impl DockerTopology {
    pub fn new(
        proxy: ProxyUnderTest,
        options: DockerRunOptions,
        scenarios: Option<PathBuf>,
    ) -> Self {
        DockerTopology {
            proxy,
            options,
            scenarios,
            engine: None,
        }
    }

    /// The docker topology: the scenario's replicas as containers on a
    /// network of their own, and the proxy image as a container on it.
    pub async fn start(
        &self,
        engine: Engine,
        name: &str,
        scenario: Scenario,
        text: String,
    ) -> Result<Session, ProxyError> {
        let proxy = &self.proxy;
        let config = &self.options;
        let run_id = &config.run_id;
        let ProxyMode::Image(image) = &proxy.mode else {
            return Err(ProxyError::Setup(
                "the docker topology runs the proxy from an image (--proxy-image)".to_string(),
            ));
        };
        let namespace = scenario.istiod.namespace.clone();
        let cp = DockerControlPlane::start(
            engine,
            run_id,
            name,
            scenario,
            text,
            config.replicas.clone(),
        )
        .await
        .map_err(|e| ProxyError::Setup(e.to_string()))?;
        let cp = Arc::new(cp);
        let fail = |cp: Arc<DockerControlPlane>, e: String| async move {
            if let Ok(cp) = Arc::try_unwrap(cp) {
                cp.stop().await;
            }
            ProxyError::Setup(e)
        };
        let (cert_pem, key_pem) = match serving_cert(&["localhost", "istioctl-proxy"]) {
            Ok(c) => c,
            Err(e) => return Err(fail(cp, e.to_string()).await),
        };
        let files = ProxyFiles {
            cert_pem,
            key_pem,
            token: cp
                .authority()
                .mint(&TokenSpec::new(namespace.as_str(), "istioctl-proxy")),
            token_issuer_key: cp.authority().public_pem().to_string(),
        };
        let spec = ProxySpec {
            image: image.clone(),
            args: config
                .proxy_args
                .clone()
                .unwrap_or_else(|| REFERENCE_PROXY_ARGS.to_string()),
            env: config.proxy_env.clone(),
            discovery_refresh: config.discovery_refresh,
        };
        let proxy_container = match ProxyContainer::start(&cp, name, &spec, &files).await {
            Ok(p) => p,
            Err(e) => return Err(fail(cp, e.to_string()).await),
        };
        let memory = proxy_container.pid(&cp).await.map(MemoryProbe::Tree);
        let ctx = CheckContext {
            memory,
            notes: Default::default(),
            scenario_name: name.to_string(),
            control_plane: cp.clone(),
            proxy: ProxyEndpoint {
                address: proxy_container.address.to_string(),
                plaintext: proxy.plaintext,
                discovery_refresh: config.discovery_refresh,
            },
            families: proxy.families.clone(),
            snapshots: proxy.snapshots.clone(),
            proxy_output: Some(proxy_container.output.clone()),
        };
        let teardown = Shared(cp, |cp: DockerControlPlane| Box::pin(cp.stop()));
        Session::new(
            ctx,
            Some(Box::new(proxy_container)),
            vec![Box::new(teardown)],
            None,
        )
        .ready(proxy.ready_timeout)
        .await
    }
}

impl Topology for DockerTopology {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    fn mode(&self) -> String {
        format!("docker {}", self.proxy.mode.name())
    }

    /// The engine, and both images, once: a missing one stops the run at once.
    fn prepare<'a>(
        &'a mut self,
        scenarios: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<String>, ProxyError>> {
        Box::pin(async move {
            if scenarios.is_empty() {
                return Ok(vec![]);
            }
            let setup = |e: DockerError| ProxyError::Setup(e.to_string());
            let engine = Engine::connect().await.map_err(setup)?;
            engine
                .require_image(&self.options.replicas.replica_image, BUILD_REPLICA_IMAGE)
                .await
                .map_err(setup)?;
            if let ProxyMode::Image(image) = &self.proxy.mode {
                engine
                    .require_image(image, BUILD_PROXY_IMAGE)
                    .await
                    .map_err(setup)?;
            }
            self.engine = Some(engine);
            Ok(vec![])
        })
    }

    fn open<'a>(&'a self, scenario: &'a str) -> BoxFuture<'a, Result<Session, OpenError>> {
        Box::pin(async move {
            let dir = self.scenarios.as_deref();
            let parsed = super::scenarios::load(dir, scenario).map_err(OpenError::Scenario)?;
            let (text, _) = super::scenarios::text(dir, scenario).map_err(OpenError::Scenario)?;
            let Some(engine) = &self.engine else {
                return Err(ProxyError::Setup("no docker engine".to_string()).into());
            };
            Ok(self.start(engine.clone(), scenario, parsed, text).await?)
        })
    }

    /// Anything of this run's still on the engine (a scenario that failed
    /// half-way) goes now.
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(engine) = &self.engine else { return };
            match engine.sweep(&self.options.run_id).await {
                Ok((0, 0)) => {}
                Ok((c, n)) => tracing::warn!(
                    containers = c,
                    networks = n,
                    "removed what the run left behind"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot sweep the run's containers"),
            }
        })
    }
}

/// Capabilities of this topology.
pub const CAPABILITIES: &[Capability] = &[
    Capability::ScriptedMesh,
    Capability::ReplicaFaults,
    Capability::MoveProxies,
    Capability::ForgedTokens,
    Capability::RestartReplicas,
    Capability::NetworkPartitions,
    Capability::AddRemoveReplicas,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(
            split_image("fake-istiod:local"),
            ("fake-istiod".into(), "local".into())
        );
        assert_eq!(
            split_image("fake-istiod"),
            ("fake-istiod".into(), "latest".into())
        );
        assert_eq!(
            split_image("reg:5000/team/proxy:1.2"),
            ("reg:5000/team/proxy".into(), "1.2".into())
        );
        assert_eq!(
            split_image("reg:5000/team/proxy"),
            ("reg:5000/team/proxy".into(), "latest".into())
        );
    }

    #[test]
    fn run_ids_are_docker_names() {
        let id = new_run_id();
        assert!(id.starts_with("pc-"), "{id}");
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }
}
