//! Real gRPC on 127.0.0.x: each replica answers with exactly its own proxies.

use fake_istiod::probe::{Dial, ask, ask_many, control_plane_id, decode_syncz, istioctl_request};
use fake_istiod::{FakeIstiod, Scenario, StartOptions, TokenSpec};
use proto::type_url;
use std::path::PathBuf;

/// TLS with istioctl's token (ServiceAccount default of the system namespace).
fn istioctl_dial(fake: &FakeIstiod) -> Dial {
    Dial {
        ca_pem: Some(fake.ca_pem()),
        token: Some(fake.mint_token(&TokenSpec::istioctl("istio-system"))),
        domain: None,
    }
}

fn scenario(name: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn blog_replica_answers_syncz_with_the_three_proxies() {
    let fake = FakeIstiod::start(scenario("blog-walkthrough.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let r = &fake.replicas()[0];
    assert_eq!(r.name, "istiod-666fb6694d-jklkt");
    assert_eq!(r.plaintext_addr.ip().to_string(), "127.0.0.2");
    let resp = ask(
        r.plaintext_addr,
        &Dial::default(),
        istioctl_request(type_url::SYNCZ, &[], "external-istiod"),
    )
    .await
    .unwrap();
    assert_eq!(resp.type_url, type_url::SYNCZ);
    assert_eq!(control_plane_id(&resp), "istiod-666fb6694d-jklkt");
    let ids: Vec<String> = decode_syncz(&resp)
        .unwrap()
        .into_iter()
        .map(|c| c.node.unwrap().id)
        .collect();
    assert_eq!(
        ids,
        [
            "helloworld-v1-776f57d5f6-tmpkd.sample",
            "istio-ingressgateway-75bfd5668f-lggn4.external-istiod",
            "sleep-557747455f-v627d.sample"
        ]
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn each_replica_answers_with_exactly_its_own_proxies() {
    let s = scenario("three-replicas.yaml");
    let expected = s.proxies_by_replica();
    let expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(r, ps)| {
            (
                r.to_string(),
                ps.into_iter().map(|p| p.id.clone()).collect(),
            )
        })
        .collect();
    let fake = FakeIstiod::start(s, StartOptions::ephemeral())
        .await
        .unwrap();
    let replicas = fake.replicas();
    assert_eq!(replicas.len(), 3);
    for r in &replicas {
        let resp = ask(
            r.tls_addr,
            &istioctl_dial(&fake),
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
        )
        .await
        .unwrap();
        assert_eq!(control_plane_id(&resp), r.name);
        let mut ids: Vec<String> = decode_syncz(&resp)
            .unwrap()
            .into_iter()
            .map(|c| c.node.unwrap().id)
            .collect();
        ids.sort();
        let want = &expected.iter().find(|(n, _)| n == &r.name).unwrap().1;
        assert!(!want.is_empty());
        assert_eq!(&ids, want, "replica {}", r.name);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn config_dump_only_from_the_owning_replica_and_several_requests_per_stream() {
    let fake = FakeIstiod::start(scenario("three-replicas.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let id = "reviews-v1-545db77b95-hkh9p.bookinfo";
    for r in fake.replicas() {
        let answers = ask_many(
            r.tls_addr,
            &istioctl_dial(&fake),
            vec![
                istioctl_request(type_url::CONFIG_DUMP, &[id], "istio-system"),
                istioctl_request(type_url::SYNCZ, &[], "istio-system"),
                istioctl_request(type_url::DEBUG, &["list"], "istio-system"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(answers[0].type_url, type_url::CONFIG_DUMP);
        assert_eq!(answers[1].type_url, type_url::SYNCZ);
        assert_eq!(answers[2].type_url, type_url::DEBUG);
        // 1.30: ControlPlane only on syncz.
        assert!(answers[0].control_plane.is_none());
        assert!(answers[1].control_plane.is_some());
        let owner = r.name == "istiod-7d4f9c6b8-fghij";
        let types: Vec<&str> = answers[0]
            .resources
            .iter()
            .map(|a| a.type_url.as_str())
            .collect();
        if owner {
            assert_eq!(
                types,
                [
                    "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                    "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                    "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                    "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
                ]
            );
        } else {
            assert!(types.is_empty(), "{}: {types:?}", r.name);
        }
        assert_eq!(answers[2].resources.len(), 1);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn empty_mesh_answers_zero_resources() {
    let fake = FakeIstiod::start(scenario("empty-mesh.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let r = &fake.replicas()[0];
    let resp = ask(
        r.tls_addr,
        &istioctl_dial(&fake),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap();
    assert!(resp.resources.is_empty());
    assert_eq!(control_plane_id(&resp), "istiod-5f4d7b8c9-empty");
    fake.shutdown().await;
}

#[tokio::test]
async fn connections_lists_the_replicas_proxies_as_nodes() {
    use prost::Message;
    let fake = FakeIstiod::start(scenario("blog-walkthrough.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let r = &fake.replicas()[0];
    let resp = ask(
        r.plaintext_addr,
        &Dial::default(),
        istioctl_request(type_url::CONNECTIONS, &[], "external-istiod"),
    )
    .await
    .unwrap();
    // 1.12: ControlPlane on every answer.
    assert_eq!(control_plane_id(&resp), "istiod-666fb6694d-jklkt");
    let nodes: Vec<proto::envoy::envoy::config::core::v3::Node> = resp
        .resources
        .iter()
        .map(|a| {
            assert_eq!(a.type_url, "type.googleapis.com/envoy.config.core.v3.Node");
            proto::envoy::envoy::config::core::v3::Node::decode(a.value.as_slice()).unwrap()
        })
        .collect();
    // istioctl counts only nodes with PROXY_CONFIG (its own connection has none).
    let proxies: Vec<&str> = nodes
        .iter()
        .filter(|n| {
            n.metadata
                .as_ref()
                .is_some_and(|m| m.fields.contains_key("PROXY_CONFIG"))
        })
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(proxies.len(), 3);
    assert!(proxies[0].starts_with("sidecar~10."), "{proxies:?}");
    assert!(
        proxies[0].ends_with("~helloworld-v1-776f57d5f6-tmpkd.sample~sample.svc.cluster.local")
    );
    assert!(proxies[1].starts_with("router~"));
    assert_eq!(nodes.len(), 4);
    fake.shutdown().await;
}
