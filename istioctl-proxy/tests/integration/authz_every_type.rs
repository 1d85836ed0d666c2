//! Own-identity mode: a caller outside the system namespace gets, for EVERY
//! request type, at most what istiod itself gives that caller (the proxy calls
//! the replicas with its own, privileged identity, so it must apply istiod's
//! rules itself). Rules by version, the same at 1.28.7, 1.29.3 and 1.30.0:
//! - 1.30.0:pilot/pkg/xds/statusgen.go `callerNamespaceFilter`, `debugSyncz`,
//!   `debugConfigDump`: syncz and config_dump only for the caller's namespace;
//!   `istio.io/connections` has no case there (zero resources for everyone).
//! - 1.30.0:pilot/pkg/xds/debuggen.go `parseAndValidateDebugRequest`: outside
//!   the system namespace only `config_dump`, `ndsz`, `edsz`, else
//!   PermissionDenied "the debug info is not available for current identity: %q";
//!   1.30.0:pilot/pkg/xds/debug.go `getDebugConnection`: `proxyID` only of the
//!   caller's own namespace.
//!
//! Each test failed on the proxy before the fix (audit findings).
use crate::support::*;
use fake_istiod::{FakeIstiod, TokenSpec};
use istioctl_proxy::{IdentityMode, OwnIdentity, ProxyConfig, RunningProxy, UpstreamTransport};
use prost::Message;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proto::type_url;

const GATEWAY: &str = "istio-ingressgateway-5c4f8d9b6-x2x7q.istio-system";
const PRODUCTPAGE: &str = "productpage-v1-6b746f74dc-9stvs.bookinfo";

struct Setup {
    fake: FakeIstiod,
    proxy: RunningProxy,
    _dir: tempfile::TempDir,
}

/// Three 1.30 replicas behind an own-identity proxy; `allowed` are the
/// `--debug-allowed-namespaces`.
async fn setup(allowed: &[&str]) -> Setup {
    let fake = fake(scenario("three-replicas.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
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
    let key = dir.path().join("sa-signing-key.pub.pem");
    std::fs::write(&key, fake.token_authority().public_pem()).unwrap();
    c.token_verification.public_keys = vec![key];
    let token = dir.path().join("proxy.token");
    std::fs::write(
        &token,
        fake.mint_token(&TokenSpec::new("istio-system", "istioctl-proxy")),
    )
    .unwrap();
    c.identity = IdentityMode::OwnIdentity(OwnIdentity {
        token_file: Some(token),
        namespace: "istio-system".into(),
        service_account: "istioctl-proxy".into(),
        system_namespace: "istio-system".into(),
        allowed_namespaces: allowed.iter().map(|s| s.to_string()).collect(),
    });
    let proxy = proxy(c).await;
    Setup {
        fake,
        proxy,
        _dir: dir,
    }
}

impl Setup {
    async fn ask_as(
        &self,
        namespace: &str,
        type_url: &str,
        names: &[&str],
    ) -> Result<DiscoveryResponse, tonic::Status> {
        let token = self.fake.mint_token(&TokenSpec::new(namespace, "default"));
        let mut req: DiscoveryRequest = istioctl_request(type_url, names);
        req.node =
            Some(proto::node::IstioctlNode::new("10.1.2.3".parse().unwrap(), namespace).to_node());
        ask_with(&client(self.proxy.local_addr(), Some(&token)), req).await
    }

    async fn stop(self) {
        self.proxy.shutdown().await;
        self.fake.shutdown().await;
    }
}

fn bodies(resp: &DiscoveryResponse) -> String {
    resp.resources
        .iter()
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn connection_nodes(resp: &DiscoveryResponse) -> Vec<String> {
    resp.resources
        .iter()
        .map(|a| {
            Node::decode(a.value.as_slice())
                .map(|n| n.id)
                .unwrap_or_default()
        })
        .collect()
}

fn assert_denied(r: Result<DiscoveryResponse, tonic::Status>, what: &str) {
    match r {
        Ok(resp) => panic!("{what}: answered with {:?}", bodies(&resp)),
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{what}: {s:?}");
            assert!(
                s.message()
                    .contains("the debug info is not available for current identity"),
                "{what}: {}",
                s.message()
            );
        }
    }
}

#[tokio::test]
async fn connections_show_a_foreign_caller_no_other_namespace() {
    // istiod answers istio.io/connections with zero resources in every version
    // (1.30.0:pilot/pkg/xds/statusgen.go has no case for it), and so does the
    // fake: through the proxy every caller gets an answer and no node at all.
    // The proxy's own filter, for a replica that would list nodes, is covered
    // by `authz::tests::connections_keep_the_callers_namespace_only`.
    let s = setup(&[]).await;
    for ns in ["istio-system", "foo", "bookinfo"] {
        let resp = s.ask_as(ns, type_url::CONNECTIONS, &[]).await.unwrap();
        let ids = connection_nodes(&resp);
        assert!(
            ids.iter().all(|id| id
                .split('~')
                .nth(2)
                .is_some_and(|p| ns == "istio-system" || p.ends_with(&format!(".{ns}")))),
            "caller in {ns} got other namespaces' connections: {ids:?}"
        );
        assert!(
            ids.is_empty(),
            "istiod lists no connections, yet {ns} got {ids:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn debug_paths_beyond_istiods_list_are_denied_to_a_foreign_caller() {
    let s = setup(&[]).await;
    for path in [
        "syncz",
        "adsz",
        "list",
        "connections",
        "configz",
        "adsz?proxyID=productpage-v1-6b746f74dc-9stvs.bookinfo",
        "/config_dump?proxyID=productpage-v1-6b746f74dc-9stvs.bookinfo",
    ] {
        assert_denied(s.ask_as("foo", type_url::DEBUG, &[path]).await, path);
    }
    // The system namespace still gets them.
    let list = s
        .ask_as("istio-system", type_url::DEBUG, &["list"])
        .await
        .unwrap();
    assert!(bodies(&list).contains("syncz"), "{}", bodies(&list));
    s.stop().await;
}

#[tokio::test]
async fn debug_config_dump_of_another_namespace_is_not_given() {
    let s = setup(&[]).await;
    let path = format!("config_dump?proxyID={GATEWAY}");
    let r = s.ask_as("foo", type_url::DEBUG, &[&path]).await;
    match r {
        Err(st) => assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}"),
        Ok(resp) => {
            let b = bodies(&resp);
            assert!(!b.contains("configs"), "foo got the gateway's dump: {b}");
        }
    }
    // The same for a bookinfo caller, while its own proxy's dump is served.
    let r = s.ask_as("bookinfo", type_url::DEBUG, &[&path]).await;
    assert!(
        r.as_ref()
            .map(|resp| !bodies(resp).contains("configs"))
            .unwrap_or(true),
        "bookinfo got the gateway's dump"
    );
    let own = format!("config_dump?proxyID={PRODUCTPAGE}");
    let resp = s
        .ask_as("bookinfo", type_url::DEBUG, &[&own])
        .await
        .unwrap();
    assert!(bodies(&resp).contains("configs"), "{}", bodies(&resp));
    // Ambiguous or odd queries are refused rather than parsed differently from istiod.
    for q in [
        format!("config_dump?proxyID={PRODUCTPAGE}&proxyID={GATEWAY}"),
        format!("config_dump?proxyID={PRODUCTPAGE};proxyID={GATEWAY}"),
        "config_dump?proxyID=istio-ingressgateway%2Dx.istio-system".to_string(),
        "config_dump".to_string(),
        "edsz?proxyID=bookinfo-x".to_string(),
    ] {
        let r = s.ask_as("bookinfo", type_url::DEBUG, &[&q]).await;
        assert!(
            r.as_ref()
                .map(|resp| !bodies(resp).contains("configs"))
                .unwrap_or(true),
            "{q}: {:?}",
            r.map(|x| bodies(&x))
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn debug_needs_exactly_one_path() {
    let s = setup(&[]).await;
    let err = s
        .ask_as("foo", type_url::DEBUG, &["list", "syncz"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("exactly one debug request is required")
    );
    s.stop().await;
}

/// `--debug-allowed-namespaces` widens syncz (StatusGen) but not
/// `istio.io/debug`: DebugGen compares with the system namespace only
/// (1.30.0:pilot/pkg/xds/debuggen.go `parseAndValidateDebugRequest`).
#[tokio::test]
async fn allowed_namespaces_do_not_open_istio_io_debug() {
    let s = setup(&["ops"]).await;
    let syncz = node_ids(&s.ask_as("ops", type_url::SYNCZ, &[]).await.unwrap());
    assert!(syncz.iter().any(|id| id == GATEWAY), "{syncz:?}");
    assert_denied(
        s.ask_as("ops", type_url::DEBUG, &["syncz"]).await,
        "ops syncz",
    );
    s.stop().await;
}
