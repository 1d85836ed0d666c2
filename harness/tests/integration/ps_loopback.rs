//! `proxy-conformance ps` against fake-istiod replicas on 127.0.0.x (real gRPC).

use crate::support::scenarios::scenario;
use fake_istiod::{FakeIstiod, Scenario, StartOptions, TokenSpec};
use harness::client::{self, ClientOptions, Credentials};
use harness::ps::{self, PsArgs};
use proto::{IstioctlFamily, type_url};
use std::time::Duration;

fn parse(argv: &[&str]) -> PsArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        ps: PsArgs,
    }
    Cli::parse_from(std::iter::once("ps").chain(argv.iter().copied())).ps
}

/// `ps --plaintext --xds-address ADDR --istioctl-version FAMILY`.
fn args(address: &str, family: &str) -> PsArgs {
    parse(&[
        "--xds-address",
        address,
        "--istioctl-version",
        family,
        "--plaintext",
    ])
}

/// istioctl's default mode: TLS without checks, a token from a file.
fn token_args(address: &str, family: &str, token_file: &std::path::Path) -> PsArgs {
    parse(&[
        "--xds-address",
        address,
        "--istioctl-version",
        family,
        "--token-file",
        token_file.to_str().unwrap_or_default(),
    ])
}

#[tokio::test]
async fn ps_against_one_replica_shows_its_proxies_and_its_pod_name() {
    let mut s = scenario("three-replicas.yaml");
    // 1.30 istiod refuses anonymous debug requests; --plaintext sends no token.
    s.auth.debug_endpoint_auth = false;
    let expected = s.proxies_by_replica();
    let fake = FakeIstiod::start(s.clone(), StartOptions::ephemeral())
        .await
        .unwrap();
    for r in fake.replicas() {
        let addr = r.plaintext_addr.to_string();
        let out = ps::run(&args(&addr, "1.12")).await.unwrap();
        let mut rows: Vec<&str> = out.lines().skip(1).collect();
        let ids: Vec<&str> = rows
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        let mut want: Vec<&str> = expected[r.name.as_str()]
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        want.sort();
        assert_eq!(ids, want, "replica {}", r.name);
        // ISTIOD and VERSION: the replica's pod name and istiod's version.
        rows.retain(|l| !l.contains(&format!("{}     1.30.0", r.name)));
        assert!(rows.is_empty(), "rows without {}: {rows:?}", r.name);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn ps_prints_the_blog_table_through_every_family() {
    let fake = FakeIstiod::start(scenario("blog-walkthrough.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let r = &fake.replicas()[0];
    let addr = r.plaintext_addr.to_string();
    let out = ps::run(&args(&addr, "1.12.1")).await.unwrap();
    // A replica answers with its own pod name; through a proxy it would read <external>.
    let want = include_str!("../fixtures/blog-1.12-table.txt")
        .replace("<external>", "istiod-666fb6694d-jklkt");
    let realigned = harness::render::render(
        IstioctlFamily::V1_12,
        &harness::render::key_by_control_plane([client::fetch(
            &ClientOptions::plaintext(&addr),
            type_url::SYNCZ,
            &[],
        )
        .await
        .unwrap()]),
        &harness::render::RenderOptions::at(std::time::SystemTime::now()),
    )
    .unwrap();
    assert_eq!(out, realigned);
    // Same rows as the blog, the ISTIOD column is wider by the pod name.
    fn cells(t: &str) -> Vec<Vec<&str>> {
        t.lines().map(|l| l.split_whitespace().collect()).collect()
    }
    assert_eq!(cells(&out), cells(&want));
    for family in ["1.14", "1.19", "1.22", "1.23", "1.27", "1.30"] {
        let out = ps::run(&args(&addr, family)).await.unwrap();
        assert_eq!(out.lines().count(), 4, "{family}: {out}");
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn config_dump_is_found_only_on_the_owning_replica() {
    let s = scenario("three-replicas.yaml");
    let fake = FakeIstiod::start(s, StartOptions::ephemeral())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        fake.mint_token(&TokenSpec::istioctl("istio-system")),
    )
    .unwrap();
    let owner = fake.replica("istiod-7d4f9c6b8-fghij").unwrap();
    let other = fake.replica("istiod-7d4f9c6b8-abcde").unwrap();
    let mut a = token_args(&owner.tls_addr.to_string(), "1.30", &token_file);
    a.proxy = Some("reviews-v1-545db77b95-hkh9p.bookinfo".into());
    let out = ps::run(&a).await.unwrap();
    assert_eq!(
        out,
        // 7 sections: what istiod 1.17+ sends (fake-istiod, fidelity-istiod).
        "proxy-conformance: config dump for reviews-v1-545db77b95-hkh9p.bookinfo found (7 resources); \
istioctl would now diff it against the sidecar's own config dump, read through Kubernetes, which this tool does not do\n"
    );
    a.xds_address = Some(other.tls_addr.to_string());
    let err = ps::run(&a).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find config dump in Istiod responses"
    );
    fake.shutdown().await;
}

fn tls_opts(fake: &FakeIstiod, credentials: Credentials) -> ClientOptions {
    let r = &fake.replicas()[0];
    let mut o = ClientOptions::plaintext(r.tls_addr.to_string());
    o.credentials = credentials;
    o.timeout = Duration::from_secs(10);
    o
}

#[tokio::test]
async fn credential_modes_against_a_tls_replica() {
    let fake = FakeIstiod::start(scenario("three-replicas.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let token = fake.mint_token(&TokenSpec::istioctl("istio-system"));

    // istioctl's default: no certificate checks, bearer token.
    let o = tls_opts(
        &fake,
        Credentials::InsecureTlsWithToken {
            token: Some(token.clone()),
        },
    );
    let resp = client::fetch(&o, type_url::SYNCZ, &[]).await.unwrap();
    assert_eq!(resp.resources.len(), 2);

    // Verified TLS against the fake CA.
    let o = tls_opts(
        &fake,
        Credentials::VerifiedTls {
            ca_pem: fake.ca_pem().into_bytes(),
            token: Some(token.clone()),
        },
    );
    assert!(client::fetch(&o, type_url::SYNCZ, &[]).await.is_ok());

    // Verified TLS against a CA that did not sign the server: a handshake error.
    let other_ca = rcgen::generate_simple_self_signed(vec!["x".to_string()])
        .unwrap()
        .cert
        .pem();
    let o = tls_opts(
        &fake,
        Credentials::VerifiedTls {
            ca_pem: other_ca.into_bytes(),
            token: Some(token),
        },
    );
    let err = client::fetch(&o, type_url::SYNCZ, &[]).await.unwrap_err();
    assert!(
        err.to_string().contains("authentication handshake failed"),
        "{err}"
    );
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));

    // 1.30 istiod requires an identity for syncz: istioctl's raw gRPC error.
    let o = tls_opts(&fake, Credentials::InsecureTlsWithToken { token: None });
    let err = client::fetch(&o, type_url::SYNCZ, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(
        err.to_string()
            .starts_with("rpc error: code = Unauthenticated desc = "),
        "{err}"
    );

    // An expired token.
    let expired = fake.mint_token(&TokenSpec::istioctl("istio-system").expired());
    let o = tls_opts(
        &fake,
        Credentials::InsecureTlsWithToken {
            token: Some(expired),
        },
    );
    let err = client::fetch(&o, type_url::SYNCZ, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    fake.shutdown().await;
}

#[tokio::test]
async fn timeout_reads_like_istioctl() {
    // A listener that accepts TCP and never speaks HTTP/2.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut o = ClientOptions::plaintext(addr.to_string());
    o.timeout = Duration::from_millis(300);
    let err = client::fetch(&o, type_url::SYNCZ, &[]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "timeout, still waiting for updates: istio.io/debug/syncz"
    );
    hold.abort();
}

#[tokio::test]
async fn connection_refused_reads_like_istioctl() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = ClientOptions::plaintext(format!("127.0.0.1:{port}"));
    let err = client::fetch(&o, type_url::SYNCZ, &[]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "ADSC: failed running rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:{port}: connect: connection refused\""
        )
    );
}

#[tokio::test]
async fn ps_in_istioctls_default_mode_prints_every_family() {
    let s = scenario("three-replicas.yaml");
    let fake = FakeIstiod::start(s, StartOptions::ephemeral())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        fake.mint_token(&TokenSpec::istioctl("istio-system")),
    )
    .unwrap();
    let r = fake.replica("istiod-7d4f9c6b8-klmno").unwrap();
    for family in ["1.12", "1.14", "1.19", "1.22", "1.23", "1.27", "1.30"] {
        let out = ps::run(&token_args(&r.tls_addr.to_string(), family, &token_file))
            .await
            .unwrap();
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(rows.len(), 3, "{family}: {out}");
        assert!(
            rows.iter().all(|l| l.contains("istiod-7d4f9c6b8-klmno")),
            "{family}: {out}"
        );
        assert!(
            rows[0].starts_with("istio-ingressgateway-5c4f8d9b6-x2x7q.istio-system "),
            "{family}: {out}"
        );
    }
    // Without a token the replica refuses, and ps says so as istioctl does.
    let a = parse(&["--xds-address", &r.tls_addr.to_string()]);
    let err = ps::run(&a).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("rpc error: code = Unauthenticated desc = "),
        "{err}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn responses_far_above_grpcs_4_mib_default_get_through() {
    let yaml = "istiod: { version: 1.30.0 }\nreplicas: [ { name: istiod-big } ]\nproxies: []\ngenerate:\n  - count: 30000\n    namespaces: 20\n    replicas: all\n    version: 1.30.0\n";
    let mut s = Scenario::parse(yaml, "big.yaml").unwrap_or_else(|e| panic!("{e}"));
    s.auth.debug_endpoint_auth = false;
    let fake = FakeIstiod::start(s, StartOptions::ephemeral())
        .await
        .unwrap();
    let r = &fake.replicas()[0];
    let resp = client::fetch(
        &ClientOptions::plaintext(r.plaintext_addr.to_string()),
        type_url::SYNCZ,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(resp.resources.len(), 30000);
    let size = prost::Message::encoded_len(&resp);
    assert!(
        size > 8 * 1024 * 1024,
        "only {size} bytes: not a large response"
    );
    fake.shutdown().await;
}

/// istioctl 1.12 ACKs the syncz answer on the same stream
/// (`1.12.0:pkg/adsc/adsc.go` `ack`) and istiod answers that ACK again
/// (`1.12.0:pilot/pkg/xds/ads.go` `processRequest`: debug types bypass ACK
/// logic): fake-istiod does the same, with the same proxies.
#[tokio::test]
async fn fake_istiod_answers_istioctl_1_12s_ack_again() {
    let fake = FakeIstiod::start(scenario("three-replicas.yaml"), StartOptions::ephemeral())
        .await
        .unwrap();
    let token = fake.mint_token(&TokenSpec::istioctl("istio-system"));
    let mut o = tls_opts(
        &fake,
        Credentials::InsecureTlsWithToken { token: Some(token) },
    );
    o.node_ip = Some("10.0.0.7".parse().unwrap());
    o.istioctl = proto::IstioctlRules::new("1.12.1".parse().unwrap());
    let req = client::discovery_request(&o.node(), type_url::SYNCZ, &[]);
    let (first, after) = client::ack_exchange(&o, req, None, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!first.resources.is_empty());
    match after {
        client::AfterAck::Response(again) => {
            assert_eq!(again.type_url, type_url::SYNCZ);
            assert_eq!(again.resources.len(), first.resources.len());
        }
        other => panic!("istiod answers the ACK again; fake-istiod gave {other:?}"),
    }
    // And `ps` as istioctl 1.12 (which ACKs) still prints its table.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        fake.mint_token(&TokenSpec::istioctl("istio-system")),
    )
    .unwrap();
    let r = &fake.replicas()[0];
    let out = ps::run(&token_args(&r.tls_addr.to_string(), "1.12.1", &token_file))
        .await
        .unwrap();
    assert!(out.starts_with("NAME "), "{out}");
    fake.shutdown().await;
}

/// `--now` (or PROXY_CONFORMANCE_NOW) fixes the ages istioctl 1.23+ print.
#[test]
fn now_flag_is_parsed() {
    let a = parse(&[
        "--xds-address",
        "127.0.0.1:1",
        "--now",
        "2026-11-22T12:00:00Z",
    ]);
    assert_eq!(a.now, Some(ps::parse_now("2026-11-22T12:00:00Z").unwrap()));
    assert_eq!(a.istioctl_version, "1.30.0".parse().unwrap());
}

/// `--now` fixes the ages end to end: the same table whatever the wall clock,
/// ages counted from the given instant (the scenario's "2m" old RDS update is
/// 12m old ten minutes after the scenario was loaded).
#[tokio::test]
async fn now_fixes_the_ages_istioctl_1_23_prints() {
    let mut s = scenario("three-replicas.yaml");
    s.auth.debug_endpoint_auth = false;
    let fake = FakeIstiod::start(s, StartOptions::ephemeral())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = fake.scenario_time() + Duration::from_secs(600);
    let now = time::OffsetDateTime::from(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tables = Vec::new();
    for r in fake.replicas() {
        let addr = r.plaintext_addr.to_string();
        let a = parse(&[
            "--xds-address",
            &addr,
            "--istioctl-version",
            "1.26",
            "--plaintext",
            "--now",
            &now,
        ]);
        let first = ps::run(&a).await.unwrap_or_else(|e| panic!("{e}"));
        let again = ps::run(&a).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again, "the same --now, the same table");
        tables.push(first);
    }
    fake.shutdown().await;
    let all = tables.concat();
    assert!(all.contains("STALE (12m)"), "{all}");
    assert!(
        !all.contains("STALE (2m)"),
        "ages from the wall clock:\n{all}"
    );
}
