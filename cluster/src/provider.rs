//! Where the two clusters come from: kind, k3d, or two contexts the user already has.
use crate::istio::NodeImages;

/// The two clusters of the guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Role {
    /// `CTX_EXTERNAL_CLUSTER`: the external control plane (and the proxy under test).
    External,
    /// `CTX_REMOTE_CLUSTER`: the mesh (config) cluster with the workloads.
    Remote,
}

impl Role {
    pub const BOTH: [Role; 2] = [Role::External, Role::Remote];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::External => "external",
            Role::Remote => "remote",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    Kind,
    K3d,
    /// Two existing kubeconfig contexts; nothing is created or deleted.
    Contexts {
        external: String,
        remote: String,
    },
}

/// The docker network both created clusters share (kind's default network; k3d joins it too,
/// so the two providers' clusters reach each other's container IPs the same way).
/// Source: clusters.md, "How Istio's own tests do it in kind" (prow/integ-suite-kind.sh).
pub const DOCKER_NETWORK: &str = "kind";

/// Disjoint pod / service subnets per cluster (istio/istio prow/config/topology/external-istiod.json
/// uses 10.10/16 and 10.20/16).
pub fn subnets(role: Role) -> (&'static str, &'static str) {
    match role {
        Role::External => ("10.10.0.0/16", "10.255.10.0/24"),
        Role::Remote => ("10.20.0.0/16", "10.255.20.0/24"),
    }
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Kind => "kind",
            Provider::K3d => "k3d",
            Provider::Contexts { .. } => "contexts",
        }
    }

    /// Whether the bench creates (and deletes) the clusters.
    pub fn creates_clusters(&self) -> bool {
        !matches!(self, Provider::Contexts { .. })
    }

    /// The cluster's name (the remote one's is also the istiod CLUSTER_ID and the remote-secret name).
    pub fn cluster_name(&self, role: Role) -> String {
        role.as_str().to_string()
    }

    pub fn context(&self, role: Role) -> String {
        match self {
            Provider::Kind => format!("kind-{role}"),
            Provider::K3d => format!("k3d-{role}"),
            Provider::Contexts { external, remote } => match role {
                Role::External => external.clone(),
                Role::Remote => remote.clone(),
            },
        }
    }

    /// The control-plane node container (its IP on the docker network is the API server address
    /// the other cluster uses: clusters.md, "One cluster reaches another's API server").
    pub fn control_plane_container(&self, role: Role) -> Option<String> {
        match self {
            Provider::Kind => Some(format!("{role}-control-plane")),
            Provider::K3d => Some(format!("k3d-{role}-server-0")),
            Provider::Contexts { .. } => None,
        }
    }

    /// argv that creates one cluster.
    pub fn create_argv(
        &self,
        role: Role,
        node: &NodeImages,
        kind_config: &str,
    ) -> Option<Vec<String>> {
        let name = self.cluster_name(role);
        let (pods, services) = subnets(role);
        match self {
            Provider::Kind => Some(argv(&[
                "kind",
                "create",
                "cluster",
                "--name",
                &name,
                "--config",
                kind_config,
                "--wait",
                "180s",
            ])),
            Provider::K3d => Some(argv(&[
                "k3d",
                "cluster",
                "create",
                &name,
                "--network",
                DOCKER_NETWORK,
                "--image",
                node.k3s_image,
                // MetalLB gives LoadBalancer IPs on both providers: k3s's own servicelb is off.
                "--k3s-arg",
                "--disable=servicelb@server:0",
                "--k3s-arg",
                "--disable=traefik@server:0",
                "--k3s-arg",
                &format!("--cluster-cidr={pods}@server:0"),
                "--k3s-arg",
                &format!("--service-cidr={services}@server:0"),
                "--wait",
                "--timeout",
                "180s",
            ])),
            Provider::Contexts { .. } => None,
        }
    }

    pub fn delete_argv(&self, role: Role) -> Option<Vec<String>> {
        let name = self.cluster_name(role);
        match self {
            Provider::Kind => Some(argv(&["kind", "delete", "cluster", "--name", &name])),
            Provider::K3d => Some(argv(&["k3d", "cluster", "delete", &name])),
            Provider::Contexts { .. } => None,
        }
    }

    /// argv that makes a locally built image available to the cluster's nodes (no registry).
    pub fn load_image_argv(&self, role: Role, image: &str) -> Option<Vec<String>> {
        let name = self.cluster_name(role);
        match self {
            Provider::Kind => Some(argv(&[
                "kind",
                "load",
                "docker-image",
                image,
                "--name",
                &name,
            ])),
            Provider::K3d => Some(argv(&["k3d", "image", "import", image, "-c", &name])),
            Provider::Contexts { .. } => None,
        }
    }

    /// argv that exports the cluster's logs into `dir` (on failure).
    pub fn export_logs_argv(&self, role: Role, dir: &str) -> Option<Vec<String>> {
        let name = self.cluster_name(role);
        match self {
            Provider::Kind => Some(argv(&[
                "kind",
                "export",
                "logs",
                &format!("{dir}/{name}"),
                "--name",
                &name,
            ])),
            // k3d has no log export: the server container's log holds k3s's and the kubelet's.
            Provider::K3d => Some(argv(&["docker", "logs", &format!("k3d-{name}-server-0")])),
            Provider::Contexts { .. } => None,
        }
    }
}

pub(crate) fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}
