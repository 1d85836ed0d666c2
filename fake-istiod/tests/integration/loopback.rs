//! Real gRPC on 127.0.0.x: each replica answers with exactly its own proxies.

use crate::support::syncz_ids;
use fake_istiod::probe::{Dial, ask, ask_many, control_plane_id, decode_syncz, istioctl_request};
use fake_istiod::testing::{self, TestMesh};
use fake_istiod::{Scenario, StartOptions, TokenSpec};
use proto::type_url;

/// TLS with istioctl's token (ServiceAccount default of the system namespace).
fn istioctl_dial(fake: &TestMesh) -> Dial {
    fake.tls_dial(Some(fake.mint_token(&TokenSpec::istioctl("istio-system"))))
}

fn scenario(name: &str) -> Scenario {
    Scenario::load(testing::scenarios_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn blog_replica_answers_syncz_with_the_three_proxies() {
    let fake = testing::start_shipped("blog-walkthrough.yaml")
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
    // version_info is istiod's push version `<time>/<n>`, the nonce a UUID.
    let (time, n) = resp.version_info.split_once('/').unwrap();
    assert!(
        time.ends_with('Z') && n.parse::<u64>().is_ok(),
        "{}",
        resp.version_info
    );
    assert_eq!(resp.nonce.len(), 36, "{}", resp.nonce);
    assert_eq!(resp.nonce.matches('-').count(), 4);
    assert!(
        resp.resources
            .iter()
            .all(|a| a.type_url == type_url::CLIENT_CONFIG)
    );
    assert_eq!(
        syncz_ids(&resp),
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
    let fake = testing::start_scenario(s).await.unwrap();
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
        let ids = syncz_ids(&resp);
        let want = &expected.iter().find(|(n, _)| n == &r.name).unwrap().1;
        assert!(!want.is_empty());
        assert_eq!(&ids, want, "replica {}", r.name);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn config_dump_only_from_the_owning_replica_and_several_requests_per_stream() {
    let fake = testing::start_shipped("three-replicas.yaml").await.unwrap();
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
        assert_ne!(answers[0].nonce, answers[1].nonce);
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
                    "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump",
                    "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                    "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                    "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"
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
    let fake = testing::start_shipped("empty-mesh.yaml").await.unwrap();
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

/// `istio.io/connections` (what `istioctl x version` asked up to 1.20) reaches
/// StatusGen, which has no case for it (`TypeURLConnect` is `istio.io/connect`):
/// zero resources; only the ControlPlane matters, and from 1.25 there is none
/// (`1.25.0:pilot/pkg/xds/xdsgen.go` `ControlPlane(typ)`).
#[rstest::rstest]
#[case::control_plane_1_12("1.12.1", true)]
#[case::control_plane_1_24("1.24.6", true)]
#[case::none_from_1_25("1.25.0", false)]
#[tokio::test]
async fn connections_answers_zero_resources(#[case] version: &str, #[case] with_cp: bool) {
    let yaml = format!(
        "istiod: {{ version: {version} }}\nauth: {{ debug_endpoint_auth: false }}\nreplicas: [ {{ name: istiod-a }} ]\nproxies: [ {{ id: a-1.default, replica: istiod-a }} ]\n"
    );
    let fake = testing::start_named(&yaml, "c.yaml").await.unwrap();
    let resp = ask(
        fake.replicas()[0].plaintext_addr,
        &Dial::default(),
        istioctl_request(type_url::CONNECTIONS, &[], "istio-system"),
    )
    .await
    .unwrap();
    assert!(resp.resources.is_empty(), "{:?}", resp.resources);
    assert_eq!(resp.type_url, type_url::CONNECTIONS);
    assert_eq!(resp.control_plane.is_some(), with_cp, "{version}");
    fake.shutdown().await;
}

/// A replica without the proxy: ≤1.19 sends no answer at all to config_dump
/// (`1.19.0:pilot/pkg/xds/statusgen.go` returns nil resources, `pushXds`
/// sends nothing), 1.20+ zero resources. Proven without waiting: config_dump
/// and syncz on one stream; the first answer is syncz's when config_dump got none.
#[rstest::rstest]
#[case::silent_1_12("1.12.1", true)]
#[case::silent_1_19("1.19.10", true)]
#[case::empty_1_20("1.20.0", false)]
#[case::empty_1_30("1.30.0", false)]
#[tokio::test]
async fn config_dump_for_a_proxy_of_another_replica(#[case] version: &str, #[case] silent: bool) {
    let yaml = format!(
        "istiod: {{ version: {version} }}\nauth: {{ debug_endpoint_auth: false }}\nreplicas: [ {{ name: istiod-a }}, {{ name: istiod-b }} ]\nproxies: [ {{ id: a-1.default, replica: istiod-a }} ]\n"
    );
    let fake = testing::start_named(&yaml, "c.yaml").await.unwrap();
    let requests = || {
        vec![
            istioctl_request(type_url::CONFIG_DUMP, &["a-1.default"], "istio-system"),
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
        ]
    };
    let b = fake.replica("istiod-b").unwrap();
    let first = fake_istiod::probe::ask_first(b.plaintext_addr, &Dial::default(), requests())
        .await
        .unwrap();
    if silent {
        assert_eq!(first.type_url, type_url::SYNCZ, "config_dump was answered");
    } else {
        assert_eq!(first.type_url, type_url::CONFIG_DUMP);
        assert!(first.resources.is_empty());
    }
    // The owner answers in every version.
    let a = fake.replica("istiod-a").unwrap();
    let first = fake_istiod::probe::ask_first(a.plaintext_addr, &Dial::default(), requests())
        .await
        .unwrap();
    assert_eq!(first.type_url, type_url::CONFIG_DUMP);
    assert!(!first.resources.is_empty());
    fake.shutdown().await;
}

/// istiod emits syncz in Go map order: the fake shuffles each answer, the
/// same way for the same scenario; a proxy with two connections is listed
/// twice, the older connection's updates 10 minutes earlier.
#[tokio::test]
async fn syncz_order_is_shuffled_reproducibly_and_lists_every_connection() {
    let mut yaml = String::from(
        "istiod: { version: 1.30.0 }\nauth: { debug_endpoint_auth: false }\nreplicas: [ { name: istiod-a } ]\nproxies:\n",
    );
    for i in 0..8 {
        yaml.push_str(&format!("  - {{ id: p-{i}.default, replica: istiod-a }}\n"));
    }
    yaml.push_str("  - { id: twice-1.default, replica: istiod-a, connections: 2 }\n");
    let orders = |s: Scenario| async move {
        let fake = testing::start_scenario(s).await.unwrap();
        let addr = fake.replicas()[0].plaintext_addr;
        let mut out = Vec::new();
        for _ in 0..3 {
            let resp = ask(
                addr,
                &Dial::default(),
                istioctl_request(type_url::SYNCZ, &[], "istio-system"),
            )
            .await
            .unwrap();
            out.push(decode_syncz(&resp).unwrap());
        }
        fake.shutdown().await;
        out
    };
    let first = orders(Scenario::parse(&yaml, "s.yaml").unwrap()).await;
    let again = orders(Scenario::parse(&yaml, "s.yaml").unwrap()).await;
    let ids = |ccs: &Vec<proto::envoy::envoy::service::status::v3::ClientConfig>| -> Vec<String> {
        ccs.iter().map(|c| c.node.clone().unwrap().id).collect()
    };
    let first_ids: Vec<Vec<String>> = first.iter().map(ids).collect();
    let again_ids: Vec<Vec<String>> = again.iter().map(ids).collect();
    assert_eq!(first_ids, again_ids, "same scenario, same orders");
    assert!(
        first_ids.windows(2).any(|w| w[0] != w[1]),
        "answers are not all in one order: {first_ids:?}"
    );
    let mut sorted = first_ids[0].clone();
    sorted.sort();
    assert_ne!(first_ids[0], sorted, "the first answer is not sorted");
    // Ten resources for nine proxies: twice-1 has two connections.
    assert_eq!(first_ids[0].len(), 10);
    let twice: Vec<_> = first[0]
        .iter()
        .filter(|c| c.node.as_ref().unwrap().id == "twice-1.default")
        .map(|c| c.generic_xds_configs[0].last_updated.unwrap().seconds)
        .collect();
    assert_eq!(twice.len(), 2);
    assert_eq!((twice[0] - twice[1]).abs(), 600);
}

/// `version_info` is the push version, the same on every answer until the
/// mesh changes; from 1.23 the nonce starts with it (`nonce(req.Push.PushVersion)`,
/// `1.23.0:pilot/pkg/xds/xdsgen.go`), before it is a bare UUID.
#[rstest::rstest]
#[case::uuid_1_22("1.22.8", false)]
#[case::push_version_1_23("1.23.0", true)]
#[tokio::test]
async fn version_info_and_nonce(#[case] version: &str, #[case] prefixed: bool) {
    let yaml = format!(
        "istiod: {{ version: {version} }}\nauth: {{ debug_endpoint_auth: false }}\nreplicas: [ {{ name: istiod-a }} ]\nproxies: [ {{ id: a-1.default, replica: istiod-a }} ]\n"
    );
    let fake = testing::start_named(&yaml, "v.yaml").await.unwrap();
    let addr = fake.replicas()[0].plaintext_addr;
    let syncz = || istioctl_request(type_url::SYNCZ, &[], "istio-system");
    let one = ask(addr, &Dial::default(), syncz()).await.unwrap();
    let two = ask(addr, &Dial::default(), syncz()).await.unwrap();
    assert_eq!(one.version_info, two.version_info);
    assert_ne!(one.nonce, two.nonce);
    assert_eq!(
        one.nonce.starts_with(&one.version_info),
        prefixed,
        "{}",
        one.nonce
    );
    assert_eq!(
        one.nonce.len(),
        36 + if prefixed { one.version_info.len() } else { 0 }
    );
    fake.remove_proxy("a-1.default").await.unwrap();
    let three = ask(addr, &Dial::default(), syncz()).await.unwrap();
    assert_ne!(
        three.version_info, one.version_info,
        "a mesh change is a new push"
    );
    fake.shutdown().await;
}

/// istiod serves debug types over the Delta method too (`pushDeltaXds`,
/// `1.30.0:pilot/pkg/xds/delta.go`): named resources, the push version as
/// `system_version_info`.
#[tokio::test]
async fn delta_xds_serves_debug_types() {
    use proto::envoy::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let fake = testing::start_shipped("blog-walkthrough.yaml")
        .await
        .unwrap();
    let ch = fake_istiod::probe::channel(fake.replicas()[0].plaintext_addr, &Dial::default())
        .await
        .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::new(ch);
    let req = DeltaDiscoveryRequest {
        type_url: type_url::SYNCZ.into(),
        node: istioctl_request(type_url::SYNCZ, &[], "external-istiod").node,
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(req).await.unwrap();
    let mut stream = client
        .delta_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    drop(tx);
    assert_eq!(resp.type_url, type_url::SYNCZ);
    let mut names: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "helloworld-v1-776f57d5f6-tmpkd.sample",
            "istio-ingressgateway-75bfd5668f-lggn4.external-istiod",
            "sleep-557747455f-v627d.sample"
        ]
    );
    assert!(resp.system_version_info.contains('/'));
    assert!(resp.control_plane.is_some());
    fake.shutdown().await;
}

/// Replica processes of one mesh share the instant ages count back from
/// (`serve --scenario-epoch-ms`): a "2m" age is the same timestamp on each.
#[tokio::test]
async fn ages_count_back_from_the_given_scenario_time() {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let opts = StartOptions {
        scenario_time: Some(at),
        ..StartOptions::ephemeral()
    };
    let fake = testing::start_shipped("three-replicas.yaml")
        .options(opts)
        .await
        .unwrap();
    assert_eq!(fake.scenario_time(), at);
    // details-v1's RDS was last updated 2m before the scenario time.
    let r = &fake.replicas()[0];
    let resp = ask(
        r.tls_addr,
        &istioctl_dial(&fake),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap();
    let details = decode_syncz(&resp)
        .unwrap()
        .into_iter()
        .find(|c| {
            c.node
                .as_ref()
                .is_some_and(|n| n.id.starts_with("details-v1"))
        })
        .expect("details-v1 on the first replica");
    let stamps: Vec<i64> = details
        .generic_xds_configs
        .iter()
        .filter_map(|g| g.last_updated.as_ref().map(|t| t.seconds))
        .collect();
    assert!(stamps.contains(&(1_700_000_000 - 120)), "{stamps:?}");
    fake.shutdown().await;
}
