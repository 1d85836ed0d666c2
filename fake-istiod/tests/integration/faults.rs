//! Each fault as a gRPC client sees it, from the shipped fault scenarios and
//! set at runtime.

use crate::support::eventually;
use fake_istiod::probe::{Dial, ask, control_plane_id, decode_syncz, istioctl_request};
use fake_istiod::testing::{self, TestMesh};
use fake_istiod::{Fault, ReplicaInfo};
use proto::type_url;
use std::time::{Duration, Instant};
use tonic::Code;

const HEALTHY: &str = "istiod-healthy-7c9d8b6f5-aaaaa";
const FAULTY: &str = "istiod-faulty-7c9d8b6f5-bbbbb";

async fn start(file: &str) -> TestMesh {
    testing::start_shipped(file)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn replica(fake: &TestMesh, name: &str) -> ReplicaInfo {
    fake.replica(name).unwrap()
}

async fn syncz(
    r: &ReplicaInfo,
) -> Result<proto::envoy::envoy::service::discovery::v3::DiscoveryResponse, tonic::Status> {
    tokio::time::timeout(
        Duration::from_secs(5),
        ask(
            r.plaintext_addr,
            &Dial::default(),
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
        ),
    )
    .await
    .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("test timeout")))
}

#[tokio::test]
async fn down_means_nothing_listening_until_cleared() {
    let fake = start("fault-down.yaml").await;
    let r = replica(&fake, FAULTY);
    assert!(
        tokio::net::TcpStream::connect(r.plaintext_addr)
            .await
            .is_err()
    );
    assert!(tokio::net::TcpStream::connect(r.tls_addr).await.is_err());
    let err = syncz(&r).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(syncz(&replica(&fake, HEALTHY)).await.is_ok());
    fake.clear_fault(FAULTY).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { syncz(&r).await.is_ok() }).await);
    fake.shutdown().await;
}

#[tokio::test]
async fn reset_fails_the_call() {
    let fake = start("fault-reset.yaml").await;
    let err = syncz(&replica(&fake, FAULTY)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn hang_never_answers() {
    let fake = start("fault-hang.yaml").await;
    let r = replica(&fake, FAULTY);
    // The stream opens (TCP and HTTP/2 work) but no answer comes.
    let got = tokio::time::timeout(
        Duration::from_millis(300),
        ask(
            r.plaintext_addr,
            &Dial::default(),
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
        ),
    )
    .await;
    assert!(got.is_err(), "expected no answer, got {got:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn delay_answers_late_but_correctly() {
    let fake = start("fault-delay.yaml").await;
    let r = replica(&fake, FAULTY);
    fake.set_fault(FAULTY, Fault::Delay(Duration::from_millis(300)))
        .await
        .unwrap();
    let t = Instant::now();
    let resp = syncz(&r).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(control_plane_id(&resp), FAULTY);
    assert_eq!(resp.resources.len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn grpc_error_is_returned_as_is() {
    let fake = start("fault-grpc-error.yaml").await;
    let err = syncz(&replica(&fake, FAULTY)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "istiod is shutting down");
    fake.shutdown().await;
}

#[tokio::test]
async fn garbage_has_wrong_types_and_an_invalid_identifier() {
    let fake = start("fault-garbage.yaml").await;
    let resp = syncz(&replica(&fake, FAULTY)).await.unwrap();
    assert_eq!(control_plane_id(&resp), "INVALID");
    assert!(!resp.resources.is_empty());
    assert!(
        resp.resources
            .iter()
            .all(|r| r.type_url != type_url::CLIENT_CONFIG)
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn truncated_breaks_the_answer() {
    let fake = start("fault-truncated.yaml").await;
    let err = syncz(&replica(&fake, FAULTY)).await.unwrap_err();
    assert_ne!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(syncz(&replica(&fake, HEALTHY)).await.is_ok());
    fake.shutdown().await;
}

#[tokio::test]
async fn duplicate_claims_another_replicas_proxy_with_older_times() {
    let fake = start("fault-duplicate.yaml").await;
    let id = "productpage-v1-6b746f74dc-9stvs.bookinfo";
    let find = |resp: &proto::envoy::envoy::service::discovery::v3::DiscoveryResponse| {
        decode_syncz(resp)
            .unwrap()
            .into_iter()
            .find(|c| c.node.as_ref().unwrap().id == id)
            .map(|c| c.generic_xds_configs[0].last_updated.unwrap().seconds)
    };
    let owner = find(&syncz(&replica(&fake, HEALTHY)).await.unwrap()).unwrap();
    let dup = find(&syncz(&replica(&fake, FAULTY)).await.unwrap()).unwrap();
    assert!(dup < owner, "duplicate {dup} should be older than {owner}");
    fake.shutdown().await;
}

#[tokio::test]
async fn flap_alternates_up_and_down() {
    let fake = start("fault-flap.yaml").await;
    fake.set_fault(
        FAULTY,
        Fault::Flap {
            period: Duration::from_millis(150),
        },
    )
    .await
    .unwrap();
    let r = replica(&fake, FAULTY);
    let (mut up, mut down) = (0, 0);
    let start = Instant::now();
    while (up == 0 || down == 0) && start.elapsed() < Duration::from_secs(10) {
        match tokio::net::TcpStream::connect(r.plaintext_addr).await {
            Ok(_) => up += 1,
            Err(_) => down += 1,
        }
        tokio::task::yield_now().await;
    }
    assert!(up > 0 && down > 0, "up {up}, down {down}");
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_set_and_cleared_at_runtime() {
    let fake = start("fault-delay.yaml").await;
    let r = replica(&fake, HEALTHY);
    fake.set_fault(
        HEALTHY,
        Fault::GrpcError {
            code: 8,
            message: "slow down".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        fake.replica(HEALTHY).unwrap().fault.unwrap().name(),
        "grpc_error"
    );
    assert_eq!(syncz(&r).await.unwrap_err().code(), Code::ResourceExhausted);
    fake.clear_fault(HEALTHY).await.unwrap();
    assert!(syncz(&r).await.is_ok());
    assert!(fake.set_fault("istiod-nope", Fault::Down).await.is_err());
    fake.shutdown().await;
}

#[tokio::test]
async fn down_and_reset_cut_connections_kept_open() {
    let fake = start("fault-delay.yaml").await;
    let r = replica(&fake, HEALTHY);
    let dial = Dial::default();
    let ch = fake_istiod::probe::channel(r.plaintext_addr, &dial)
        .await
        .unwrap();
    let req = || vec![istioctl_request(type_url::SYNCZ, &[], "istio-system")];
    assert!(
        fake_istiod::probe::ask_on(ch.clone(), &dial, req())
            .await
            .is_ok()
    );
    for fault in [Fault::Down, Fault::Reset] {
        fake.set_fault(HEALTHY, fault.clone()).await.unwrap();
        // The connection made before the fault is cut: the call on it fails
        // (the channel may reconnect, which the fault refuses as well).
        let cut = eventually(Duration::from_secs(5), || async {
            fake_istiod::probe::ask_on(ch.clone(), &dial, req())
                .await
                .is_err()
        })
        .await;
        assert!(cut, "{fault:?} left the old connection working");
        fake.clear_fault(HEALTHY).await.unwrap();
        let back = eventually(Duration::from_secs(5), || async {
            fake_istiod::probe::ask_on(ch.clone(), &dial, req())
                .await
                .is_ok()
        })
        .await;
        assert!(back, "no recovery after {fault:?}");
    }
    fake.shutdown().await;
}
