//! What a check sees of the control plane, whatever the topology (design.md,
//! "Topologies"): the replicas and how to ask each directly (the ground
//! truth), tokens for a caller, and optional [`Capability`]s. A check declares
//! the capabilities it needs; on a topology that lacks one the runner skips it
//! with the reason, never silently.

use fake_istiod::TokenSpec;
use fake_istiod::scenario::{Fault, Scenario};
use futures::future::BoxFuture;
use proto::IstioVersion;
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

/// What a topology may be able to do beyond replicas, ground truth and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The mesh is a scenario file: its proxies, statuses and clock are known
    /// in advance, so expected tables and scale (25,000 proxies) can be set up.
    ScriptedMesh,
    /// Replicas fail on request in scripted ways (down, reset, hang, gRPC
    /// errors, garbage, truncated answers, delays, duplicate claims).
    ReplicaFaults,
    /// A proxy moves from one replica to another between two requests.
    MoveProxies,
    /// Tokens with any defect: expired, wrong audience, signed by an unknown
    /// key (a real cluster's issuer key is out of the bench's reach).
    ForgedTokens,
    /// A replica restarts: a real cluster deletes its pod and its Deployment
    /// makes a new one (a new name and address); docker starts a new
    /// container under the same name (a new address); the local fakes stop
    /// serving and start again on the same address.
    RestartReplicas,
    /// A replica cut off by the network: packets to it go nowhere (no RST),
    /// its DNS record disappears; later it is connected again.
    NetworkPartitions,
    /// A replica removed (its address and DNS record gone) and one added
    /// under the shared DNS name, as a Deployment scales.
    AddRemoveReplicas,
    /// The real istioctl binary, with a kubeconfig whose API server mints
    /// the tokens the replicas accept ([`ControlPlane::real_istioctl`]).
    RealIstioctl,
}

impl Capability {
    /// Everything the local topology can do.
    pub const LOCAL: [Capability; 5] = [
        Capability::ScriptedMesh,
        Capability::ReplicaFaults,
        Capability::MoveProxies,
        Capability::ForgedTokens,
        Capability::RestartReplicas,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Capability::ScriptedMesh => "scripted-mesh",
            Capability::ReplicaFaults => "replica-faults",
            Capability::MoveProxies => "move-proxies",
            Capability::ForgedTokens => "forged-tokens",
            Capability::RestartReplicas => "restart-replicas",
            Capability::NetworkPartitions => "network-partitions",
            Capability::AddRemoveReplicas => "add-remove-replicas",
            Capability::RealIstioctl => "real-istioctl",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One istiod replica as the harness reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// Its pod name (what istiod reports as its ControlPlane ID).
    pub name: String,
    pub version: IstioVersion,
    /// Where the harness reaches its TLS xDS port (15012).
    pub tls_addr: SocketAddr,
    /// Where the harness reaches its plaintext xDS port (15010), if it can.
    pub plaintext_addr: Option<SocketAddr>,
    /// The version text it reports (`Info.version`, e.g. `1.32.0-dev`), when
    /// known and not just `version` (a real istiod's build tag).
    pub reported_version: Option<String>,
}

impl Replica {
    /// What it reports as its version (`Info.version`): the text it was seen
    /// to report, else its release.
    pub fn version_text(&self) -> String {
        self.reported_version
            .clone()
            .unwrap_or_else(|| self.version.to_string())
    }

    /// Does `text` name this replica (its pod name or an address)?
    pub fn named_in(&self, text: &str) -> bool {
        text.contains(&self.name)
            || text.contains(&self.tls_addr.to_string())
            || self
                .plaintext_addr
                .is_some_and(|a| text.contains(&a.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The topology cannot do this at all (a missing capability).
    #[error("the {topology} topology cannot {what}")]
    Unsupported {
        topology: &'static str,
        what: String,
    },
    #[error("{0}")]
    Failed(String),
}

/// How the harness verifies a replica's serving certificate.
#[derive(Debug, Clone)]
pub struct ReplicaTrust {
    /// PEM of the CA that signs every replica's serving certificate.
    pub ca_pem: String,
    /// The name to expect in it, when the address is not in the certificate
    /// (a port-forward to a pod whose certificate names `istiod.<ns>.svc`).
    pub server_name: Option<String>,
}

/// The control plane of one run (or one scenario of a local run).
pub trait ControlPlane: Send + Sync {
    /// The topology's name, for messages (`local`, `docker`, `cluster`, ...).
    fn topology(&self) -> &'static str;
    /// What this control plane can do beyond replicas, ground truth and tokens.
    fn capabilities(&self) -> &'static [Capability];
    /// How long an answer through the proxy may take to be whole again after
    /// a restarted replica's successor serves: the mesh's sidecars reconnect
    /// (with Envoy's backoff) and a discovering proxy sees the new pod.
    fn converge_after_restart(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }
    /// The replicas, in a stable order.
    fn replicas(&self) -> Vec<Replica>;
    /// istiod's namespace (istioctl's `--istioNamespace`).
    fn istio_namespace(&self) -> &str;
    /// How to verify the replicas' TLS.
    fn replica_trust(&self) -> ReplicaTrust;
    /// A bearer token the replicas (and so the proxy) accept for this caller;
    /// a defective one where the spec asks for a defect.
    fn token(&self, spec: &TokenSpec) -> Result<String, TopologyError>;
    /// The scripted mesh, on a topology with [`Capability::ScriptedMesh`].
    fn scripted(&self) -> Option<&dyn ScriptedMesh> {
        None
    }
    /// Restarts a replica, on a topology with [`Capability::RestartReplicas`];
    /// the future ends when its successor is serving (and listed by
    /// [`ControlPlane::replicas`]). `None` elsewhere.
    fn restart<'a>(
        &'a self,
        _replica: &'a str,
    ) -> Option<BoxFuture<'a, Result<(), TopologyError>>> {
        None
    }
    /// Network faults, on a topology with [`Capability::NetworkPartitions`]
    /// or [`Capability::AddRemoveReplicas`].
    fn network(&self) -> Option<&dyn NetworkFaults> {
        None
    }
    /// The real istioctl, on a topology with [`Capability::RealIstioctl`].
    fn real_istioctl(&self) -> Option<RealIstioctl> {
        None
    }
    /// Whether this control plane has the capability.
    fn has(&self, capability: Capability) -> bool {
        self.capabilities().contains(&capability)
    }
}

/// The real istioctl and where it runs, as the blog runs it: a kubeconfig
/// whose `context` is the cluster that mints its token (the remote one).
#[derive(Debug, Clone)]
pub struct RealIstioctl {
    pub binary: std::path::PathBuf,
    pub kubeconfig: std::path::PathBuf,
    pub context: String,
    /// Its version (`istioctl version --remote=false`).
    pub version: IstioVersion,
    /// Real sidecars (`<pod>.<ns>`) and their Envoy's admin address, for
    /// `istioctl proxy-status <pod>.<ns> --file <Envoy's config dump>`.
    pub envoys: Vec<(String, SocketAddr)>,
}

/// A mesh the bench writes itself (the local topology's scenarios).
pub trait ScriptedMesh: Send + Sync {
    /// The scenario the replicas were started with.
    fn scenario(&self) -> &Scenario;
    /// The instant the scenario's relative ages count from.
    fn scenario_time(&self) -> SystemTime;
    /// Makes a replica fail (or clears it with `None`).
    fn set_fault<'a>(
        &'a self,
        replica: &'a str,
        fault: Option<Fault>,
    ) -> BoxFuture<'a, Result<(), TopologyError>>;
    /// Moves a proxy to another replica.
    fn move_proxy<'a>(
        &'a self,
        proxy_id: &'a str,
        to_replica: &'a str,
    ) -> BoxFuture<'a, Result<(), TopologyError>>;
}

/// What a real network does to replicas (the docker topology).
pub trait NetworkFaults: Send + Sync {
    /// Cuts the replica off: connections to it hang, its DNS record goes.
    fn partition<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), TopologyError>>;
    /// Connects it again (its address may change); ends once it serves.
    fn heal<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), TopologyError>>;
    /// Removes the replica (address and DNS record gone); returns it as it was.
    fn remove<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<Replica, TopologyError>>;
    /// Starts a removed replica again under the shared DNS name (a new
    /// address); ends once it serves, and returns it.
    fn add<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<Replica, TopologyError>>;
}
