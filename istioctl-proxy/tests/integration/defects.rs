//! Each deliberate defect (feature `test-defects`) visibly breaks what it names,
//! so the conformance suite's checks have something to catch.
use crate::support::*;
use istioctl_proxy::{Defect, FailurePolicy};
use proto::type_url;
use std::time::{Duration, Instant};

async fn with_defect(
    s: fake_istiod::Scenario,
    d: Defect,
) -> (fake_istiod::FakeIstiod, istioctl_proxy::RunningProxy) {
    let fake = fake(s).await;
    let mut c = plaintext_config(&fake);
    c.defects = vec![d];
    let p = proxy(c).await;
    (fake, p)
}

#[tokio::test]
async fn config_dump_first_replica_only() {
    let s = open_scenario("three-replicas.yaml");
    let last = s.replicas[2].name.clone();
    let id = s
        .proxies
        .iter()
        .find(|p| p.replica == last)
        .unwrap()
        .id
        .clone();
    let (fake, p) = with_defect(s, Defect::ConfigDumpFirstReplicaOnly).await;
    let resp = ask(p.local_addr(), type_url::CONFIG_DUMP, &[&id], None)
        .await
        .unwrap();
    assert!(resp.resources.is_empty());
    p.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn crash_on_missing_token() {
    let (fake, p) = with_defect(
        open_scenario("three-replicas.yaml"),
        Defect::CrashOnMissingToken,
    )
    .await;
    let err = ask(p.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    p.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn sequential_fail_fast() {
    let mut s = open_scenario("three-replicas.yaml");
    s.replicas[0].fault = Some(fake_istiod::Fault::Hang);
    let (fake, p) = with_defect(s, Defect::SequentialFailFast).await;
    let started = Instant::now();
    let err = ask(p.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the sample's 2 s timeout"
    );
    assert!(err.message().contains("not asked"), "{}", err.message());
    p.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn no_dedupe() {
    let (fake, p) = with_defect(open_scenario("fault-duplicate.yaml"), Defect::NoDedupe).await;
    let ids = node_ids(
        &ask(p.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap(),
    );
    let mut unique = sorted(ids.clone());
    unique.dedup();
    assert!(unique.len() < ids.len(), "{ids:?}");
    p.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn drop_last_replica_silently() {
    let s = open_scenario("three-replicas.yaml");
    let all = scenario_ids(&s);
    let (fake, p) = with_defect(s, Defect::DropLastReplicaSilently).await;
    let ids = node_ids(
        &ask(p.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap(),
    );
    assert!(ids.len() < all.len() && !ids.is_empty(), "{ids:?}");
    p.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn keep_replica_control_plane_id() {
    let s = open_scenario("three-replicas.yaml");
    let first = s.replicas[0].name.clone();
    let (fake, p) = with_defect(s, Defect::KeepReplicaControlPlaneId).await;
    let resp = ask(p.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    assert_eq!(control_plane(&resp).id, first);
    p.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn cap_4_mib() {
    let yaml = "description: big\nistiod:\n  version: 1.30.0\nauth:\n  debug_endpoint_auth: false\nreplicas:\n  - name: istiod-0\n  - name: istiod-1\nproxies: []\ngenerate:\n  - count: 20000\n    namespaces: 5\n    replicas: all\n";
    let s = fake_istiod::Scenario::parse(yaml, "big").unwrap();
    let (fake, p) = with_defect(s, Defect::Cap4MiB).await;
    let err = ask(p.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("message") || err.code() == tonic::Code::OutOfRange,
        "{err:?}"
    );
    p.shutdown().await;
    fake.shutdown().await;
    let _ = FailurePolicy::Fail;
}
