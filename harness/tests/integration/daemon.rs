//! `proxy-conformance run` leaves no process behind, also when the proxy
//! command daemonizes (found: 13 children left after a run). The binary is a
//! child subreaper, so the daemon is re-parented to it and stopped with the
//! proxy. Fails without the subreaper: the daemon lives on under init.

use crate::support::process::running;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_daemonizing_proxy_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pid_file = dir.path().join("daemon.pid");
    // Double fork: the subshell starts a new session and exits at once; the
    // shell then exits too (as a daemonizing proxy's launcher does).
    let cmd = format!(
        "(setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > '{}'); echo forked; sleep 1",
        pid_file.display()
    );
    let mut runner = Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .args([
            "run",
            "--run-check",
            "empty-mesh",
            "--proxy-ready-timeout",
            "3s",
        ])
        .args(["--report", &dir.path().join("r.yaml").display().to_string()])
        .args(["--proxy-cmd", &cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start proxy-conformance: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = runner.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
            break s;
        }
        if Instant::now() > deadline {
            let _ = runner.kill();
            panic!("proxy-conformance did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = runner
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the run stopped at its first scenario (empty-mesh)")
            && stderr.contains("forked"),
        "{stderr}"
    );
    // Said once (not again as the error's cause).
    assert_eq!(
        stderr.matches("did not answer within 3s").count(),
        1,
        "{stderr}"
    );
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no daemon pid; {stderr}"));
    let gone = Instant::now() + Duration::from_secs(5);
    while running(daemon) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(daemon) {
        // SAFETY: killing the daemon this test made, so it does not linger.
        unsafe {
            libc::kill(daemon, libc::SIGKILL);
        }
        panic!("the daemon {daemon} outlived the run");
    }
}

/// A launcher that daemonizes the real proxy and exits 0 is not "a proxy that
/// exited": the runner waits for the daemon, runs the checks against it, and
/// stops it afterwards.
#[test]
fn a_proxy_that_daemonizes_is_tested_and_then_stopped() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pid_file = dir.path().join("daemon.pid");
    let proxy = std::path::Path::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .parent()
        .map(|d| d.join("istioctl-proxy"))
        .unwrap_or_default();
    assert!(
        proxy.exists(),
        "{} is missing: build it first (`cargo build -p istioctl-proxy`; ci/test.sh does)",
        proxy.display()
    );
    let cmd = format!(
        "(setsid {} --listen {{listen}} --health-listen off --istiod {{istiod}} --cert {{cert}} --key {{key}} \
         --istiod-ca {{ca}} --istiod-server-name istiod.{{namespace}}.svc --identity passthrough \
         --token-public-key {{token_issuer_key}} </dev/null >/dev/null 2>&1 & echo $! > '{}')",
        proxy.display(),
        pid_file.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .args([
            "run",
            "--run-check",
            "empty-mesh",
            "--proxy-ready-timeout",
            "20s",
        ])
        .args(["--report", &dir.path().join("r.yaml").display().to_string()])
        .args(["--proxy-cmd", &cmd])
        .output()
        .unwrap_or_else(|e| panic!("cannot run proxy-conformance: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no daemon pid; {text}"));
    let gone = Instant::now() + Duration::from_secs(5);
    while running(daemon) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(daemon) {
        // SAFETY: killing the daemon this test made, so it does not linger.
        unsafe {
            libc::kill(daemon, libc::SIGKILL);
        }
        panic!("the daemonized proxy {daemon} outlived the run");
    }
}
