//! The `fake-istiod` binary: validate, token, and serve answering an
//! istioctl-style syncz request (the "done when" of the crate).

use crate::support::{BIN, Child, scenarios, syncz_ids};
use fake_istiod::probe::{Dial, ask, control_plane_id, istioctl_request};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

#[test]
fn validate_reports_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "istiod: { version: 1.30.0 }\nreplicas: [ { name: istiod-a } ]\nproxies:\n  - id: a-1.default\n    replica: istiod-b\n    colour: red\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let name = bad.display().to_string();
    assert_eq!(
        stderr,
        format!(
            "{name}:5: proxies[0].replica: no replica named \"istiod-b\" (replicas: istiod-a)\n{name}:6: proxies[0].colour: unknown field; expected one of: id, replica, cluster, namespace, version, kind, types, ip, connections\n"
        )
    );
    let ok = Command::new(BIN)
        .arg("validate")
        .arg(scenarios().join("blog-walkthrough.yaml"))
        .output()
        .unwrap();
    assert!(ok.status.success());
}

#[test]
fn token_needs_a_key_and_signs_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(BIN)
        .args(["token", "-n", "istio-system", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the signing key"));
    let authority = fake_istiod::TokenAuthority::generate().unwrap();
    std::fs::write(
        dir.path().join(fake_istiod::SIGNING_KEY_FILE),
        authority.private_pem(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "token",
            "-n",
            "bookinfo",
            "--service-account",
            "reviews",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let id = authority.verify(token.trim()).unwrap();
    assert_eq!(
        (id.namespace.as_str(), id.service_account.as_str()),
        ("bookinfo", "reviews")
    );
    // Found: a huge --ttl overflowed `now + ttl` (a panic in debug builds).
    let huge = Command::new(BIN)
        .args([
            "token",
            "-n",
            "bookinfo",
            "--ttl",
            "99999999999999999999d",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&huge.stderr);
    assert_eq!(huge.status.code(), Some(1), "{err}");
    assert!(
        err.contains("number too large") && !err.contains("panicked"),
        "{err}"
    );
    let long = Command::new(BIN)
        .args([
            "token",
            "-n",
            "bookinfo",
            "--ttl",
            "213503982334601d",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&long.stderr);
    assert_eq!(long.status.code(), Some(1), "{err}");
    assert!(err.contains("longer than 10 years"), "{err}");
}

/// `validate` on a FIFO or a device answers at once (it blocked forever, or
/// read /dev/zero until memory ran out).
#[test]
fn validate_refuses_what_is_not_a_regular_file() {
    let out = Command::new(BIN)
        .args(["validate", "/dev/zero"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "/dev/zero:0: (file): is a character device; a scenario must be a regular file\n"
    );
}

#[tokio::test]
async fn serve_answers_the_blog_syncz() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        Command::new(BIN)
            .args([
                "serve",
                "--plaintext-port",
                "0",
                "--tls-port",
                "0",
                "--no-control",
                "--scenario",
            ])
            .arg(scenarios().join("blog-walkthrough.yaml"))
            .arg("--state-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    // Read the banner up to "Ctrl-C" (the process prints it once listening).
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(20), lines)
        .await
        .expect("serve did not start")
        .unwrap();
    let replica = lines
        .iter()
        .find(|l| l.starts_with("replica "))
        .expect("a replica line");
    assert!(
        replica
            .starts_with("replica istiod-666fb6694d-jklkt  version 1.12.1  plaintext 127.0.0.2:"),
        "{replica}"
    );
    assert!(lines.iter().any(|l| l
        == &format!(
            "CA certificate: {}",
            dir.path().join("root-cert.pem").display()
        )));
    let addr: SocketAddr = replica
        .split_whitespace()
        .skip_while(|w| *w != "plaintext")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let resp = ask(
        addr,
        &Dial::default(),
        istioctl_request(proto::type_url::SYNCZ, &[], "external-istiod"),
    )
    .await
    .unwrap();
    assert_eq!(control_plane_id(&resp), "istiod-666fb6694d-jklkt");
    assert_eq!(
        syncz_ids(&resp),
        [
            "helloworld-v1-776f57d5f6-tmpkd.sample",
            "istio-ingressgateway-75bfd5668f-lggn4.external-istiod",
            "sleep-557747455f-v627d.sample"
        ]
    );
    drop(child);
}

#[test]
fn help_everywhere() {
    for sub in [
        &["--help"][..],
        &["serve", "--help"],
        &["token", "--help"],
        &["validate", "--help"],
        &["ask", "--help"],
        &["cert", "--help"],
        &["init", "--help"],
    ] {
        let out = Command::new(BIN).args(sub).output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: fake-istiod"),
            "{sub:?}"
        );
    }
}

/// Issue 22: a stdout that cannot be written (a full disk: /dev/full gives
/// ENOSPC) never stops `serve`: the banner is dropped, the replicas answer,
/// and SIGTERM still ends it cleanly.
#[tokio::test]
async fn serve_survives_a_full_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut child = Child(
        Command::new(BIN)
            .args([
                "serve",
                "--tls-port",
                "0",
                "--no-control",
                "--plaintext-port",
            ])
            .arg(port.to_string())
            .arg("--scenario")
            .arg(scenarios().join("blog-walkthrough.yaml"))
            .arg("--state-dir")
            .arg(dir.path())
            .env("RUST_LOG", "debug")
            .stdout(full())
            .stderr(full())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let resp = loop {
        match ask(
            addr,
            &Dial::default(),
            istioctl_request(proto::type_url::SYNCZ, &[], "external-istiod"),
        )
        .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(std::time::Instant::now() < until, "never answered: {e}");
                if let Ok(Some(exit)) = child.0.try_wait() {
                    panic!("serve exited with a full stdout: {exit}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(syncz_ids(&resp).len(), 3);
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
