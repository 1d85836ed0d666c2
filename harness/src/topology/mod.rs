//! Where the control plane lives (design.md, "Topologies"). The checks see it
//! only through [`ControlPlane`]: the replicas and how to ask each directly
//! (the ground truth), tokens for a caller, and optional [`Capability`]s. A
//! check declares the capabilities it needs; on a topology that lacks one the
//! runner skips it with the reason, never silently.
//!
//! | topology | module | control plane |
//! |---|---|---|
//! | `local` | [`local`] | fake-istiod replicas on 127.0.0.x, in process, driven by a scenario |
//! | `docker` | [`docker`] | fake-istiod replicas as containers on a docker network, the proxy as a container |
//! | `cluster` | [`cluster`] | real istiod pods of an external control plane, through port-forwards |
//! | `real-istio` | [`real_istio`] | real istiod, kube-apiserver and etcd as processes on loopback |

pub mod cluster;
pub mod docker;
pub mod local;

pub mod bench;
pub mod loopback;
pub mod process;
pub mod real_istio;
pub mod scenarios;

use crate::suite::snapshots::Snapshots;
use futures::future::BoxFuture;
use proto::IstioctlFamily;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::suite::control_plane::*;
pub use bench::{ProxyError, Session};

/// Which topology a run uses (`proxy-conformance run --topology`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum TopologyKind {
    /// fake-istiod replicas on loopback, one scenario after the other.
    #[default]
    Local,
    /// fake-istiod replicas as containers on a docker network (one per
    /// scenario), all under one DNS alias; the proxy under test as a
    /// container (`--proxy-image`). Adds faults only a real network makes.
    Docker,
    /// A real external control plane (`proxy-conformance cluster up`): real
    /// istiod pods as the ground truth, the deployed proxy under test.
    Cluster,
    /// Real istiod replicas, kube-apiserver and etcd built from their Go
    /// modules (`ci/real-istio-build.sh`) and run as processes: the external
    /// control plane on one machine, its live mesh of light sidecars.
    RealIstio,
}

impl TopologyKind {
    pub fn name(self) -> &'static str {
        match self {
            TopologyKind::Local => "local",
            TopologyKind::Docker => "docker",
            TopologyKind::Cluster => "cluster",
            TopologyKind::RealIstio => real_istio::NAME,
        }
    }
    /// What this kind of topology can do (the same as its [`Topology::capabilities`]).
    pub fn capabilities(self) -> &'static [Capability] {
        match self {
            TopologyKind::Local => &Capability::LOCAL,
            TopologyKind::Docker => docker::CAPABILITIES,
            TopologyKind::Cluster => cluster::CAPABILITIES,
            TopologyKind::RealIstio => real_istio::CAPABILITIES,
        }
    }
}

impl fmt::Display for TopologyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the proxy under test is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// The bundled reference proxy, in process.
    Bundled,
    /// A command started per scenario.
    Command(String),
    /// Already running at this address.
    Address(String),
    /// A container of this image (the docker topology).
    Image(String),
}

impl ProxyMode {
    pub fn name(&self) -> &'static str {
        match self {
            ProxyMode::Bundled => "bundled",
            ProxyMode::Command(_) => "command",
            ProxyMode::Address(_) => "address",
            ProxyMode::Image(_) => "image",
        }
    }
}

/// What every topology needs to know about the proxy under test.
#[derive(Debug, Clone)]
pub struct ProxyUnderTest {
    pub mode: ProxyMode,
    /// The proxy serves plaintext (`--proxy-plaintext`).
    pub plaintext: bool,
    /// How long it may take to take its first request.
    pub ready_timeout: Duration,
    /// How often it says it re-discovers its replicas.
    pub discovery_refresh: Duration,
    /// The istioctl versions the checks ask as.
    pub families: Vec<IstioctlFamily>,
    /// The expected tables.
    pub snapshots: Arc<Snapshots>,
}

/// Adjusts the bundled proxy's configuration (tests use it to inject defects).
pub type Customize = Arc<dyn Fn(&mut istioctl_proxy::ProxyConfig) + Send + Sync>;

/// Connects the cluster topology another way (tests: fake replicas standing
/// in for a cluster's istiod pods).
pub type ConnectCluster = Arc<
    dyn Fn() -> BoxFuture<'static, Result<cluster::ClusterControlPlane, TopologyError>>
        + Send
        + Sync,
>;

/// Called with each scenario's context once its session is up.
pub type AfterSetup = Arc<dyn Fn(&crate::suite::CheckContext) + Send + Sync>;

/// Test-only levers of a run; users have none of these.
#[derive(Clone, Default)]
pub struct Hooks {
    pub customize_bundled: Option<Customize>,
    /// With `--topology cluster`: instead of the kubeconfig contexts.
    pub connect_cluster: Option<ConnectCluster>,
    /// With `--proxy-addr`: give every scenario this many replicas (idle ones
    /// added), so the replica addresses the proxy was configured with never
    /// change. Unset: the most any selected scenario has.
    pub pad_replicas_to: Option<usize>,
    /// Called once a scenario's session is up, before its checks (tests: a
    /// panic in the middle of a run).
    pub after_setup: Option<AfterSetup>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("customize_bundled", &self.customize_bundled.is_some())
            .field("connect_cluster", &self.connect_cluster.is_some())
            .finish()
    }
}

/// Why a topology could not open a scenario (or the live mesh).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The scenario could not be read.
    #[error("{0}")]
    Scenario(String),
    /// The control plane or the proxy did not come up.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

impl OpenError {
    /// The proxy itself did not come up (as opposed to the bench around it).
    pub fn is_not_ready(&self) -> bool {
        matches!(self, OpenError::Proxy(e) if e.is_not_ready())
    }
}

/// A place where the control plane and the proxy under test live: it opens a
/// scenario (or its live mesh) and hands back a [`Session`], the control
/// plane and the proxy, ready for the checks. A new topology is a module here
/// that implements this, plus a [`TopologyKind`] variant.
pub trait Topology: Send + Sync {
    /// Its name (`--topology`).
    fn name(&self) -> &'static str;
    /// What it can do; checks that need more are skipped with the reason.
    fn capabilities(&self) -> &'static [Capability];
    /// Whether it runs scenarios (a scripted mesh: each check on its
    /// scenarios) or one live mesh (each check once, on it).
    fn scripted(&self) -> bool {
        self.capabilities().contains(&Capability::ScriptedMesh)
    }
    /// How the proxy under test runs here, for the report (`bundled`,
    /// `docker image`, `cluster service`...).
    fn mode(&self) -> String;
    /// Once, before the first scenario (their names, in run order): what all
    /// of them need (images, a fixed setup). Returns lines for the user.
    fn prepare<'a>(
        &'a mut self,
        scenarios: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<String>, ProxyError>>;
    /// `None` when scenarios may be open side by side (each with its own
    /// replicas, addresses and proxy); otherwise why they are opened one at
    /// a time.
    fn sequential(&self) -> Option<String> {
        Some(format!(
            "the {} topology opens one scenario at a time",
            self.name()
        ))
    }
    /// Opens a scenario by name (on a live mesh: the topology's name) and
    /// waits until the proxy under test takes requests.
    fn open<'a>(&'a self, scenario: &'a str) -> BoxFuture<'a, Result<Session, OpenError>>;
    /// After the last scenario: removes whatever the run left behind.
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
