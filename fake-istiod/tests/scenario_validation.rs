//! Scenario loading: every problem reported as `file:line: field: message`
//! (snapshots of the error text), and every shipped scenario valid.

use fake_istiod::scenario::{Fault, ProxyKind, Scenario, SyncStatus};
use rstest::rstest;
use std::path::PathBuf;
use std::time::Duration;

fn errors(yaml: &str) -> String {
    match Scenario::parse(yaml, "bad.yaml") {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[rstest]
#[case::syntax("syntax", "istiod: { version: 1.30.0\nreplicas: [\n")]
#[case::top_level_list("top-level-list", "- a\n- b\n")]
#[case::duplicate_key(
    "duplicate-key",
    "istiod: { version: 1.30.0 }\nistiod: { version: 1.29.0 }\nreplicas: [ { name: a } ]\n"
)]
#[case::missing_istiod_and_replicas("missing-istiod-and-replicas", "description: nothing\n")]
#[case::unknown_fields(
    "unknown-fields",
    r#"description: x
istiod: { version: 1.30.0, namspace: istio-system }
replicas:
  - name: istiod-a
    verison: 1.29.0
proxies:
  - id: a-1.default
    replica: istiod-a
    stauts: SYNCED
extra: 1
"#
)]
#[case::bad_versions(
    "bad-versions",
    r#"istiod: { version: 1.x }
replicas:
  - name: istiod-a
    version: "1.2.3.4"
proxies:
  - id: a-1.default
    replica: istiod-a
    version: latest
"#
)]
#[case::missing_replica_and_duplicate_id(
    "missing-replica-and-duplicate-id",
    r#"istiod: { version: 1.30.0 }
replicas:
  - name: istiod-a
  - name: istiod-b
proxies:
  - id: a-1.default
    replica: istiod-a
  - id: b-1.default
    replica: istiod-c
  - id: a-1.default
    replica: istiod-b
"#
)]
#[case::bad_proxy_fields(
    "bad-proxy-fields",
    r#"istiod: { version: 1.30.0 }
replicas: [ { name: istiod-a } ]
proxies:
  - id: no-namespace
    replica: istiod-a
  - id: b-1.default
    replica: istiod-a
    namespace: other
    kind: waypoint
    ip: not-an-ip
    types:
      CDS: SYNCHED
      XDS: SYNCED
      LDS: { status: SYNCED, error: "why" }
      RDS: { status: ERROR, last_updated: yesterday }
"#
)]
#[case::bad_connections(
    "bad-connections",
    r#"istiod: { version: 1.30.0 }
replicas: [ { name: istiod-a } ]
proxies:
  - id: a-1.default
    replica: istiod-a
    connections: 0
  - id: b-1.default
    replica: istiod-a
    connections: 9
  - id: c-1.default
    replica: istiod-a
    connections: two
"#
)]
#[case::bad_faults(
    "bad-faults",
    r#"istiod: { version: 1.30.0 }
replicas:
  - name: istiod-a
    fault: explode
  - name: istiod-b
    fault: { delay_ms: soon }
  - name: istiod-c
    fault: { grpc_error: { code: Teapot } }
  - name: istiod-d
    fault: { duplicate: nobody.default }
  - name: istiod-e
    fault: { down: true, hang: true }
  - name: istiod-f
    fault: { flap_period_ms: 0 }
  - name: Istiod_G
  - name: istiod-a
"#
)]
#[case::bad_generator(
    "bad-generator",
    r#"istiod: { version: 1.30.0 }
replicas: [ { name: istiod-a } ]
generate:
  - count: 0
  - count: 10
    namespaces: many
    replicas: [ istiod-z ]
    colour: blue
"#
)]
#[case::no_replicas("no-replicas", "istiod: { version: 1.30.0 }\nreplicas: []\n")]
fn validation_errors(#[case] name: &str, #[case] yaml: &str) {
    insta::with_settings!({ snapshot_suffix => name, description => yaml }, {
        insta::assert_snapshot!("errors", errors(yaml));
    });
}

#[test]
fn every_problem_names_file_line_and_field() {
    let text = errors(
        "istiod: { version: 1.30.0 }\nreplicas: [ { name: istiod-a } ]\nproxies:\n  - id: a-1.default\n    replica: istiod-b\n",
    );
    assert_eq!(
        text,
        "bad.yaml:5: proxies[0].replica: no replica named \"istiod-b\" (replicas: istiod-a)"
    );
}

#[test]
fn load_names_the_file() {
    let e = Scenario::load("/nonexistent/scenario.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/scenario.yaml:0: (file): cannot read the file"),
        "{e}"
    );
}

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn every_shipped_scenario_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 14, "only {n} scenarios");
}

#[test]
fn blog_scenario_is_the_blog_mesh() {
    let s = Scenario::load(scenarios_dir().join("blog-walkthrough.yaml")).unwrap();
    assert_eq!(s.istiod.version.to_string(), "1.12.1");
    assert_eq!(s.istiod.namespace, "external-istiod");
    assert_eq!(s.replicas.len(), 1);
    assert_eq!(s.replicas[0].name, "istiod-666fb6694d-jklkt");
    let ids: Vec<&str> = s.proxies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "helloworld-v1-776f57d5f6-tmpkd.sample",
            "istio-ingressgateway-75bfd5668f-lggn4.external-istiod",
            "sleep-557747455f-v627d.sample"
        ]
    );
    assert_eq!(s.proxies[1].kind, ProxyKind::Gateway);
    assert!(s.proxies.iter().all(|p| p.version.to_string() == "1.12.1"
        && p.types.len() == 4
        && p.types.iter().all(|t| t.status == SyncStatus::Synced)));
    // 1.12 has debug endpoint auth off.
    assert!(!s.auth.debug_endpoint_auth);
}

#[test]
fn large_mesh_spreads_over_replicas_and_namespaces() {
    let s = Scenario::load(scenarios_dir().join("large-mesh.yaml")).unwrap();
    assert_eq!(s.proxies.len(), 25_001);
    let by = s.proxies_by_replica();
    assert_eq!(by.len(), 5);
    for (r, ps) in &by {
        assert!((5000..=5001).contains(&ps.len()), "{r}: {}", ps.len());
    }
    let namespaces: std::collections::BTreeSet<&str> =
        s.proxies.iter().map(|p| p.namespace.as_str()).collect();
    assert_eq!(namespaces.len(), 51);
}

#[test]
fn fault_syntax() {
    assert_eq!(Fault::parse("down"), Ok(Fault::Down));
    assert_eq!(
        Fault::parse("{delay_ms: 250}"),
        Ok(Fault::Delay(Duration::from_millis(250)))
    );
    assert_eq!(
        Fault::parse("{grpc_error: {code: Unavailable, message: bye}}"),
        Ok(Fault::GrpcError {
            code: 14,
            message: "bye".into()
        })
    );
    assert_eq!(
        Fault::parse("{duplicate: {proxy_id: a.b}}"),
        Ok(Fault::Duplicate {
            proxy_id: "a.b".into()
        })
    );
    assert!(Fault::parse("sideways").is_err());
}
