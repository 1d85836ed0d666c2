//! What each replica was asked, as the fake records it: per replica, in
//! arrival order, with the caller it authenticated and what became of it.

use crate::support::eventually;
use fake_istiod::asked::{Method, Outcome, Transport};
use fake_istiod::probe::{Dial, ask, ask_many, istioctl_request};
use fake_istiod::testing;
use fake_istiod::{Fault, Identity};
use proto::type_url;
use std::time::Duration;
use tonic::Code;

const MESH: &str = r#"
istiod: { version: 1.30.0, namespace: istio-system }
replicas: [ { name: istiod-a }, { name: istiod-b } ]
proxies:
  - { id: productpage-v1-6b746f74dc-9stvs.bookinfo, replica: istiod-a }
  - { id: sleep-557747455f-v627d.sample, replica: istiod-b }
"#;

const ISTIOCTL_NODE: &str = "sidecar~10.0.0.1~test-1.default~default.svc.cluster.local";

fn identity(namespace: &str) -> Option<Identity> {
    Some(Identity {
        namespace: namespace.into(),
        service_account: "default".into(),
    })
}

#[tokio::test]
async fn each_replica_records_its_own_requests_in_order() {
    let mesh = testing::start(MESH).await.unwrap();
    let a = mesh.replica("istiod-a").unwrap();
    let b = mesh.replica("istiod-b").unwrap();
    let id = "productpage-v1-6b746f74dc-9stvs.bookinfo";
    ask_many(
        a.tls_addr,
        &mesh.istioctl_dial(),
        vec![
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
            istioctl_request(type_url::CONFIG_DUMP, &[id], "istio-system"),
        ],
    )
    .await
    .unwrap();
    let asked = mesh.asked("istiod-a");
    let seen: Vec<(&str, &[String])> = asked
        .iter()
        .map(|q| (q.type_url.as_str(), q.resource_names.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            (type_url::SYNCZ, &[][..]),
            (type_url::CONFIG_DUMP, &[id.to_string()][..])
        ]
    );
    for q in &asked {
        assert_eq!(q.node_id, ISTIOCTL_NODE);
        assert_eq!(q.caller, identity("istio-system"));
        assert_eq!(q.transport, Transport::Tls);
        assert_eq!(q.method, Method::StateOfTheWorld);
        assert_eq!(q.outcome, Outcome::Answered);
    }
    assert!(asked[0].at <= asked[1].at);
    assert!(mesh.asked("istiod-b").is_empty());
    assert_eq!(mesh.asked_count("istiod-a"), 2);

    // Plaintext, no authentication (1.30 refuses it: debug-endpoint auth).
    let refused = ask(
        b.plaintext_addr,
        &Dial::default(),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let asked = mesh.asked("istiod-b");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].caller, None);
    assert_eq!(asked[0].transport, Transport::Plaintext);
    assert_eq!(asked[0].outcome, Outcome::Refused(Code::Unauthenticated));

    let all = mesh.asked_all();
    assert_eq!(
        all.keys().map(String::as_str).collect::<Vec<_>>(),
        ["istiod-a", "istiod-b"]
    );
    mesh.clear_asked();
    assert!(mesh.asked("istiod-a").is_empty());
    assert_eq!(mesh.asked_count("istiod-a"), 0);
    mesh.shutdown().await;
}

/// Refused before a request was read (authentication at stream start):
/// recorded without a type URL or node; refused on the node: recorded with them.
#[tokio::test]
async fn refusals_are_recorded_with_their_code() {
    let mesh = testing::start(MESH).await.unwrap();
    let a = mesh.replica("istiod-a").unwrap();
    let no_token = ask(
        a.tls_addr,
        &mesh.tls_dial(None),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    // A token of another namespace than the node claims.
    let mismatch = ask(
        a.tls_addr,
        &mesh.tls_dial(Some(mesh.token("bookinfo"))),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap_err();
    assert_eq!(mismatch.code(), Code::PermissionDenied);
    let asked = mesh.asked("istiod-a");
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(
        (asked[0].type_url.as_str(), asked[0].node_id.as_str()),
        ("", "")
    );
    assert_eq!(asked[0].outcome, Outcome::Refused(Code::Unauthenticated));
    assert_eq!(asked[0].caller, None);
    assert_eq!(
        (asked[1].type_url.as_str(), asked[1].node_id.as_str()),
        (type_url::SYNCZ, ISTIOCTL_NODE)
    );
    assert_eq!(asked[1].outcome, Outcome::Refused(Code::PermissionDenied));
    assert_eq!(asked[1].caller, identity("bookinfo"));
    mesh.shutdown().await;
}

#[tokio::test]
async fn client_certificates_and_delta_requests_are_recorded() {
    use proto::envoy::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let mesh = testing::start(MESH).await.unwrap();
    let a = mesh.replica("istiod-a").unwrap();
    let cert = mesh.issue_client_cert("istio-system", "default").unwrap();
    let dial = Dial {
        client_cert: Some((cert.cert_chain_pem, cert.key_pem)),
        ..mesh.tls_dial(None)
    };
    ask(
        a.tls_addr,
        &dial,
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap();

    let ch = fake_istiod::probe::channel(a.tls_addr, &mesh.istioctl_dial())
        .await
        .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(DeltaDiscoveryRequest {
        type_url: type_url::SYNCZ.into(),
        node: istioctl_request(type_url::SYNCZ, &[], "istio-system").node,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let bearer = format!("Bearer {}", mesh.istioctl_token());
    req.metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let mut stream = client
        .delta_aggregated_resources(req)
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    drop(tx);

    let asked = mesh.asked("istiod-a");
    let seen: Vec<(Method, Outcome, &Option<Identity>)> = asked
        .iter()
        .map(|q| (q.method, q.outcome, &q.caller))
        .collect();
    assert_eq!(
        seen,
        [
            (
                Method::StateOfTheWorld,
                Outcome::Answered,
                &identity("istio-system")
            ),
            (Method::Delta, Outcome::Answered, &identity("istio-system")),
        ]
    );
    assert_eq!(asked[1].node_id, ISTIOCTL_NODE);
    mesh.shutdown().await;
}

/// A request the replica deliberately leaves unanswered (the hang fault).
#[tokio::test]
async fn unanswered_requests_are_silent() {
    let mesh = testing::start(MESH).await.unwrap();
    mesh.set_fault("istiod-b", Fault::Hang).await.unwrap();
    let b = mesh.replica("istiod-b").unwrap();
    let dial = mesh.istioctl_dial();
    let asking = tokio::spawn(async move {
        ask(
            b.tls_addr,
            &dial,
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
        )
        .await
    });
    let silent = eventually(Duration::from_secs(10), || async {
        mesh.asked("istiod-b")
            .first()
            .is_some_and(|q| q.outcome == Outcome::Silent)
    })
    .await;
    assert!(silent, "{:?}", mesh.asked("istiod-b"));
    asking.abort();
    mesh.shutdown().await;
}
