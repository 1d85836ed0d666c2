//! istiod's authentication and debug-endpoint authorization, as a client sees it.

use fake_istiod::probe::{Dial, ask, decode_syncz, istioctl_request};
use fake_istiod::{FakeIstiod, Scenario, StartOptions, TokenSpec};
use proto::type_url;
use rstest::rstest;
use tonic::Code;

fn mesh(version: &str, auth: &str) -> Scenario {
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
    Scenario::parse(&yaml, "auth.yaml").unwrap_or_else(|e| panic!("{e}"))
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
    let fake = FakeIstiod::start(mesh(version, auth), StartOptions::ephemeral())
        .await
        .unwrap();
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
                domain: None,
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
        (Ok(resp), Ok(want)) => {
            let mut ids: Vec<String> = decode_syncz(&resp)
                .unwrap()
                .into_iter()
                .map(|c| c.node.unwrap().id)
                .collect();
            ids.sort();
            assert_eq!(ids, want);
        }
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
    let fake = FakeIstiod::start(mesh("1.30.0", "{}"), StartOptions::ephemeral())
        .await
        .unwrap();
    let r = &fake.replicas()[0];
    let dial = Dial {
        ca_pem: Some(fake.ca_pem()),
        token: Some(fake.mint_token(&TokenSpec::new("bookinfo", "default"))),
        domain: None,
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
    assert_eq!(own.resources.len(), 4);
    fake.shutdown().await;
}

#[tokio::test]
async fn node_without_ip_is_rejected() {
    let fake = FakeIstiod::start(mesh("1.12.1", "{}"), StartOptions::ephemeral())
        .await
        .unwrap();
    let mut req = istioctl_request(type_url::SYNCZ, &[], "istio-system");
    if let Some(n) = req.node.as_mut() {
        n.id = "sidecar~not-an-ip~x.y~y.svc.cluster.local".into();
    }
    let err = ask(fake.replicas()[0].plaintext_addr, &Dial::default(), req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "no valid IP address in the service node id or metadata"
    );
    fake.shutdown().await;
}
