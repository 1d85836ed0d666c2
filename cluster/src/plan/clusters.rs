//! The phases on the host and the provider: create the clusters, MetalLB for
//! their LoadBalancer Services (clusters.md), delete them, export their logs.
use super::builder::{Builder, CLUSTERS, secs};
use super::step::{Action, ApplySource, Lookup, Until};
use crate::istio::Switches;
use crate::manifests::{self, ManifestError};
use crate::provider::{DOCKER_NETWORK, Provider, Role, argv};

/// Create the clusters: kind's config files, k3d's docker network, both clusters in parallel.
pub(super) fn create_clusters(b: &mut Builder<'_>, sw: &Switches) -> Result<(), ManifestError> {
    let o = b.o;
    let p = &o.provider;
    b.phase("Create the clusters", CLUSTERS);
    for role in Role::BOTH {
        if *p == Provider::Kind {
            b.write(manifests::kind_config(role, sw)?);
        }
    }
    if *p == Provider::K3d {
        // kind makes its network itself; k3d joins an existing one.
        b.run(
            format!("docker network {DOCKER_NETWORK} (shared by both clusters)"),
            None,
            argv(&["sh", "-c", &format!("docker network inspect {DOCKER_NETWORK} >/dev/null 2>&1 || docker network create {DOCKER_NETWORK}")]),
            30,
        );
    }
    for role in Role::BOTH {
        let cfg = b.file(&format!("kind-{role}.yaml"));
        if let Some(a) = p.create_argv(role, &sw.node, &cfg) {
            b.run(
                format!("create the {role} cluster ({})", p.name()),
                Some(role),
                a,
                300,
            );
            if let Some(last) = b.steps.last_mut() {
                last.parallel = Some("create-clusters");
            }
        }
    }
    Ok(())
}

/// LoadBalancer support (MetalLB): one address pool per cluster at the end of the docker network.
pub(super) fn load_balancer_support(b: &mut Builder<'_>) -> Result<(), ManifestError> {
    b.phase("LoadBalancer support (MetalLB)", CLUSTERS);
    b.push(
        "find the docker network's range and split one MetalLB pool per cluster at its end",
        None,
        Action::Resolve {
            vars: vec!["METALLB_POOL_EXTERNAL".into(), "METALLB_POOL_REMOTE".into()],
            lookup: Lookup::MetallbPools {
                network: DOCKER_NETWORK.into(),
            },
            cluster: None,
            timeout: secs(10),
        },
    );
    for role in Role::BOTH {
        b.push(
            "install MetalLB (metallb-native.yaml)",
            Some(role),
            Action::Apply {
                cluster: role,
                namespace: None,
                source: ApplySource::Url(manifests::METALLB_URL.into()),
                timeout: secs(120),
            },
        );
        b.wait(
            "MetalLB controller available (its webhook validates the pool)",
            role,
            Until::DeploymentAvailable {
                namespace: "metallb-system".into(),
                name: "controller".into(),
                replicas: 1,
            },
            180,
        );
        b.apply("MetalLB address pool", role, manifests::metallb_pool(role)?);
    }
    Ok(())
}

/// Delete the clusters (`down`).
pub(super) fn delete_clusters(b: &mut Builder<'_>) {
    let o = b.o;
    let p = &o.provider;
    b.phase("Delete the clusters", CLUSTERS);
    for role in Role::BOTH {
        if let Some(a) = p.delete_argv(role) {
            b.run(format!("delete the {role} cluster"), Some(role), a, 180);
        }
    }
}

/// On failure: export the clusters' logs.
pub(super) fn export_logs(b: &mut Builder<'_>) {
    let o = b.o;
    let p = &o.provider;
    b.phase("On failure: export the clusters' logs", CLUSTERS);
    for role in Role::BOTH {
        let dir = b.file("logs");
        if let Some(a) = p.export_logs_argv(role, &dir) {
            let to = matches!(p, Provider::K3d).then(|| format!("{dir}/{role}.log"));
            b.push(
                format!("export the {role} cluster's logs"),
                Some(role),
                Action::Run {
                    argv: a,
                    env: vec![],
                    stdout_to: to,
                    timeout: secs(120),
                },
            );
        }
    }
}
