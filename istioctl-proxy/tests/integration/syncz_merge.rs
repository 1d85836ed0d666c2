//! syncz through the proxy: every replica's proxies, once each, under `<external>`.
use crate::support::*;
use futures::StreamExt;
use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use proto::type_url;

#[tokio::test]
async fn three_replicas_all_proxies_external_identity() {
    logs();
    let s = open_scenario("three-replicas.yaml");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    assert_eq!(resp.type_url, type_url::SYNCZ);
    assert!(!resp.nonce.is_empty() && !resp.version_info.is_empty());
    let cp = control_plane(&resp);
    assert_eq!(
        (cp.id.as_str(), cp.component.as_str()),
        ("<external>", "istiod")
    );
    assert_eq!(cp.info.version, "1.30.0");
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn client_configs_pass_through_unchanged_except_fake_times() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let merged = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    for r in fake.replicas() {
        let direct = ask_replica(r.plaintext_addr, type_url::SYNCZ, &[]).await;
        let merged: Vec<_> = merged.resources.iter().map(without_times).collect();
        for any in &direct.resources {
            assert!(
                merged.contains(&without_times(any)),
                "{}'s ClientConfig changed or missing",
                r.name
            );
        }
    }
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn many_requests_on_one_stream_each_answered_once_with_its_type() {
    let fake = fake(scenario("three-replicas.yaml")).await;
    let (config, _dir) = own_token_config(&fake);
    let proxy = proxy(config).await;
    let mut client = AggregatedDiscoveryServiceClient::new(channel(proxy.local_addr()).await)
        .max_decoding_message_size(usize::MAX);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut inbound = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let order = [
        type_url::SYNCZ,
        type_url::CONNECTIONS,
        type_url::SYNCZ,
        type_url::DEBUG,
    ];
    let mut nonces = Vec::new();
    for t in order {
        let names: &[&str] = if t == type_url::DEBUG { &["list"] } else { &[] };
        tx.send(istioctl_request(t, names)).await.unwrap();
        let resp = tokio::time::timeout(PATIENCE, inbound.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(resp.type_url, t);
        assert_eq!(control_plane(&resp).id, "<external>");
        nonces.push(resp.nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), order.len(), "a fresh nonce per answer");
    drop(tx);
    let end = tokio::time::timeout(PATIENCE, inbound.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "no extra answers: {end:?}");
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn duplicates_appear_once_newest_copy_wins() {
    let s = open_scenario("fault-duplicate.yaml");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    // The kept copy is the owner's: newer than the duplicate's.
    let id = "productpage-v1-6b746f74dc-9stvs.bookinfo";
    let stale = fake.replica("istiod-faulty-7c9d8b6f5-bbbbb").unwrap();
    let stale = ask_replica(stale.plaintext_addr, type_url::SYNCZ, &[]).await;
    let stale = client_config(&stale, id).expect("the faulty replica claims it too");
    let kept = client_config(&resp, id).unwrap();
    let newest = |cc: &proto::envoy::envoy::service::status::v3::ClientConfig| {
        cc.generic_xds_configs
            .iter()
            .filter_map(|g| g.last_updated.map(|t| t.seconds))
            .max()
    };
    assert!(
        newest(&kept) > newest(&stale),
        "kept {:?} vs stale {:?}",
        newest(&kept),
        newest(&stale)
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn istiod_1_12_and_1_30_behind_one_proxy() {
    let mut s = open_scenario("mixed-versions.yaml");
    s.replicas[0].version = Some("1.12.1".parse().unwrap());
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    // Documented rule: the lowest version is reported.
    assert_eq!(control_plane(&resp).info.version, "1.12.1");
    let conns = ask(proxy.local_addr(), type_url::CONNECTIONS, &[], None)
        .await
        .unwrap();
    assert_eq!(control_plane(&conns).id, "<external>");
    assert_eq!(control_plane(&conns).info.version, "1.12.1");
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn empty_mesh_gives_a_valid_answer() {
    let fake = fake(open_scenario("empty-mesh.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    assert!(resp.resources.is_empty());
    assert_eq!(control_plane(&resp).id, "<external>");
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn debug_fans_out_to_every_replica() {
    // istiod's DebugGen needs an authenticated caller: TLS + the proxy's token.
    let fake = fake(scenario("three-replicas.yaml")).await;
    let (config, _dir) = own_token_config(&fake);
    let proxy = proxy(config).await;
    let resp = ask(proxy.local_addr(), type_url::DEBUG, &["syncz"], None)
        .await
        .unwrap();
    assert_eq!(resp.type_url, type_url::DEBUG);
    assert_eq!(resp.resources.len(), 3, "one debug answer per replica");
    let bodies: String = resp
        .resources
        .iter()
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        .collect();
    for r in fake.replicas() {
        assert!(bodies.contains(&r.name), "{} missing", r.name);
    }
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn unsupported_type_and_delta_are_unimplemented() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let err = ask(proxy.local_addr(), type_url::CLUSTER, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains(type_url::CLUSTER),
        "{}",
        err.message()
    );
    let mut client = AggregatedDiscoveryServiceClient::new(channel(proxy.local_addr()).await);
    let err = client
        .delta_aggregated_resources(futures::stream::pending())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("Delta"), "{}", err.message());
    // Still serving.
    assert!(
        ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .is_ok()
    );
    let _ = futures::stream::empty::<()>().next().await;
    proxy.shutdown().await;
    fake.shutdown().await;
}
