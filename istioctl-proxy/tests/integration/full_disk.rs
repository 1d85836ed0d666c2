//! Issue 22: a log that cannot be written never kills the proxy. With stdout
//! and stderr on /dev/full (every write fails with ENOSPC) and debug logs,
//! the proxy answers, and SIGTERM still ends it with status 0 (it exited
//! 101 on the first log line it could not write).
use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_for_logs_never_kills_the_proxy() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_istioctl-proxy"))
        .args([
            "--plaintext",
            "--istiod-plaintext",
            "--health-listen",
            "off",
            "--log",
            "debug",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--istiod",
            &plaintext_replicas(&fake).join(","),
        ])
        .stdin(Stdio::null())
        .stdout(full())
        .stderr(full())
        .spawn()
        .expect("starts the proxy");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(exit)) = child.try_wait() {
            panic!("the proxy exited before it listened: {exit}");
        }
        assert!(Instant::now() < until, "the proxy never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        let resp = ask(addr, proto::type_url::SYNCZ, &[], None)
            .await
            .expect("an answer");
        assert_eq!(
            resp.resources.len(),
            scenario_ids(&open_scenario("three-replicas.yaml")).len()
        );
        // An unknown type: an error, logged.
        let _ = ask(addr, "istio.io/nope", &[], None).await;
    }
    assert!(child.try_wait().expect("wait").is_none(), "the proxy died");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    fake.shutdown().await;
}
