//! Ctrl-C during a run stops the proxy command's whole process group: no
//! orphaned proxies; and the reports are written, with what concluded before
//! and marked as interrupted. A run that stops at its first scenario (the
//! proxy never comes up) also writes them, marked so.

use crate::support::process::running;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_leaves_no_proxy_behind() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pid_file = dir.path().join("proxy.pid");
    let report = dir.path().join("r.yaml");
    let junit = dir.path().join("r.xml");
    // A "proxy" that starts a child and never answers.
    let cmd = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let mut runner = Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .args([
            "run",
            "--run-check",
            "empty-mesh",
            "--proxy-ready-timeout",
            "60s",
        ])
        .args(["--report", &report.display().to_string()])
        .args(["--junit", &junit.display().to_string()])
        .args(["--proxy-cmd", &cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start proxy-conformance: {e}"));

    wait_for(
        "the proxy command to start",
        Duration::from_secs(30),
        || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<i32>().is_ok()),
    );
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_default();
    assert!(
        running(child),
        "the proxy's child {child} should be running"
    );

    // SAFETY: sending SIGINT to a process we started.
    unsafe {
        libc::kill(runner.id() as i32, libc::SIGINT);
    }
    let status = runner.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    wait_for(
        "the proxy's child to be gone",
        Duration::from_secs(5),
        || !running(child),
    );
    // The reports, of nothing concluded, say why.
    wait_for("the YAML report", Duration::from_secs(5), || {
        report.exists()
    });
    let yaml = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        yaml.contains("stopped: 'interrupted (Ctrl-C); not finished: empty-mesh'")
            && yaml.contains("succeeded: false"),
        "{yaml}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert!(
        xml.contains("<error message=\"interrupted (Ctrl-C)"),
        "{xml}"
    );
}

/// A proxy that exits at once stops the run at its first scenario: the run
/// fails (exit 1) with the proxy's output, and the reports say so, with the
/// checks that concluded before (here the skipped one).
#[test]
fn a_run_that_stops_at_its_first_scenario_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let report = dir.path().join("r.yaml");
    let junit = dir.path().join("r.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .args([
            "run",
            "--run-check",
            "empty-mesh,tls",
            "--skip-check",
            "tls",
        ])
        .args(["--report", &report.display().to_string()])
        .args(["--junit", &junit.display().to_string()])
        .args(["--proxy-cmd", "echo cannot start; exit 3"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run proxy-conformance: {e}"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start"), "{stderr}");
    let yaml = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        yaml.contains(
            "stopped: 'the proxy did not come up for its first scenario (empty-mesh); not finished: empty-mesh'"
        ) && yaml.contains("id: tls")
            && yaml.contains("succeeded: false"),
        "{yaml}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert!(
        xml.contains("<error message=\"the proxy did not come up"),
        "{xml}"
    );
}
