//! A replica down, hanging, slow, erroring or sending garbage, under both
//! policies: the answer comes within the deadline and is never silently partial.
use crate::support::*;
use fake_istiod::Fault;
use istioctl_proxy::FailurePolicy;
use proto::type_url;
use std::time::{Duration, Instant};

const HEALTHY_PROXY: &str = "productpage-v1-6b746f74dc-9stvs.bookinfo";
const FAULTY: &str = "istiod-faulty-7c9d8b6f5-bbbbb";

/// Two replicas, the second with `fault`; proxy deadlines: 1 s per replica.
async fn run(
    fault: Fault,
    policy: FailurePolicy,
) -> (
    Result<proto::envoy::envoy::service::discovery::v3::DiscoveryResponse, tonic::Status>,
    Duration,
) {
    let mut s = open_scenario("fault-hang.yaml");
    s.replicas[1].fault = None;
    let fake = fake(s).await;
    fake.set_fault(FAULTY, fault).await.unwrap();
    let mut config = plaintext_config(&fake);
    config.replica_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(3);
    config.on_replica_failure = policy;
    let proxy = proxy(config).await;
    let started = Instant::now();
    let result = ask(proxy.local_addr(), type_url::SYNCZ, &[], None).await;
    let took = started.elapsed();
    proxy.shutdown().await;
    fake.shutdown().await;
    (result, took)
}

fn assert_fails_naming_the_replica(
    result: Result<proto::envoy::envoy::service::discovery::v3::DiscoveryResponse, tonic::Status>,
    why: &str,
) {
    let err = result.expect_err("policy fail answers an error");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains(FAULTY),
        "names the replica: {}",
        err.message()
    );
    assert!(
        err.message().contains(why),
        "says why ({why}): {}",
        err.message()
    );
    assert!(
        err.message().starts_with("1 of 2 istiod replicas failed"),
        "{}",
        err.message()
    );
}

fn assert_annotated(
    result: Result<proto::envoy::envoy::service::discovery::v3::DiscoveryResponse, tonic::Status>,
    why: &str,
) {
    let resp = result.expect("policy annotate answers");
    let ids = node_ids(&resp);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], HEALTHY_PROXY);
    assert!(
        ids[1].starts_with(&format!("{FAULTY} (unreachable: ")),
        "{ids:?}"
    );
    assert!(ids[1].contains(why), "{ids:?}");
    assert_eq!(control_plane(&resp).id, "<external>");
}

#[tokio::test]
async fn down_fail() {
    let (r, took) = run(Fault::Down, FailurePolicy::Fail).await;
    assert_fails_naming_the_replica(r, "connection failed");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn down_annotate() {
    let (r, _) = run(Fault::Down, FailurePolicy::Annotate).await;
    assert_annotated(r, "connection failed");
}

#[tokio::test]
async fn hang_fail_within_the_replica_deadline() {
    let (r, took) = run(Fault::Hang, FailurePolicy::Fail).await;
    assert_fails_naming_the_replica(r, "deadline exceeded after 1s");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn hang_annotate() {
    let (r, took) = run(Fault::Hang, FailurePolicy::Annotate).await;
    assert_annotated(r, "deadline exceeded");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn slow_but_within_deadline_is_complete() {
    for policy in [FailurePolicy::Fail, FailurePolicy::Annotate] {
        let (r, _) = run(Fault::Delay(Duration::from_millis(300)), policy).await;
        let resp = r.expect("a slow replica still answers");
        assert_eq!(
            sorted(node_ids(&resp)),
            [HEALTHY_PROXY, "reviews-v1-545db77b95-hkh9p.bookinfo"]
        );
    }
}

#[tokio::test]
async fn slower_than_deadline_fails_or_is_annotated() {
    let (r, _) = run(Fault::Delay(Duration::from_secs(5)), FailurePolicy::Fail).await;
    assert_fails_naming_the_replica(r, "deadline exceeded");
    let (r, _) = run(
        Fault::Delay(Duration::from_secs(5)),
        FailurePolicy::Annotate,
    )
    .await;
    assert_annotated(r, "deadline exceeded");
}

#[tokio::test]
async fn grpc_error_both_policies() {
    let fault = || Fault::GrpcError {
        code: 8,
        message: "too many requests".into(),
    };
    let (r, _) = run(fault(), FailurePolicy::Fail).await;
    assert_fails_naming_the_replica(r, "ResourceExhausted: too many requests");
    let (r, _) = run(fault(), FailurePolicy::Annotate).await;
    assert_annotated(r, "too many requests");
}

#[tokio::test]
async fn garbage_both_policies() {
    let (r, _) = run(Fault::Garbage, FailurePolicy::Fail).await;
    assert_fails_naming_the_replica(r, "invalid answer");
    let (r, _) = run(Fault::Garbage, FailurePolicy::Annotate).await;
    assert_annotated(r, "invalid answer");
}

#[tokio::test]
async fn reset_and_truncated_are_failures_not_partial_answers() {
    for fault in [Fault::Reset, Fault::Truncated] {
        let (r, _) = run(fault.clone(), FailurePolicy::Fail).await;
        let err = r.expect_err("never a silently partial answer");
        assert!(
            err.message().contains(FAULTY),
            "{fault:?}: {}",
            err.message()
        );
        let (r, _) = run(fault.clone(), FailurePolicy::Annotate).await;
        let ids = node_ids(&r.expect("annotated"));
        assert!(
            ids.iter().any(|id| id.starts_with(FAULTY)),
            "{fault:?}: {ids:?}"
        );
    }
}

#[tokio::test]
async fn request_deadline_bounds_everything() {
    let mut s = open_scenario("fault-hang.yaml");
    s.replicas[1].fault = Some(Fault::Hang);
    let fake = fake(s).await;
    let mut config = plaintext_config(&fake);
    config.replica_timeout = Duration::from_secs(10);
    config.request_timeout = Duration::from_millis(800);
    let proxy = proxy(config).await;
    let started = Instant::now();
    let err = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        err.message().contains("request deadline exceeded"),
        "{}",
        err.message()
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn recovered_replica_is_used_again_on_the_same_channel() {
    let mut s = open_scenario("fault-hang.yaml");
    s.replicas[1].fault = Some(Fault::Down);
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    assert!(
        ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .is_err()
    );
    fake.clear_fault(FAULTY).await.unwrap();
    // tonic reconnects the channel; bounded retries, no sleeps as synchronisation.
    let mut last = None;
    for _ in 0..50 {
        match ask(proxy.local_addr(), type_url::SYNCZ, &[], None).await {
            Ok(resp) => {
                last = Some(resp);
                break;
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
    let resp = last.expect("recovers after the replica comes back");
    assert_eq!(sorted(node_ids(&resp)), want);
    assert_eq!(
        proxy.upstream_channels(),
        2,
        "one channel per replica, reused"
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}
