//! Many clients at once, and merged answers far above gRPC's 4 MiB default.
use crate::support::*;
use fake_istiod::Scenario;
use prost::Message;
use proto::type_url;

fn generated(replicas: usize, proxies: usize) -> Scenario {
    let names: String = (0..replicas)
        .map(|i| format!("  - name: istiod-{i}\n"))
        .collect();
    let yaml = format!(
        "description: generated\nistiod:\n  version: 1.30.0\nauth:\n  debug_endpoint_auth: false\nreplicas:\n{names}proxies: []\ngenerate:\n  - count: {proxies}\n    namespaces: 20\n    replicas: all\n"
    );
    Scenario::parse(&yaml, "generated").expect("generated scenario")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_clients_all_get_the_full_answer() {
    let s = open_scenario("three-replicas.yaml");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let addr = proxy.local_addr();
    let clients: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { ask(addr, type_url::SYNCZ, &[], None).await }))
        .collect();
    for c in clients {
        let resp = c.await.unwrap().expect("every client answered");
        assert_eq!(sorted(node_ids(&resp)), want);
    }
    assert_eq!(
        proxy.upstream_channels(),
        3,
        "one channel per replica, shared by all clients"
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_answer_over_50_mib() {
    let s = generated(5, 110_000);
    let fake = fake(s).await;
    let mut config = plaintext_config(&fake);
    config.replica_timeout = std::time::Duration::from_secs(60);
    config.request_timeout = std::time::Duration::from_secs(90);
    let proxy = proxy(config).await;
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .expect("a big answer gets through");
    let size = resp.encoded_len();
    assert!(
        size > 50 * 1024 * 1024,
        "merged answer is only {size} bytes"
    );
    assert_eq!(resp.resources.len(), 110_000);
    proxy.shutdown().await;
    fake.shutdown().await;
}
