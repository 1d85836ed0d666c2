//! A proxy that daemonizes (fork, `setsid`, parent exits) leaves its process
//! group and its parent. As a child subreaper the runner still finds such
//! processes, stops them and reaps them (no zombies of ours either).
//!
//! Being a subreaper is process-wide, so this file is a test binary of its
//! own (not a module of `integration`) and holds ONE test: its process is a
//! subreaper, no other test's children can be adopted (and reaped) by it.

use harness::topology::process::{Placeholders, ProxyProcess, become_subreaper};
use std::time::{Duration, Instant};

/// `Some(state letter)` while /proc/PID exists (`Z` = zombie).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn daemons_are_stopped_and_reaped() {
    become_subreaper().unwrap_or_else(|e| panic!("prctl: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pids = dir.path().join("pids");
    // Two daemons: one that runs on, one that exits by itself (a zombie of
    // ours once its parent is gone); then the "proxy" itself.
    let cmd = format!(
        "(setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $! >> '{p}'; \
          setsid sleep 0.2 </dev/null >/dev/null 2>&1 & echo $! >> '{p}'); \
         echo daemons started; exec sleep 300",
        p = pids.display()
    );
    let proxy = ProxyProcess::spawn(&cmd, &Placeholders::new()).unwrap_or_else(|e| panic!("{e}"));
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    let daemons: Vec<i32> = loop {
        let got: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        // Both written and both adopted by us (their parent, the subshell, is gone).
        if got.len() == 2 && got.iter().all(|p| parent(*p) == Some(me)) {
            break got;
        }
        assert!(Instant::now() < deadline, "daemons not adopted: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Wait (bounded) for the short one to have exited: a zombie of ours.
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(daemons[1]) != Some('Z') {
        assert!(Instant::now() < deadline, "{:?}", state(daemons[1]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state(daemons[0]), Some('S'), "the long daemon sleeps");
    assert!(
        proxy.running() >= 2,
        "proxy and daemon are counted as the proxy's"
    );

    proxy.stop(Duration::from_secs(2)).await;
    for pid in daemons {
        assert_eq!(
            state(pid),
            None,
            "daemon {pid} left behind (running or a zombie)"
        );
    }
}
