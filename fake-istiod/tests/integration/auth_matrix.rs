//! istiod's authentication and debug-endpoint authorization, as a client sees it.

use crate::support::syncz_ids;
use fake_istiod::TokenSpec;
use fake_istiod::probe::{Dial, ask, istioctl_request};
use fake_istiod::testing::{self, TestMesh};
use proto::type_url;
use rstest::rstest;
use tonic::Code;

/// One replica of `version` with `auth` settings and three proxies.
async fn mesh(version: &str, auth: &str) -> TestMesh {
    let yaml = format!(
        r#"
istiod: {{ version: {version}, namespace: istio-system }}
auth: {auth}
replicas: [ {{ name: istiod-7d4f9c6b8-abcde }} ]
proxies:
  - {{ id: productpage-v1-6b746f74dc-9stvs.bookinfo, replica: istiod-7d4f9c6b8-abcde }}
  - {{ id: sleep-557747455f-v627d.sample, replica: istiod-7d4f9c6b8-abcde }}
  - {{ id: istio-ingressgateway-5c4f8d9b6-x2x7q.istio-system, replica: istiod-7d4f9c6b8-abcde, kind: gateway }}
"#
    );
    testing::start_named(&yaml, "auth.yaml")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Debug, Clone, Copy)]
enum Port {
    Plaintext,
    Tls,
}

#[derive(Debug, Clone, Copy)]
enum Token {
    None,
    Valid(&'static str),
    Expired,
    WrongAudience,
    BadSignature,
}

const ALL: &[&str] = &[
    "istio-ingressgateway-5c4f8d9b6-x2x7q.istio-system",
    "productpage-v1-6b746f74dc-9stvs.bookinfo",
    "sleep-557747455f-v627d.sample",
];

#[rstest]
#[case::tls_istioctl_token(
    "1.30.0",
    "{}",
    Port::Tls,
    Token::Valid("istio-system"),
    "istio-system",
    Ok(ALL)
)]
#[case::tls_no_token("1.30.0", "{}", Port::Tls, Token::None, "istio-system", Err((Code::Unauthenticated, "authentication failure")))]
#[case::tls_expired("1.30.0", "{}", Port::Tls, Token::Expired, "istio-system", Err((Code::Unauthenticated, "authentication failure")))]
#[case::tls_wrong_audience("1.30.0", "{}", Port::Tls, Token::WrongAudience, "istio-system", Err((Code::Unauthenticated, "authentication failure")))]
#[case::tls_bad_signature("1.30.0", "{}", Port::Tls, Token::BadSignature, "istio-system", Err((Code::Unauthenticated, "authentication failure")))]
#[case::tls_wrong_namespace(
    "1.30.0", "{}", Port::Tls, Token::Valid("bookinfo"), "istio-system",
    Err((Code::PermissionDenied, "authorization failed: no identities ([spiffe://cluster.local/ns/bookinfo/sa/default]) matched istio-system/default"))
)]
#[case::non_system_caller_sees_own_namespace("1.30.0", "{}", Port::Tls, Token::Valid("bookinfo"), "bookinfo", Ok(&["productpage-v1-6b746f74dc-9stvs.bookinfo"][..]))]
#[case::non_system_caller_1_29_3_scoped("1.29.3", "{}", Port::Tls, Token::Valid("sample"), "sample", Ok(&["sleep-557747455f-v627d.sample"][..]))]
#[case::non_system_caller_1_29_2_sees_all(
    "1.29.2",
    "{}",
    Port::Tls,
    Token::Valid("sample"),
    "sample",
    Ok(ALL)
)]
#[case::non_system_caller_allowed_namespace(
    "1.30.0",
    "{ allowed_namespaces: [bookinfo] }",
    Port::Tls,
    Token::Valid("bookinfo"),
    "bookinfo",
    Ok(ALL)
)]
#[case::plaintext_debug_auth_on("1.30.0", "{}", Port::Plaintext, Token::None, "istio-system", Err((Code::Unauthenticated, "authentication required")))]
#[case::plaintext_token_ignored("1.30.0", "{}", Port::Plaintext, Token::Valid("istio-system"), "istio-system", Err((Code::Unauthenticated, "authentication required")))]
#[case::plaintext_debug_auth_off_1_12(
    "1.12.1",
    "{}",
    Port::Plaintext,
    Token::None,
    "istio-system",
    Ok(ALL)
)]
#[case::plaintext_debug_auth_switched_off(
    "1.30.0",
    "{ debug_endpoint_auth: false }",
    Port::Plaintext,
    Token::None,
    "istio-system",
    Ok(ALL)
)]
#[case::plaintext_requires_auth_with_token(
    "1.30.0",
    "{ plaintext_requires_auth: true }",
    Port::Plaintext,
    Token::Valid("istio-system"),
    "istio-system",
    Ok(ALL)
)]
#[case::plaintext_requires_auth_without_token("1.30.0", "{ plaintext_requires_auth: true }", Port::Plaintext, Token::None, "istio-system", Err((Code::Unauthenticated, "authentication failure")))]
#[tokio::test]
async fn syncz_auth(
    #[case] version: &str,
    #[case] auth: &str,
    #[case] port: Port,
    #[case] token: Token,
    #[case] claimed_namespace: &str,
    #[case] expected: Result<&[&str], (Code, &str)>,
) {
    let fake = mesh(version, auth).await;
    let r = &fake.replicas()[0];
    let token = match token {
        Token::None => None,
        Token::Valid(ns) => Some(fake.mint_token(&TokenSpec::new(ns, "default"))),
        Token::Expired => Some(fake.mint_token(&TokenSpec::istioctl("istio-system").expired())),
        Token::WrongAudience => Some(fake.mint_token(
            &TokenSpec::istioctl("istio-system").with_audience("kubernetes.default.svc"),
        )),
        Token::BadSignature => {
            Some(fake.mint_token(&TokenSpec::istioctl("istio-system").bad_signature()))
        }
    };
    let (addr, dial) = match port {
        Port::Plaintext => (
            r.plaintext_addr,
            Dial {
                token,
                ..Default::default()
            },
        ),
        Port::Tls => (
            r.tls_addr,
            Dial {
                ca_pem: Some(fake.ca_pem()),
                token,
                ..Default::default()
            },
        ),
    };
    let got = ask(
        addr,
        &dial,
        istioctl_request(type_url::SYNCZ, &[], claimed_namespace),
    )
    .await;
    match (got, expected) {
        (Ok(resp), Ok(want)) => assert_eq!(syncz_ids(&resp), want),
        (Err(st), Err((code, msg))) => {
            assert_eq!(st.code(), code, "{st:?}");
            assert_eq!(st.message(), msg);
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn config_dump_of_another_namespace_is_invisible_to_a_scoped_caller() {
    let fake = mesh("1.30.0", "{}").await;
    let r = &fake.replicas()[0];
    let dial = Dial {
        ca_pem: Some(fake.ca_pem()),
        token: Some(fake.mint_token(&TokenSpec::new("bookinfo", "default"))),
        ..Default::default()
    };
    let other = ask(
        r.tls_addr,
        &dial,
        istioctl_request(
            type_url::CONFIG_DUMP,
            &["sleep-557747455f-v627d.sample"],
            "bookinfo",
        ),
    )
    .await
    .unwrap();
    assert!(other.resources.is_empty());
    let own = ask(
        r.tls_addr,
        &dial,
        istioctl_request(
            type_url::CONFIG_DUMP,
            &["productpage-v1-6b746f74dc-9stvs.bookinfo"],
            "bookinfo",
        ),
    )
    .await
    .unwrap();
    // An empty bootstrap, clusters, listeners, scoped routes, routes, secrets, ECDS.
    assert_eq!(own.resources.len(), 7);
    fake.shutdown().await;
}

/// `1.16.0:pilot/pkg/xds/ads.go` `initProxyMetadata` wraps the error in
/// InvalidArgument; before, the plain error reaches the client as Unknown.
#[rstest]
#[case::plain_error_1_12("1.12.1", Code::Unknown)]
#[case::plain_error_1_15("1.15.6", Code::Unknown)]
#[case::invalid_argument_1_16("1.16.0", Code::InvalidArgument)]
#[case::invalid_argument_1_30("1.30.0", Code::InvalidArgument)]
#[tokio::test]
async fn node_without_ip_is_rejected(#[case] version: &str, #[case] code: Code) {
    let fake = mesh(version, "{ debug_endpoint_auth: false }").await;
    let mut req = istioctl_request(type_url::SYNCZ, &[], "istio-system");
    if let Some(n) = req.node.as_mut() {
        n.id = "sidecar~not-an-ip~x.y~y.svc.cluster.local".into();
    }
    let err = ask(fake.replicas()[0].plaintext_addr, &Dial::default(), req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), code, "{err:?}");
    assert_eq!(
        err.message(),
        "no valid IP address in the service node id or metadata"
    );
    fake.shutdown().await;
}

#[rstest]
#[case::system_identity("istio-system", "istio-system", Ok(ALL))]
#[case::scoped_identity("bookinfo", "bookinfo", Ok(&["productpage-v1-6b746f74dc-9stvs.bookinfo"][..]))]
#[case::mismatch(
    "bookinfo", "istio-system",
    Err((Code::PermissionDenied, "authorization failed: no identities ([spiffe://cluster.local/ns/bookinfo/sa/default]) matched istio-system/default"))
)]
#[tokio::test]
async fn client_certificate_authenticates_like_a_token(
    #[case] cert_namespace: &str,
    #[case] claimed_namespace: &str,
    #[case] expected: Result<&[&str], (Code, &str)>,
) {
    let fake = mesh("1.30.0", "{}").await;
    let cert = fake.issue_client_cert(cert_namespace, "default").unwrap();
    let dial = Dial {
        ca_pem: Some(fake.ca_pem()),
        client_cert: Some((cert.cert_chain_pem, cert.key_pem)),
        ..Default::default()
    };
    let got = ask(
        fake.replicas()[0].tls_addr,
        &dial,
        istioctl_request(type_url::SYNCZ, &[], claimed_namespace),
    )
    .await;
    match (got, expected) {
        (Ok(resp), Ok(want)) => assert_eq!(syncz_ids(&resp), want),
        (Err(st), Err((code, msg))) => {
            assert_eq!(st.code(), code, "{st:?}");
            assert_eq!(st.message(), msg);
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
    fake.shutdown().await;
}

/// DebugGen's errors per version (`pilot/pkg/xds/debuggen.go` at 1.18.0,
/// 1.18.1 and 1.21.0).
#[rstest]
#[case::system_caller_list("1.30.0", "istio-system", &["list"], Ok(()))]
#[case::no_path_1_30("1.30.0", "istio-system", &[], Err((Code::InvalidArgument, "exactly one debug request is required")))]
#[case::two_paths_1_30("1.30.0", "istio-system", &["list", "syncz"], Err((Code::InvalidArgument, "exactly one debug request is required")))]
#[case::other_namespace_list_1_30(
    "1.30.0", "bookinfo", &["list"],
    Err((Code::PermissionDenied, "the debug info is not available for current identity: \"spiffe://cluster.local/ns/bookinfo/sa/default\""))
)]
#[case::other_namespace_config_dump("1.30.0", "bookinfo", &["config_dump?proxyID=productpage-v1-6b746f74dc-9stvs.bookinfo"], Ok(()))]
#[case::no_path_1_20("1.20.0", "istio-system", &[], Err((Code::InvalidArgument, "debug type is required")))]
#[case::two_paths_1_20("1.20.0", "istio-system", &["list", "syncz"], Err((Code::InvalidArgument, "only one debug request is allowed")))]
#[case::no_path_1_18_0("1.18.0", "istio-system", &[], Err((Code::Unknown, "debug type is required")))]
#[case::two_paths_1_18_0("1.18.0", "istio-system", &["list", "syncz"], Err((Code::Unknown, "only one debug request is allowed")))]
#[case::other_namespace_list_1_18_0(
    "1.18.0", "bookinfo", &["list"],
    Err((Code::Unknown, "the debug info is not available for current identity: \"spiffe://cluster.local/ns/bookinfo/sa/default\""))
)]
#[tokio::test]
async fn debug_type_rules(
    #[case] version: &str,
    #[case] namespace: &str,
    #[case] paths: &[&str],
    #[case] expected: Result<(), (Code, &str)>,
) {
    // debug_endpoint_auth off: istio.io/debug still wants an identity.
    let fake = mesh(version, "{ debug_endpoint_auth: false }").await;
    let dial = Dial {
        ca_pem: Some(fake.ca_pem()),
        token: Some(fake.mint_token(&TokenSpec::new(namespace, "default"))),
        ..Default::default()
    };
    let r = &fake.replicas()[0];
    let got = ask(
        r.tls_addr,
        &dial,
        istioctl_request(type_url::DEBUG, paths, namespace),
    )
    .await;
    match (got, expected) {
        (Ok(resp), Ok(())) => {
            assert_eq!(resp.resources.len(), 1);
            assert_eq!(resp.resources[0].type_url, "istio.io/debug");
        }
        (Err(st), Err((code, msg))) => {
            assert_eq!(st.code(), code, "{st:?}");
            assert_eq!(st.message(), msg);
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
    let plain = ask(
        r.plaintext_addr,
        &Dial::default(),
        istioctl_request(type_url::DEBUG, &["list"], "istio-system"),
    )
    .await
    .unwrap_err();
    assert_eq!(plain.message(), "authentication required");
    fake.shutdown().await;
}

/// Debug-endpoint auth follows each REPLICA's version: in a 1.30 rollout a
/// 1.12.1 replica still answers plaintext callers without an identity, a
/// 1.29.0 one too (auth from 1.29.1), a 1.27.8 one refuses them — for every
/// StatusGen type, `istio.io/connections` included
/// (`1.27.8:pilot/pkg/xds/statusgen.go` `handleInternalRequest`).
#[rstest]
#[case::old_replica_1_12("1.12.1", true)]
#[case::before_auth_1_27_7("1.27.7", true)]
#[case::auth_from_1_27_8("1.27.8", false)]
#[case::before_auth_1_29_0("1.29.0", true)]
#[case::auth_from_1_29_1("1.29.1", false)]
#[case::same_as_scenario_1_30("1.30.0", false)]
#[tokio::test]
async fn debug_auth_follows_the_replica_version(#[case] replica: &str, #[case] open: bool) {
    let yaml = format!(
        r#"
istiod: {{ version: 1.30.0, namespace: istio-system }}
replicas:
  - {{ name: istiod-new-7d4f9c6b8-abcde }}
  - {{ name: istiod-old-7d4f9c6b8-fghij, version: {replica} }}
proxies:
  - {{ id: productpage-v1-6b746f74dc-9stvs.bookinfo, replica: istiod-old-7d4f9c6b8-fghij }}
"#
    );
    let fake = testing::start_named(&yaml, "mixed.yaml").await.unwrap();
    let old = fake.replica("istiod-old-7d4f9c6b8-fghij").unwrap();
    let new = fake.replica("istiod-new-7d4f9c6b8-abcde").unwrap();
    for t in [
        type_url::SYNCZ,
        type_url::CONNECTIONS,
        type_url::CONFIG_DUMP,
    ] {
        let names: &[&str] = if t == type_url::CONFIG_DUMP {
            &["productpage-v1-6b746f74dc-9stvs.bookinfo"]
        } else {
            &[]
        };
        let got = ask(
            old.plaintext_addr,
            &Dial::default(),
            istioctl_request(t, names, "istio-system"),
        )
        .await;
        match (&got, open) {
            (Ok(_), true) => {}
            (Err(st), false) => {
                assert_eq!(st.code(), Code::Unauthenticated, "{t}: {st:?}");
                assert_eq!(st.message(), "authentication required");
            }
            _ => panic!("{replica} {t}: got {got:?}, expected open={open}"),
        }
        let refused = ask(
            new.plaintext_addr,
            &Dial::default(),
            istioctl_request(t, names, "istio-system"),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "1.30 {t}");
    }
    fake.shutdown().await;
}

/// `checkConnectionIdentity` (`1.30.0:pilot/pkg/xds/auth.go`): an empty
/// SERVICE_ACCOUNT is not compared, and without NAMESPACE the namespace is the
/// node id's DNS domain's first label.
#[rstest]
#[case::no_service_account(Some("istio-system"), None, "sidecar~10.0.0.1~test-1.default~default.svc.cluster.local", Ok(()))]
#[case::namespace_from_node_id(None, Some("default"), "sidecar~10.0.0.1~x.istio-system~istio-system.svc.cluster.local", Ok(()))]
#[case::namespace_from_node_id_mismatch(
    None,
    Some("default"),
    "sidecar~10.0.0.1~x.bookinfo~bookinfo.svc.cluster.local",
    Err(
        "authorization failed: no identities ([spiffe://cluster.local/ns/istio-system/sa/default]) matched bookinfo/default"
    )
)]
#[case::nothing_claimed(None, None, "sidecar~10.0.0.1~x~local", Ok(()))]
#[tokio::test]
async fn identity_matching(
    #[case] namespace: Option<&str>,
    #[case] service_account: Option<&str>,
    #[case] node_id: &str,
    #[case] expected: Result<(), &str>,
) {
    let fake = mesh("1.30.0", "{}").await;
    let mut req = istioctl_request(type_url::SYNCZ, &[], "istio-system");
    if let Some(n) = req.node.as_mut() {
        n.id = node_id.into();
        let md = n.metadata.get_or_insert_with(Default::default);
        md.fields.remove("NAMESPACE");
        md.fields.remove("SERVICE_ACCOUNT");
        if let Some(ns) = namespace {
            md.fields
                .insert("NAMESPACE".into(), proto::node::string_value(ns));
        }
        if let Some(sa) = service_account {
            md.fields
                .insert("SERVICE_ACCOUNT".into(), proto::node::string_value(sa));
        }
    }
    let dial = Dial {
        ca_pem: Some(fake.ca_pem()),
        token: Some(fake.mint_token(&TokenSpec::new("istio-system", "default"))),
        ..Default::default()
    };
    let got = ask(fake.replicas()[0].tls_addr, &dial, req).await;
    match (got, expected) {
        (Ok(_), Ok(())) => {}
        (Err(st), Err(msg)) => {
            assert_eq!(st.code(), Code::PermissionDenied);
            assert_eq!(st.message(), msg);
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
    fake.shutdown().await;
}
