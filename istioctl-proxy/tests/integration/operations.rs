//! TLS listener, health endpoints, graceful shutdown.
use crate::support::*;
use istioctl_proxy::{ProxyConfig, ServeTransport};
use proto::type_url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn self_signed(dir: &tempfile::TempDir) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.pem())
}

#[tokio::test]
async fn serves_tls_and_refuses_plaintext_clients() {
    let s = open_scenario("three-replicas.yaml");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(&dir);
    let mut config = plaintext_config(&fake);
    config.serve = ServeTransport::Tls { cert, key };
    let proxy = proxy(config).await;
    let tls = tls_client(proxy.local_addr(), pem.as_bytes(), "localhost", None);
    let resp = ask_with(&tls, istioctl_request(type_url::SYNCZ, &[]))
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    // A plaintext client gets nothing.
    let plain = client(proxy.local_addr(), None);
    assert!(
        ask_with(&plain, istioctl_request(type_url::SYNCZ, &[]))
            .await
            .is_err()
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn unreadable_or_bad_tls_files_never_fall_back_to_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed(&dir);
    let base = || {
        ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), vec!["127.0.0.9:1".into()])
    };
    let mut c = base();
    c.serve = ServeTransport::Tls {
        cert: dir.path().join("missing.crt"),
        key: key.clone(),
    };
    let err = istioctl_proxy::start(c).await.err().expect("refused");
    assert!(err.to_string().contains("missing.crt"), "{err}");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut c = base();
    c.serve = ServeTransport::Tls { cert, key: garbage };
    let err = istioctl_proxy::start(c).await.err().expect("refused");
    assert!(err.to_string().contains("TLS"), "{err}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn healthz_and_readyz() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let mut config = plaintext_config(&fake);
    config.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let proxy = proxy(config).await;
    let h = proxy.health_addr().unwrap();
    let r = http_get(h, "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = http_get(h, "/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("3 istiod replicas"),
        "{r}"
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn readyz_is_503_without_replicas() {
    let mut config = ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), vec![]);
    config.discovery = istioctl_proxy::Discovery::Dns {
        name: "name.invalid".into(),
        port: 15012,
        refresh: std::time::Duration::from_secs(60),
    };
    config.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let proxy = proxy(config).await;
    let r = http_get(proxy.health_addr().unwrap(), "/readyz").await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    let err = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("no istiod replicas"),
        "{}",
        err.message()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_prompt_with_an_open_stream() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    // istioctl never closes its stream: hold one open.
    let mut client = proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient::new(channel(proxy.local_addr()).await);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(istioctl_request(type_url::SYNCZ, &[]))
        .await
        .unwrap();
    let mut inbound = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(inbound.message().await.unwrap().is_some());
    let started = std::time::Instant::now();
    proxy.shutdown().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(tx);
    fake.shutdown().await;
}

#[tokio::test]
async fn replicas_added_and_removed_are_picked_up_without_restart() {
    use istioctl_proxy::discovery::Replica;
    let s = open_scenario("three-replicas.yaml");
    let all = scenario_ids(&s);
    let fake = fake(s).await;
    let reps: Vec<Replica> = fake
        .replicas()
        .iter()
        .map(|r| Replica {
            name: r.name.clone(),
            address: r.plaintext_addr.to_string(),
        })
        .collect();
    let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(reps[..2].to_vec()));
    let mut config = plaintext_config(&fake);
    config.discovery = istioctl_proxy::Discovery::Dynamic(rx);
    let proxy = proxy(config).await;
    let some = node_ids(
        &ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap(),
    );
    assert!(some.len() < all.len());
    tx.send(std::sync::Arc::new(reps.clone())).unwrap();
    let ids = node_ids(
        &ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap(),
    );
    assert_eq!(sorted(ids), all);
    tx.send(std::sync::Arc::new(reps[..1].to_vec())).unwrap();
    let fewer = node_ids(
        &ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap(),
    );
    assert!(fewer.len() < some.len());
    assert_eq!(
        proxy.upstream_channels(),
        1,
        "channels of removed replicas are dropped"
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}
