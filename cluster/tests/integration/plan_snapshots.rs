//! The plan over providers x Istio versions: one snapshot each pins every
//! version switch (profile, webhook URLs, env, values, node image) and every
//! command, file, manifest and bound. Review a changed snapshot as code.
use cluster::{IstioVersion, Plan, PlanOptions, Provider};

const VERSIONS: [&str; 4] = ["1.12.9", "1.14.6", "1.22.8", "1.30.3"];

fn providers() -> Vec<Provider> {
    vec![
        Provider::Kind,
        Provider::K3d,
        Provider::Contexts {
            external: "ctx-external".into(),
            remote: "ctx-remote".into(),
        },
    ]
}

/// The snapshots keep the place and the names they had when this file was a test binary of its
/// own (`cluster/tests/snapshots/plan_snapshots__plan-*.snap`): insta would otherwise name them
/// after this module's path inside the `integration` binary.
#[test]
fn plan_per_provider_and_istio_version() {
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
    }, {
        for p in providers() {
            for v in VERSIONS {
                let istio: IstioVersion = v.parse().unwrap();
                let plan = Plan::build(&PlanOptions::new(p.clone(), istio)).unwrap();
                insta::assert_snapshot!(
                    format!("plan_snapshots__plan-{}-{v}", p.name()),
                    plan.to_string()
                );
            }
        }
    });
}

#[test]
fn the_blogs_topology_in_the_1_12_plan() {
    let plan = Plan::build(&PlanOptions::new(Provider::Kind, "1.12.9".parse().unwrap())).unwrap();
    let text = plan.to_string();
    for needle in [
        "kind create cluster --name external",
        "kind create cluster --name remote",
        "istioctl install -y -f target/cluster/external-istiod.yaml --context=kind-external",
        "namespace: external-istiod",
        "deploy istioctl-proxy next to istiod",
        "localhost:9090 -> a ready pod of service external-istiod/istioctl-proxy, port 9090",
        "ISTIOCTL_XDS_ADDRESS=localhost:9090 ISTIOCTL_ISTIONAMESPACE=external-istiod ISTIOCTL_PREFER_EXPERIMENTAL=true ISTIOCTL_INSECURE=true target/cluster/istio-1.12.9/bin/istioctl proxy-status --context=kind-remote",
    ] {
        assert!(text.contains(needle), "the 1.12.9 plan lacks {needle:?}");
    }
}

#[test]
fn contexts_create_nothing_and_delete_nothing() {
    let p = Provider::Contexts {
        external: "a".into(),
        remote: "b".into(),
    };
    let plan = Plan::build(&PlanOptions::new(p, "1.22.8".parse().unwrap())).unwrap();
    let text = plan.to_string();
    assert!(!text.contains("kind ") && !text.contains("k3d "), "{text}");
    assert!(plan.down.is_empty() && plan.on_failure.is_empty());
    assert!(
        !text.contains("--server="),
        "existing contexts: the kubeconfig's server is used"
    );
}
