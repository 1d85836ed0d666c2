//! Caller authentication in both identity modes, TLS to the replicas, and
//! namespace visibility in own-identity mode.
use crate::support::*;
use fake_istiod::{FakeIstiod, TokenSpec};
use istioctl_proxy::{IdentityMode, OwnIdentity, ProxyConfig, UpstreamTransport};
use proto::type_url;
use std::io::Write;

/// Replicas with istiod 1.30's rules (debug endpoint auth, namespace scoping),
/// dialled on their TLS ports, verified against fake-istiod's CA.
fn tls_config(fake: &FakeIstiod, identity: IdentityMode, keys: &tempfile::TempDir) -> ProxyConfig {
    let replicas = fake
        .replicas()
        .iter()
        .map(|r| format!("{}={}", r.name, r.tls_addr))
        .collect();
    let mut c = ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), replicas);
    c.upstream = UpstreamTransport::Tls {
        ca: fake.ca_file().to_path_buf(),
        server_name: "istiod.istio-system.svc".into(),
        client_identity: None,
    };
    let key = keys.path().join("sa-signing-key.pub.pem");
    std::fs::write(&key, fake.token_authority().public_pem()).unwrap();
    c.token_verification.public_keys = vec![key];
    c.identity = identity;
    c
}

fn file_with(dir: &tempfile::TempDir, name: &str, content: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    p
}

fn own_identity(token_file: std::path::PathBuf) -> IdentityMode {
    IdentityMode::OwnIdentity(OwnIdentity {
        token_file: Some(token_file),
        namespace: "istio-system".into(),
        service_account: "istioctl-proxy".into(),
        system_namespace: "istio-system".into(),
        allowed_namespaces: vec![],
    })
}

fn bad_tokens(fake: &FakeIstiod) -> Vec<(&'static str, String)> {
    vec![
        (
            "expired",
            fake.mint_token(&TokenSpec::istioctl("istio-system").expired()),
        ),
        (
            "wrong audience",
            fake.mint_token(&TokenSpec::istioctl("istio-system").with_audience("other")),
        ),
        (
            "bad signature",
            fake.mint_token(&TokenSpec::istioctl("istio-system").bad_signature()),
        ),
        ("not a JWT", "garbage".to_string()),
    ]
}

#[tokio::test]
async fn passthrough_forwards_a_valid_token() {
    let s = scenario("three-replicas.yaml");
    assert!(s.auth.debug_endpoint_auth, "replicas require a token");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(tls_config(&fake, IdentityMode::Passthrough, &dir)).await;
    let token = fake.mint_token(&TokenSpec::istioctl("istio-system"));
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], Some(&token))
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn passthrough_missing_or_invalid_token_is_unauthenticated() {
    let fake = fake(scenario("three-replicas.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(tls_config(&fake, IdentityMode::Passthrough, &dir)).await;
    let err = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(
        err.message().contains("authentication required"),
        "{}",
        err.message()
    );
    for (what, token) in bad_tokens(&fake) {
        let err = ask(proxy.local_addr(), type_url::SYNCZ, &[], Some(&token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{what}: {err:?}");
    }
    // No crash: a good token still works afterwards.
    let token = fake.mint_token(&TokenSpec::istioctl("istio-system"));
    assert!(
        ask(proxy.local_addr(), type_url::SYNCZ, &[], Some(&token))
            .await
            .is_ok()
    );
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn own_identity_calls_replicas_with_the_proxy_token() {
    let s = scenario("three-replicas.yaml");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let dir = tempfile::tempdir().unwrap();
    let own = file_with(
        &dir,
        "token",
        &fake.mint_token(&TokenSpec::new("istio-system", "istioctl-proxy")),
    );
    let proxy = proxy(tls_config(&fake, own_identity(own), &dir)).await;
    let caller = fake.mint_token(&TokenSpec::istioctl("istio-system"));
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], Some(&caller))
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn own_identity_missing_or_invalid_token_is_unauthenticated() {
    let fake = fake(scenario("three-replicas.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
    let own = file_with(
        &dir,
        "token",
        &fake.mint_token(&TokenSpec::new("istio-system", "istioctl-proxy")),
    );
    let proxy = proxy(tls_config(&fake, own_identity(own), &dir)).await;
    let err = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    for (what, token) in bad_tokens(&fake) {
        let err = ask(proxy.local_addr(), type_url::SYNCZ, &[], Some(&token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{what}: {err:?}");
    }
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn own_identity_caller_sees_no_more_than_istiod_would_show_it() {
    let s = scenario("three-replicas.yaml");
    let fake = fake(s).await;
    let dir = tempfile::tempdir().unwrap();
    let own = file_with(
        &dir,
        "token",
        &fake.mint_token(&TokenSpec::new("istio-system", "istioctl-proxy")),
    );
    let proxy = proxy(tls_config(&fake, own_identity(own), &dir)).await;
    // What istiod itself shows a bookinfo caller, replica by replica.
    let caller = fake.mint_token(&TokenSpec::new("bookinfo", "default"));
    let bookinfo_node =
        || Some(proto::node::IstioctlNode::new("10.1.2.3".parse().unwrap(), "bookinfo").to_node());
    let mut istiod_shows = Vec::new();
    for r in fake.replicas() {
        let replica = tls_client(
            r.tls_addr,
            fake.ca_pem().as_bytes(),
            "istiod.istio-system.svc",
            Some(&caller),
        );
        let mut req = istioctl_request(type_url::SYNCZ, &[]);
        req.node = bookinfo_node();
        istiod_shows.extend(node_ids(&ask_with(&replica, req).await.unwrap()));
    }
    let istiod_shows = sorted(istiod_shows);
    // Through the proxy: only bookinfo's proxies.
    let mut req = istioctl_request(type_url::SYNCZ, &[]);
    // A bookinfo caller's node claims its own namespace.
    req.node =
        Some(proto::node::IstioctlNode::new("10.1.2.3".parse().unwrap(), "bookinfo").to_node());
    let resp = ask_with(&client(proxy.local_addr(), Some(&caller)), req)
        .await
        .unwrap();
    let ids = sorted(node_ids(&resp));
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| id.ends_with(".bookinfo")), "{ids:?}");
    assert_eq!(ids, istiod_shows, "exactly what istiod shows this caller");
    // A system-namespace caller sees everything, gateways included.
    let admin = fake.mint_token(&TokenSpec::istioctl("istio-system"));
    let all = node_ids(
        &ask(proxy.local_addr(), type_url::SYNCZ, &[], Some(&admin))
            .await
            .unwrap(),
    );
    assert!(all.len() > istiod_shows.len());
    assert!(all.iter().any(|id| id.ends_with(".istio-system")));
    // config_dump of a proxy outside the caller's namespace: nothing.
    let mut req = istioctl_request(
        type_url::CONFIG_DUMP,
        &["istio-ingressgateway-5c4f8d9b6-x2x7q.istio-system"],
    );
    req.node =
        Some(proto::node::IstioctlNode::new("10.1.2.3".parse().unwrap(), "bookinfo").to_node());
    let resp = ask_with(&client(proxy.local_addr(), Some(&caller)), req)
        .await
        .unwrap();
    assert!(resp.resources.is_empty());
    proxy.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn own_identity_refuses_to_start_without_a_verification_key() {
    let fake = fake(scenario("three-replicas.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
    let own = file_with(&dir, "token", "x");
    let mut c = tls_config(&fake, own_identity(own), &dir);
    c.token_verification.public_keys.clear();
    let err = istioctl_proxy::start(c).await.err().expect("refused");
    assert!(err.to_string().contains("--token-public-key"), "{err}");
    fake.shutdown().await;
}

#[tokio::test]
async fn unreadable_files_are_clear_start_errors() {
    let fake = fake(scenario("three-replicas.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = tls_config(&fake, IdentityMode::Passthrough, &dir);
    c.upstream = UpstreamTransport::Tls {
        ca: "/nonexistent/ca.pem".into(),
        server_name: "istiod.istio-system.svc".into(),
        client_identity: None,
    };
    let err = istioctl_proxy::start(c).await.err().expect("refused");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let mut c = tls_config(&fake, IdentityMode::Passthrough, &dir);
    c.token_verification.public_keys = vec![file_with(&dir, "notakey.pem", "hello")];
    let err = istioctl_proxy::start(c).await.err().expect("refused");
    assert!(err.to_string().contains("notakey.pem"), "{err}");
    fake.shutdown().await;
}

/// The README's recipe for three-replicas.yaml as shipped (istiod 1.30: syncz
/// needs an identity): a plaintext, anonymous proxy dialling the replicas'
/// TLS ports with its own token, built from the command line.
#[tokio::test]
async fn plaintext_cli_with_own_token_to_tls_replicas() {
    use clap::Parser;
    let s = scenario("three-replicas.yaml");
    let want = scenario_ids(&s);
    let fake = fake(s).await;
    let dir = tempfile::tempdir().unwrap();
    let token = file_with(
        &dir,
        "proxy.token",
        &fake.mint_token(&TokenSpec::new("istio-system", "istioctl-proxy")),
    );
    let replicas: Vec<String> = fake
        .replicas()
        .iter()
        .map(|r| r.tls_addr.to_string())
        .collect();
    let args = istioctl_proxy::cli::Args::try_parse_from([
        "istioctl-proxy",
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "off",
        "--discovery",
        "static",
        "--istiod",
        &replicas.join(","),
        "--plaintext",
        "--istiod-ca",
        fake.ca_file().to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
    ])
    .unwrap();
    let proxy = proxy(args.to_config().unwrap()).await;
    // istioctl --plaintext sends no token.
    let resp = ask(proxy.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .unwrap();
    assert_eq!(sorted(node_ids(&resp)), want);
    assert_eq!(control_plane(&resp).id, "<external>");
    proxy.shutdown().await;
    fake.shutdown().await;
}
