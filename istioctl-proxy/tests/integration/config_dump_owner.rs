//! config_dump for `pod.ns` returns the owning replica's answer, whichever it is.
use crate::support::*;
use proto::type_url;

/// The last replica's first proxy.
fn owned_by_last(s: &fake_istiod::Scenario) -> (String, String) {
    let last = s.replicas.last().unwrap().name.clone();
    let p = s.proxies.iter().find(|p| p.replica == last).unwrap();
    (last, p.id.clone())
}

#[tokio::test]
async fn owner_is_replica_3_of_3_without_prior_syncz() {
    let s = open_scenario("three-replicas.yaml");
    assert_eq!(s.replicas.len(), 3);
    let (owner, id) = owned_by_last(&s);
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let resp = ask(proxy.local_addr(), type_url::CONFIG_DUMP, &[&id], None)
        .await
        .unwrap();
    let direct = ask_replica(
        fake.replica(&owner).unwrap().plaintext_addr,
        type_url::CONFIG_DUMP,
        &[&id],
    )
    .await;
    assert!(!direct.resources.is_empty());
    // The owner's answer, byte for byte: like istiod, the fake's dump carries
    // no times and the push version stays until the mesh changes.
    assert_eq!(resp.resources, direct.resources, "the dump of {id}");
    assert_eq!(resp.type_url, type_url::CONFIG_DUMP);
    assert_eq!(control_plane(&resp).id, "<external>");
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn owner_remembered_from_syncz_and_fallback_after_a_move() {
    let s = open_scenario("three-replicas.yaml");
    let (_, id) = owned_by_last(&s);
    let first = s.replicas[0].name.clone();
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    let resp = ask(proxy.local_addr(), type_url::CONFIG_DUMP, &[&id], None)
        .await
        .unwrap();
    assert!(!resp.resources.is_empty());
    // The proxy reconnects to the first replica: the remembered owner is stale.
    fake.move_proxy(&id, &first).await.unwrap();
    let resp = ask(proxy.local_addr(), type_url::CONFIG_DUMP, &[&id], None)
        .await
        .unwrap();
    let direct = ask_replica(
        fake.replica(&first).unwrap().plaintext_addr,
        type_url::CONFIG_DUMP,
        &[&id],
    )
    .await;
    assert!(!direct.resources.is_empty());
    assert_eq!(resp.resources.len(), direct.resources.len());
    proxy.shutdown().await;
    fake.shutdown().await;
}

/// A syncz after a move relearns the owner (the owner table is learned
/// again whenever the kept rows differ from the last answer's): the next
/// config_dump goes to the new owner at once, although the old one now
/// hangs (a stale owner would hold it up for the replica timeout, 3 s).
#[tokio::test]
async fn a_syncz_after_a_move_relearns_the_owner() {
    let s = open_scenario("three-replicas.yaml");
    let (last, id) = owned_by_last(&s);
    let first = s.replicas[0].name.clone();
    let fake = fake(s).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    for _ in 0..2 {
        // Twice: the second answer keeps the same rows (nothing relearned).
        ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap();
    }
    fake.move_proxy(&id, &first).await.unwrap();
    ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    fake.set_fault(&last, fake_istiod::Fault::Hang)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let resp = ask(proxy.local_addr(), type_url::CONFIG_DUMP, &[&id], None)
        .await
        .unwrap();
    assert!(!resp.resources.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "asked the old owner first: {:?}",
        started.elapsed()
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_proxy_gives_zero_resources_promptly() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let started = std::time::Instant::now();
    let resp = ask(
        proxy.local_addr(),
        type_url::CONFIG_DUMP,
        &["nope-123.nowhere"],
        None,
    )
    .await
    .unwrap();
    assert!(resp.resources.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_proxy_with_a_failed_replica_is_not_a_false_not_found() {
    let s = open_scenario("three-replicas.yaml");
    let (owner, id) = owned_by_last(&s);
    let fake = fake(s).await;
    fake.set_fault(&owner, fake_istiod::Fault::Down)
        .await
        .unwrap();
    let proxy = proxy(plaintext_config(&fake)).await;
    let err = ask(proxy.local_addr(), type_url::CONFIG_DUMP, &[&id], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains(&owner), "{}", err.message());
    proxy.shutdown().await;
    fake.shutdown().await;
}
