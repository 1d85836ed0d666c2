//! The gRPC control API drives a running fake like the library calls do.

use fake_istiod::probe::{Dial, ask, decode_syncz, istioctl_request};
use fake_istiod::testing;
use proto::control as pb;
use proto::control::fake_istiod_control_client::FakeIstiodControlClient;
use proto::type_url;
use std::net::SocketAddr;

const MESH: &str = r#"
istiod: { version: 1.23.2 }
auth: { debug_endpoint_auth: false }
replicas: [ { name: istiod-a-5d6f7-aaaaa }, { name: istiod-b-5d6f7-bbbbb } ]
proxies:
  - { id: app-1-5d6f7c8b9-aaaaa.default, replica: istiod-a-5d6f7-aaaaa }
"#;

async fn ids(addr: SocketAddr) -> Vec<(String, Vec<i32>)> {
    let resp = ask(
        addr,
        &Dial::default(),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap();
    decode_syncz(&resp)
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.node.unwrap().id,
                c.generic_xds_configs
                    .iter()
                    .map(|g| g.config_status)
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn control_api_round_trip() {
    let fake = testing::start_named(MESH, "mesh.yaml")
        .with_control()
        .await
        .unwrap();
    let addr = fake.control_addr().unwrap();
    let mut c = FakeIstiodControlClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let list = c
        .list_replicas(pb::ListReplicasRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.replicas.len(), 2);
    assert_eq!(list.ca_file, fake.ca_file().display().to_string());
    let a: SocketAddr = list.replicas[0].plaintext_address.parse().unwrap();
    let b: SocketAddr = list.replicas[1].plaintext_address.parse().unwrap();
    assert_eq!(list.replicas[0].proxy_count, 1);

    c.upsert_proxy(pb::UpsertProxyRequest {
        proxy: Some(pb::Proxy {
            id: "app-2-5d6f7c8b9-bbbbb.default".into(),
            replica: "istiod-b-5d6f7-bbbbb".into(),
            version: "1.23.2".into(),
            kind: pb::ProxyKind::Sidecar as i32,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    assert_eq!(ids(b).await.len(), 1);

    c.set_status(pb::SetStatusRequest {
        proxy_id: "app-2-5d6f7c8b9-bbbbb.default".into(),
        status: Some(pb::TypeStatus {
            type_url: "CDS".into(),
            status: pb::SyncStatus::Error as i32,
            error_details: "bad cluster".into(),
            last_updated_unix_ms: 0,
        }),
    })
    .await
    .unwrap();
    // Sorted by type URL: Cluster first.
    assert_eq!(ids(b).await[0].1[0], 4 /* ERROR */);

    c.move_proxy(pb::MoveProxyRequest {
        id: "app-1-5d6f7c8b9-aaaaa.default".into(),
        to_replica: "istiod-b-5d6f7-bbbbb".into(),
    })
    .await
    .unwrap();
    assert!(ids(a).await.is_empty());
    assert_eq!(ids(b).await.len(), 2);

    c.remove_proxy(pb::RemoveProxyRequest {
        id: "app-2-5d6f7c8b9-bbbbb.default".into(),
    })
    .await
    .unwrap();
    assert_eq!(ids(b).await.len(), 1);

    c.set_fault(pb::SetFaultRequest {
        replica: "istiod-a-5d6f7-aaaaa".into(),
        fault: Some(pb::Fault {
            kind: Some(pb::fault::Kind::GrpcError(pb::GrpcError {
                code: 14,
                message: "gone".into(),
            })),
        }),
    })
    .await
    .unwrap();
    let err = ask(
        a,
        &Dial::default(),
        istioctl_request(type_url::SYNCZ, &[], "istio-system"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.message(), "gone");
    let listed = c
        .list_replicas(pb::ListReplicasRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.replicas[0].fault.is_some());
    c.clear_fault(pb::ClearFaultRequest {
        replica: "istiod-a-5d6f7-aaaaa".into(),
    })
    .await
    .unwrap();
    assert!(ids(a).await.is_empty());

    let missing = c
        .move_proxy(pb::MoveProxyRequest {
            id: "nope.default".into(),
            to_replica: "istiod-a-5d6f7-aaaaa".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let bad = c
        .load_scenario(pb::LoadScenarioRequest {
            yaml: "istiod: {}\n".into(),
            source_name: "inline.yaml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().starts_with("inline.yaml:1: istiod.version"),
        "{}",
        bad.message()
    );

    let loaded = c
        .load_scenario(pb::LoadScenarioRequest {
            yaml: "istiod: { version: 1.12.1 }\nreplicas: [ { name: istiod-c-5d6f7-ccccc } ]\nproxies: [ { id: x-1.default, replica: istiod-c-5d6f7-ccccc } ]\n".into(),
            source_name: "inline.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.replicas.len(), 1);
    assert_eq!(loaded.replicas[0].version, "1.12.1");
    let c_addr: SocketAddr = loaded.replicas[0].plaintext_address.parse().unwrap();
    assert_eq!(ids(c_addr).await.len(), 1);
    assert_eq!(fake.replicas()[0].name, "istiod-c-5d6f7-ccccc");
    fake.shutdown().await;
}
