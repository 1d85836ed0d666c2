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
// Hostile numbers: each used to panic, hang or allocate without bound.
#[case::hostile_numbers(
    "hostile-numbers",
    r#"istiod: { version: 1.30.0 }
replicas:
  - name: istiod-a
    fault: { delay_ms: 18446744073709551615 }
  - name: istiod-b
    fault: { flap_period_ms: 3600001 }
  - name: istiod-c
    fault: { grpc_error: { code: 99999999999999999999 } }
proxies:
  - id: a-1.default
    replica: istiod-a
    types:
      CDS: { status: SYNCED, last_updated: "300000000000-01-01T00:00:00Z" }
      LDS: { status: SYNCED, last_updated: "10000-01-01T00:00:00Z" }
      EDS: { status: SYNCED, last_updated: "99999999999999999999999d" }
generate:
  - count: 18446744073709551616
  - count: -1
"#
)]
#[case::too_many_proxies(
    "too-many-proxies",
    r#"istiod: { version: 1.30.0 }
replicas: [ { name: istiod-a } ]
proxies:
  - { id: a-1.default, replica: istiod-a }
generate:
  - { count: 600000, prefix: a }
  - { count: 400000, prefix: b }
  - { count: 1000000, prefix: c }
"#
)]
fn validation_errors(#[case] name: &str, #[case] yaml: &str) {
    // Named as when this was its own test binary (insta would prefix the module path).
    insta::with_settings!({ snapshot_suffix => name, description => yaml, prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("scenario_validation__errors", errors(yaml));
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

/// The generated text of a `depth`-deep document, flow or block style.
fn deep(depth: usize, flow: bool) -> String {
    if flow {
        format!("a: {}1{}\n", "{a: ".repeat(depth), "}".repeat(depth))
    } else {
        format!("a:\n{}1\n", "- ".repeat(depth))
    }
}

/// Found: a 10,000-deep mapping overflowed the stack (the process aborted).
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for (flow, line) in [(true, 1), (false, 2)] {
        let e = errors(&deep(10_000, flow));
        assert_eq!(
            e,
            format!(
                "bad.yaml:{line}: (document): nested more than 32 levels deep (a scenario needs at most 5)"
            ),
            "flow {flow}"
        );
    }
    // The limit is not in the way of what the format needs.
    let e = errors(&deep(20, true));
    assert!(e.contains("unknown field"), "{e}");
}

/// A file under the size cap can still hold millions of tiny values: the
/// loader's tree of 2M of them (4 MiB) took 390 MB. Refused before it is built.
#[test]
fn too_many_values_are_refused_before_the_tree_is_built() {
    let yaml = format!(
        "istiod: {{ version: 1.30.0 }}\nreplicas: [ {{ name: a }} ]\nx: [{}1]\n",
        "1,".repeat(600_000)
    );
    assert_eq!(
        errors(&yaml),
        "bad.yaml:3: (document): more than 500000 values (use `generate:` for large meshes)"
    );
}

/// Inputs a fuzzer or an attacker would try: none may panic; each is either
/// valid or fails with `file:line: field: message` lines.
#[test]
fn hostile_inputs_never_panic() {
    let many_replicas: String = (0..300)
        .map(|i| format!("  - name: istiod-{i}\n"))
        .collect();
    let inputs: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("document marker", "---\n".into()),
        ("null", "~\n".into()),
        ("two documents", "istiod: { version: 1.30.0 }\nreplicas: [ { name: a } ]\n---\n- x\n".into()),
        ("anchor and alias", "a: &x 1\nb: *x\n".into()),
        ("unknown alias", "a: *nothing\n".into()),
        ("tag", "a: !!binary aGVsbG8=\n".into()),
        ("complex key", "? { a: 1 }\n: b\n".into()),
        ("tab indentation", "istiod:\n\tversion: 1.30.0\n".into()),
        ("control characters", "a: \"\\u0000\\u0007\"\n".into()),
        ("long line", format!("description: {}\n", "x".repeat(1_000_000))),
        ("huge version numbers", "istiod: { version: 1.99999999999999999999.0 }\nreplicas: [ { name: a } ]\n".into()),
        ("version overflow", "istiod: { version: 18446744073709551616.1.1 }\nreplicas: [ { name: a } ]\n".into()),
        ("odd versions", "istiod: { version: \"1..\" }\nreplicas: [ { name: a, version: \"-1.2.3\" }, { name: b, version: \"1.2.3-\" }, { name: c, version: \"١.٢.٣\" } ]\n".into()),
        ("unicode names", "istiod: { version: 1.30.0, namespace: \"ıstio\" }\nreplicas: [ { name: \"ístiod\" } ]\nproxies: [ { id: \"ä.ö\", replica: \"ístiod\" } ]\n".into()),
        ("address with port", "istiod: { version: 1.30.0 }\nreplicas: [ { name: a, address: \"127.0.0.1:99999\" } ]\n".into()),
        ("too many replicas", format!("istiod: {{ version: 1.30.0 }}\nreplicas:\n{many_replicas}")),
        ("huge namespaces", "istiod: { version: 1.30.0 }\nreplicas: [ { name: a } ]\ngenerate: [ { count: 2, namespaces: 18446744073709551615 } ]\n".into()),
        ("negative age", "istiod: { version: 1.30.0 }\nreplicas: [ { name: a } ]\nproxies: [ { id: a.b, replica: a, types: { CDS: { status: SYNCED, last_updated: \"-5m\" } } } ]\n".into()),
        ("largest age", "istiod: { version: 1.30.0 }\nreplicas: [ { name: a } ]\nproxies: [ { id: a.b, replica: a, types: { CDS: { status: SYNCED, last_updated: \"18446744073709551615d\" } } } ]\n".into()),
        ("leap second and fraction", "istiod: { version: 1.30.0 }\nreplicas: [ { name: a } ]\nproxies: [ { id: a.b, replica: a, types: { CDS: { status: SYNCED, last_updated: \"9999-12-31T23:59:60.999999999Z\" } } } ]\n".into()),
        ("many problems", format!("istiod: {{ version: 1.30.0 }}\nreplicas: [ {{ name: a }} ]\nproxies:\n{}", (0..500).map(|i| format!("  - {{ id: p{i}.ns, replica: nope }}\n")).collect::<String>())),
        ("deep flow", deep(100_000, true)),
        ("deep block", deep(100_000, false)),
    ];
    let line = |l: &str| {
        // bad.yaml:<n>: <field>: <message>
        let rest = l.strip_prefix("bad.yaml:")?;
        let (n, rest) = rest.split_once(": ")?;
        n.parse::<usize>().ok()?;
        let (field, message) = rest.split_once(": ")?;
        (!field.is_empty() && !message.is_empty()).then_some(())
    };
    let mut panicked = Vec::new();
    for (name, yaml) in &inputs {
        match std::panic::catch_unwind(|| Scenario::parse(yaml, "bad.yaml")) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let text = e.to_string();
                assert!(
                    e.problems.len() <= 101,
                    "{name}: {} problems",
                    e.problems.len()
                );
                for l in text.lines() {
                    assert!(
                        line(l).is_some(),
                        "{name}: not file:line: field: message: {l}"
                    );
                }
            }
            Err(_) => panicked.push(*name),
        }
    }
    assert!(panicked.is_empty(), "panicked on: {panicked:?}");
}

/// Runs `Scenario::load` on another thread, bounded: before the fix a FIFO
/// blocked forever and /dev/zero was read until memory ran out.
fn load_bounded(path: &std::path::Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Scenario::load(&p).map(|_| ()).map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("{} loaded", path.display()),
        Err(_) => panic!("loading {} did not finish within 10 s", path.display()),
    }
}

#[test]
fn only_regular_files_of_bounded_size_are_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fifo = dir.path().join("scenario.fifo");
    let c = std::ffi::CString::new(fifo.display().to_string()).unwrap_or_default();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let e = load_bounded(&fifo);
    assert_eq!(
        e,
        format!(
            "{}:0: (file): is a FIFO; a scenario must be a regular file",
            fifo.display()
        )
    );

    let e = load_bounded(std::path::Path::new("/dev/zero"));
    assert_eq!(
        e,
        "/dev/zero:0: (file): is a character device; a scenario must be a regular file"
    );

    let e = load_bounded(dir.path());
    assert!(
        e.ends_with("(file): is a directory; a scenario must be a regular file"),
        "{e}"
    );

    // Sparse: 1 GiB on paper, nothing on disk.
    let big = dir.path().join("big.yaml");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(1 << 30))
        .unwrap_or_else(|e| panic!("{e}"));
    let e = load_bounded(&big);
    assert_eq!(
        e,
        format!(
            "{}:0: (file): the file has 1073741824 bytes; a scenario may have at most 4194304 (use `generate:` for large meshes)",
            big.display()
        )
    );

    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"description: caf\xe9\n").unwrap_or_else(|e| panic!("{e}"));
    let e = load_bounded(&latin1);
    assert!(
        e.ends_with("(file): not UTF-8 text (invalid byte at offset 16)"),
        "{e}"
    );
}

/// Issue 22: what a scenario holds never reaches the terminal raw: control
/// characters escaped, long values cut with their length.
#[test]
fn errors_escape_control_characters_and_cut_long_values() {
    let yaml = "istiod: { version: 1.30.0 }\nreplicas:\n  - name: \"evil\\e[31m\\0x\"\n    address: \"\\e]0;title\\a\"\n";
    let text = errors(yaml);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters: {text:?}"
    );
    assert!(text.contains("\\u{1b}"), "{text}");
    let long = "a".repeat(1_000_000);
    let yaml = format!("istiod: {{ version: 1.30.0 }}\nreplicas:\n  - name: {long}\n");
    let text = errors(&yaml);
    assert!(text.len() < 2_000, "{} bytes", text.len());
    // The value as quoted: its 1,000,000 characters and the two quotes.
    assert!(text.contains("(1000002 characters)"), "{text}");
}

/// Issue 22: two replicas on one fixed address are refused by `validate`
/// (file, line, field), not later by `serve`.
#[test]
fn duplicate_fixed_addresses_are_refused_with_their_line() {
    let yaml = "istiod: { version: 1.30.0 }\nreplicas:\n  - name: istiod-a\n    address: 127.0.0.5\n  - name: istiod-b\n    address: 127.0.0.5\n";
    let text = errors(yaml);
    assert_eq!(
        text,
        "bad.yaml:6: replicas[1].address: address 127.0.0.5 is already replica istiod-a's (line 4); each replica needs its own"
    );
}

/// The poison fault parses, and unknown kinds are named.
#[test]
fn poison_faults_parse() {
    for kind in ["wire", "utf8", "varint", "nesting", "config_dump"] {
        let f = Fault::parse(&format!("{{poison: {kind}}}")).expect(kind);
        assert_eq!(f.name(), "poison");
    }
    let e = Fault::parse("{poison: nope}").unwrap_err();
    assert!(e.contains("expected one of: wire, utf8"), "{e}");
}
