//! One step of the plan as data: what it does (an [`Action`]), on which
//! cluster, in which phase, citing where it comes from.
use std::time::Duration;

use crate::manifests::Manifest;
use crate::provider::Role;

/// How a manifest reaches the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplySource {
    /// Rendered by this crate (printed in full by the plan).
    Rendered(Manifest),
    /// A file written by an earlier step (e.g. `istioctl manifest generate` output).
    File {
        path: String,
        label_selector: Option<String>,
    },
    /// Downloaded (the blog applies the sample proxy by URL).
    Url(String),
}

/// What a wait waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    /// Every CustomResourceDefinition in the file has condition Established.
    CrdsEstablished { from: String },
    /// `availableReplicas >= replicas` and the rollout is observed (not `is_deployment_completed`).
    DeploymentAvailable {
        namespace: String,
        name: String,
        replicas: u32,
    },
    /// Every pod matching the selector is Ready with `containers` containers (2 = sidecar injected).
    PodsReady {
        namespace: String,
        selector: String,
        containers: u32,
    },
    /// The webhook configuration's caBundle is set (the external istiod patched it).
    WebhookCaBundle { name: String },
}

/// A value found at run time, stored in a `${VAR}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The docker network's IPv4 subnet, split into one MetalLB pool per cluster at its end.
    MetallbPools { network: String },
    /// `status.loadBalancer.ingress[0].ip` of a Service.
    LoadBalancerIp { namespace: String, service: String },
    /// The control-plane container's IP on the docker network (`docker inspect`).
    ContainerIp { container: String, network: String },
    /// A root CA + intermediate (the `cacerts` layout) and the proxy's TLS pair, generated locally.
    GeneratedCerts,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A CLI through tokio::process, killed at the bound. `stdout_to`: file that keeps its output.
    Run {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        stdout_to: Option<String>,
        timeout: Duration,
    },
    /// Download and unpack (cached: skipped when `creates` exists).
    Download {
        url: String,
        into: String,
        creates: String,
        timeout: Duration,
    },
    /// A file the next commands read (IstioOperator, kind config).
    WriteFile { manifest: Manifest, path: String },
    /// Server-side apply with strict field validation; CRDs first and Established before the rest.
    Apply {
        cluster: Role,
        namespace: Option<String>,
        source: ApplySource,
        timeout: Duration,
    },
    Wait {
        cluster: Role,
        until: Until,
        timeout: Duration,
    },
    Resolve {
        vars: Vec<String>,
        lookup: Lookup,
        cluster: Option<Role>,
        timeout: Duration,
    },
    /// Pod port-forward (kube `ws`) to a pod behind a Service, kept until the run ends.
    PortForward {
        cluster: Role,
        namespace: String,
        service: String,
        local: u16,
        remote: u16,
    },
    /// Ask each istiod pod directly how many proxies it owns (`/debug/syncz`); re-roll the sample workloads (bounded)
    /// until at least `min_owners` replicas own proxies (sharding is not guaranteed: clusters.md).
    MeasureSharding {
        min_owners: u32,
        max_rerolls: u32,
        per_roll_timeout: Duration,
    },
    /// Compare istioctl's table with a live snapshot of the remote cluster: every ISTIOD `<external>`,
    /// rows exactly the remote pods that carry a sidecar.
    CompareTable { table_from: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The phase, named as the guide / blog names it.
    pub phase: &'static str,
    pub name: String,
    /// Where this step comes from.
    pub source: &'static str,
    /// On which cluster (None: the host).
    pub cluster: Option<Role>,
    /// Steps of one group run concurrently (cluster creation).
    pub parallel: Option<&'static str>,
    pub action: Action,
}
