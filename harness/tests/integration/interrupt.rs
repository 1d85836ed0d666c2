//! Ctrl-C during a run stops the proxy command's whole process group: no
//! orphaned proxies.

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
        .args(["--report", &dir.path().join("r.yaml").display().to_string()])
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
}
