//! config_dump through the proxy on istiod ≤1.19, whose replicas send NO
//! answer for a proxy they do not have (`1.19.0:pilot/pkg/xds/statusgen.go`,
//! `xdsgen.go` `pushXds`): the owner, learned from syncz, answers at once;
//! an unknown proxy gets an empty answer after a short bound, not istioctl's 30 s.

use crate::support::*;

use proto::type_url;
use std::time::{Duration, Instant};

/// Far below the proxy's per-replica timeout (3 s here) and request deadline (6 s).
const OWNER_PROMPT: Duration = Duration::from_millis(1500);
/// The silent-replica bound (1 s) plus a syncz, with room for a loaded machine.
const UNKNOWN_PROMPT: Duration = Duration::from_millis(2900);

#[tokio::test]
async fn owner_answers_at_once_and_unknown_is_empty_soon() {
    let fake = fake(open_scenario("three-replicas-1-19.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    // Owned by the last replica: two silent replicas before it; a fresh proxy
    // has no syncz to remember the owner from, it must ask.
    for id in [
        "istio-ingressgateway-5c4f8d9b6-x2x7q.istio-system",
        "productpage-v1-6b746f74dc-9stvs.bookinfo",
    ] {
        let t0 = Instant::now();
        let resp = ask(proxy.local_addr(), type_url::CONFIG_DUMP, &[id], None)
            .await
            .unwrap();
        let took = t0.elapsed();
        assert!(!resp.resources.is_empty(), "{id}: empty dump");
        assert!(took < OWNER_PROMPT, "{id}: took {took:?}");
    }
    let t0 = Instant::now();
    let resp = ask(
        proxy.local_addr(),
        type_url::CONFIG_DUMP,
        &["no-such-pod-5f7c9.nowhere"],
        None,
    )
    .await
    .unwrap();
    let took = t0.elapsed();
    assert!(resp.resources.is_empty());
    assert!(took < UNKNOWN_PROMPT, "unknown proxy took {took:?}");
    proxy.shutdown().await;
    fake.shutdown().await;
}
