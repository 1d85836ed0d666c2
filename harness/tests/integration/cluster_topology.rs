//! The `cluster` topology without a cluster: fake istiod replicas stand in for
//! the istiod pods (reachable as they are, where a cluster needs
//! port-forwards), the fake's issuer stands in for the TokenRequest API, and
//! the reference proxy runs beside them as the deployed one would. What this
//! proves: the runner runs every check once on the live mesh, skips exactly
//! those that need what a real cluster cannot do (with the reason), verifies
//! the replicas as `istiod.<ns>.svc` with the cluster's root CA, and the
//! reference proxy passes the rest. (The kube side, the port-forwards and the
//! TokenRequests, is tested against a scripted API server in `cluster`.)

use crate::support::run;

use cluster::live::{Live, LiveReplica};
use fake_istiod::{FakeIstiod, StartOptions, TokenSpec};
use futures::future::BoxFuture;
use harness::checks::Outcome;
use harness::config::RunArgs;
use harness::topology::Hooks;
use harness::topology::TopologyKind;
use harness::topology::cluster::{ClusterControlPlane, PodRestarter, Successor, TokenSource};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The fake's token issuer, as the remote cluster's TokenRequest API.
struct FakeIssuer(Arc<FakeIstiod>);

impl TokenSource for FakeIssuer {
    fn mint<'a>(
        &'a self,
        namespace: &'a str,
        sa: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { Ok(self.0.mint_token(&TokenSpec::new(namespace, sa))) })
    }
}

/// A restart as the fakes can do it: down, then serving again (same name and
/// address; the real one, a new pod, is tested against a scripted API server
/// in `cluster/src/live.rs`).
struct FakeRestarter(Arc<FakeIstiod>);

impl PodRestarter for FakeRestarter {
    fn restart<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, Result<Successor, String>> {
        Box::pin(async move {
            let r = self.0.replica(pod).ok_or("no such replica")?;
            let e = |e: fake_istiod::Error| e.to_string();
            self.0
                .set_fault(pod, fake_istiod::Fault::Down)
                .await
                .map_err(e)?;
            self.0.clear_fault(pod).await.map_err(e)?;
            Ok((
                LiveReplica {
                    pod: r.name,
                    image: format!("docker.io/istio/pilot:{}", r.version),
                    tls_addr: r.tls_addr,
                },
                None,
            ))
        })
    }
}

/// Every check that needs a scripted mesh, fake faults or forged tokens.
const SKIPPED_ON_A_CLUSTER: &[&str] = &[
    "table-snapshot",
    "empty-mesh",
    "replica-down",
    "replica-hang",
    "replica-slow",
    "replica-error",
    "replica-garbage",
    "replica-poison",
    "replica-poison-config-dump",
    "duplicate-proxy",
    "large-mesh",
    "replica-churn",
    "bad-token",
    "slow-readers",
    "replica-partition",
    "replica-killed",
    "dns-discovery",
    "real-istioctl",
];

/// Runs the whole catalog on the cluster topology, with the fake replicas of
/// three-replicas.yaml as the istiod pods and the reference proxy (with these
/// defects) as the deployed one. Returns the report and the sessions run.
async fn run_on_fake_cluster(
    defects: Vec<istioctl_proxy::Defect>,
) -> (harness::report::RunReport, Vec<String>) {
    let text = include_str!("../../../scenarios/three-replicas.yaml");
    let scenario = fake_istiod::Scenario::parse(text, "scenarios/three-replicas.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    let namespace = scenario.istiod.namespace.clone();
    let fake = Arc::new(
        FakeIstiod::start(scenario, StartOptions::ephemeral())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );

    // The "deployed" proxy: the reference one, TLS, passthrough identity.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let (crt, key, issuer) = (
        dir.path().join("p.crt"),
        dir.path().join("p.key"),
        dir.path().join("issuer.pem"),
    );
    for (path, text) in [
        (&crt, cert.cert.pem()),
        (&key, cert.signing_key.serialize_pem()),
        (&issuer, fake.token_authority().public_pem().to_string()),
    ] {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let mut pc =
        harness::topology::local::bundled_config(&fake, &namespace, &crt, &key, &issuer, false);
    pc.defects = defects;
    let proxy = istioctl_proxy::start(pc)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let proxy_addr = proxy.local_addr();

    let mut hooks = Hooks::default();
    let (f, ns) = (fake.clone(), namespace.clone());
    hooks.connect_cluster = Some(Arc::new(move || {
        let (f, ns) = (f.clone(), ns.clone());
        Box::pin(async move {
            let replicas = f
                .replicas()
                .into_iter()
                .map(|r| LiveReplica {
                    pod: r.name,
                    image: format!("docker.io/istio/pilot:{}", r.version),
                    tls_addr: r.tls_addr,
                })
                .collect();
            let live = Live::reachable(replicas, f.ca_pem(), Some(proxy_addr));
            ClusterControlPlane::from_live(live, &ns, &FakeIssuer(f.clone()))
                .await
                .map(|cp| cp.with_restarter(Box::new(FakeRestarter(f.clone()))))
        })
    }));
    let config = run::config(RunArgs {
        topology: Some(TopologyKind::Cluster),
        ..Default::default()
    });
    let mut sessions = Vec::new();
    let report = harness::runner::run(&config, &hooks, |p| {
        if let harness::runner::Progress::Scenario { name, .. } = p {
            sessions.push(name.to_string());
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the run could not start: {e}"));
    proxy.shutdown().await;
    drop(hooks);
    if let Ok(fake) = Arc::try_unwrap(fake) {
        fake.shutdown().await;
    }
    (report, sessions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_proxy_passes_every_check_a_cluster_can_run() {
    let _alone = run::alone().await;
    let (report, sessions) = run_on_fake_cluster(vec![]).await;
    assert_eq!(sessions, ["cluster"], "one session: the live mesh");
    assert_eq!(report.mode, "cluster service");
    let skipped: BTreeSet<&str> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skip(why) => {
                assert!(
                    why.contains("the cluster topology"),
                    "{}: skipped for another reason: {why}",
                    r.id
                );
                Some(r.id.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        SKIPPED_ON_A_CLUSTER
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        "\n{}",
        run::explain(&report)
    );
    assert!(
        run::failed(&report).is_empty(),
        "failures on the cluster topology:\n{}",
        run::explain(&report)
    );
    let ran = report.results.len() - skipped.len();
    assert!(ran >= 15, "only {ran} checks ran");
}

/// The ground truth of the cluster topology catches what it should: a proxy
/// that drops a replica's proxies fails the union checks there too, and one
/// that keeps a replica's ControlPlane ID fails external-identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_proxies_fail_on_the_cluster_topology_too() {
    let _alone = run::alone().await;
    use istioctl_proxy::Defect;
    for (defect, expected) in [
        (
            Defect::DropLastReplicaSilently,
            &[
                "syncz-union",
                "istioctl-ack",
                "concurrent-clients",
                "replica-restart",
            ][..],
        ),
        (
            Defect::KeepReplicaControlPlaneId,
            &["external-identity"][..],
        ),
    ] {
        let (report, _) = run_on_fake_cluster(vec![defect]).await;
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            run::failed(&report),
            expected,
            "{defect:?}:\n{}",
            run::explain(&report)
        );
    }
}
