//! The phases that give istiod proxies to own: the guide's sample application
//! and gateways in the remote cluster, then the split across istiod replicas
//! measured (clusters.md: sharding is not guaranteed).
use super::builder::{Builder, CLUSTERS, GUIDE, secs};
use super::step::{Action, ApplySource, Until};
use crate::manifests::{self, CONTROL_PLANE_NS, ManifestError};
use crate::provider::{Role, argv};

/// The guide's "Deploy a sample application": helloworld and sleep, with sidecars.
pub(super) fn sample_application(b: &mut Builder<'_>) -> Result<(), ManifestError> {
    let o = b.o;
    let v = o.istio;
    b.phase("Deploy a sample application", GUIDE);
    b.apply(
        "namespace sample, labelled istio-injection=enabled",
        Role::Remote,
        manifests::sample_namespace()?,
    );
    let samples = format!("{}/istio-{v}/samples", o.work_dir);
    for (file, selector) in [
        ("helloworld/helloworld.yaml", Some("service=helloworld")),
        ("helloworld/helloworld.yaml", Some("version=v1")),
        // 1.30.3:samples/sleep/sleep.yaml still ships beside samples/curl/.
        ("sleep/sleep.yaml", None),
    ] {
        let label = selector.map(|s| format!(" -l {s}")).unwrap_or_default();
        b.push(
            format!("apply samples/{file}{label}"),
            Some(Role::Remote),
            Action::Apply {
                cluster: Role::Remote,
                namespace: Some("sample".into()),
                source: ApplySource::File {
                    path: format!("{samples}/{file}"),
                    label_selector: selector.map(String::from),
                },
                timeout: secs(60),
            },
        );
    }
    b.wait(
        "helloworld and sleep running with sidecars (2/2)",
        Role::Remote,
        Until::PodsReady {
            namespace: "sample".into(),
            selector: "app in (helloworld,sleep)".into(),
            containers: 2,
        },
        300,
    );
    Ok(())
}

/// The guide's "Enable gateways": an ingress gateway in the remote cluster.
pub(super) fn enable_gateways(b: &mut Builder<'_>) -> Result<(), ManifestError> {
    b.phase("Enable gateways", GUIDE);
    let ig = manifests::remote_ingress_gateway()?;
    let ig_file = b.file(&ig.file);
    b.write(ig);
    b.run(
        "istioctl install (ingress gateway in external-istiod)",
        Some(Role::Remote),
        argv(&[
            &b.istioctl(),
            "install",
            "-y",
            "-f",
            &ig_file,
            &b.ctx(Role::Remote),
        ]),
        600,
    );
    b.wait(
        "istio-ingressgateway available",
        Role::Remote,
        Until::DeploymentAvailable {
            namespace: CONTROL_PLANE_NS.into(),
            name: "istio-ingressgateway".into(),
            replicas: 1,
        },
        300,
    );
    Ok(())
}

/// Measure the split across istiod replicas; re-roll the workloads until two replicas own proxies.
pub(super) fn measure_sharding(b: &mut Builder<'_>) {
    let o = b.o;
    b.phase("Measure the split across istiod replicas", CLUSTERS);
    b.push(
        "ask each istiod pod directly: pod port-forward to 15014, GET /debug/syncz (from localhost: no token needed)",
        Some(Role::External),
        Action::MeasureSharding { min_owners: 2, max_rerolls: o.max_rerolls, per_roll_timeout: secs(120) },
    );
}
