//! The suite has teeth: deliberately broken variants of the reference proxy
//! (test-only `test-defects` feature) each fail exactly the checks that target
//! their defect, and pass the rest.

mod run_support;
use run_support as support;

use harness::runner::proxy::Hooks;
use istioctl_proxy::Defect;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Each defect with the checks that must catch it. Checks beyond the one that
/// targets the defect are listed where the defect necessarily shows there too
/// (e.g. a dropped replica also changes the rendered table).
fn expectations() -> Vec<(Defect, &'static [&'static str])> {
    vec![
        (Defect::ConfigDumpFirstReplicaOnly, &["config-dump-owner"]),
        (Defect::CrashOnMissingToken, &["missing-token"]),
        (
            Defect::SequentialFailFast,
            &[
                "replica-slow",
                "replica-down",
                "replica-hang",
                "replica-error",
                "replica-garbage",
                "replica-churn",
            ],
        ),
        (Defect::NoDedupe, &["duplicate-proxy"]),
        (
            Defect::DropLastReplicaSilently,
            &[
                "syncz-union",
                "table-snapshot",
                "concurrent-clients",
                "replica-churn",
                "large-mesh",
            ],
        ),
        (
            Defect::KeepReplicaControlPlaneId,
            &["external-identity", "table-snapshot", "empty-mesh"],
        ),
        (Defect::Cap4MiB, &["large-mesh"]),
    ]
}

async fn failures_with(defect: Defect) -> (BTreeSet<String>, String) {
    let config = support::config(Default::default());
    let hooks = Hooks {
        customize_bundled: Some(Arc::new(move |c: &mut istioctl_proxy::ProxyConfig| {
            c.defects = vec![defect];
        })),
        ..Hooks::default()
    };
    match harness::runner::run(&config, &hooks, |_| {}).await {
        Ok(report) => (support::failed(&report), support::explain(&report)),
        Err(e) => panic!("{defect:?}: the run could not start: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_variant_fails_exactly_its_checks() {
    let mut wrong = Vec::new();
    for (defect, expected) in expectations() {
        let (got, why) = failures_with(defect).await;
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        if got != expected {
            wrong.push(format!(
                "{defect:?}\n  expected to fail: {expected:?}\n  failed:           {got:?}\n  details:\n{why}\n"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
