//! The docker topology against a real Docker engine and locally built images
//! (ci/test.sh builds them and sets PROXY_CONFORMANCE_DOCKER_TESTS=1; without
//! it these tests say SKIPPED and return, with it a missing engine or image
//! fails them). Every test counts the engine's containers and networks
//! before and after: nothing may be left, whether the run passed, failed,
//! panicked or was interrupted.
//!
//! Images: PROXY_CONFORMANCE_REPLICA_IMAGE (fake-istiod), _PROXY_IMAGE (the
//! reference proxy) and _DEFECTIVE_IMAGE (`build-image.sh --defective`).

// Each test holds the engine lock for its whole length, across awaits: the
// tests run one at a time on their own runtimes, nothing else takes it.
#![allow(clippy::await_holding_lock)]

mod support;
use support::run;

use harness::config::RunArgs;
use harness::topology::Hooks;
use harness::topology::TopologyKind;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One test at a time: each counts every container and network on the engine.
static ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `Some(lock)` when docker tests are on (held for the whole test).
fn enabled(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if std::env::var("PROXY_CONFORMANCE_DOCKER_TESTS").is_ok_and(|v| v == "1") {
        // A test that panicked still released the engine for the next.
        return Some(ENGINE.lock().unwrap_or_else(|p| p.into_inner()));
    }
    eprintln!(
        "SKIPPED {test}: set PROXY_CONFORMANCE_DOCKER_TESTS=1 with a Docker engine and the images built (ci/test.sh does)"
    );
    None
}

fn image(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn docker_args(proxy_image: String, checks: &[&str]) -> RunArgs {
    RunArgs {
        topology: Some(TopologyKind::Docker),
        proxy_image: Some(proxy_image),
        replica_image: Some(image(
            "PROXY_CONFORMANCE_REPLICA_IMAGE",
            "fake-istiod:local",
        )),
        run_check: checks.iter().map(|s| s.to_string()).collect(),
        proxy_ready_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    }
}

/// (containers, networks) on the engine, counted with the docker CLI (not
/// the code under test).
fn census() -> (usize, usize) {
    let count = |args: &[&str]| {
        let out = Command::new("docker")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("docker {args:?}: {e}"));
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    (count(&["ps", "-aq"]), count(&["network", "ls", "-q"]))
}

/// The reference image passes a sample of the catalog (one check per
/// capability the docker topology adds, and ones that drive replicas
/// through their control API), and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_image_passes_and_nothing_is_left() {
    let Some(_engine) = enabled("the_reference_image_passes_and_nothing_is_left") else {
        return;
    };
    let before = census();
    let checks = [
        "syncz-union",
        "replica-down",
        "replica-churn",
        "bad-token",
        "replica-partition",
        "replica-killed",
        "replica-restart",
        "dns-discovery",
    ];
    let config = run::config(docker_args(
        image("PROXY_CONFORMANCE_PROXY_IMAGE", "istioctl-proxy:local"),
        &checks,
    ));
    let report = harness::runner::run(&config, &Hooks::default(), |_| {})
        .await
        .unwrap_or_else(|e| panic!("the run could not start: {e}"));
    assert!(run::failed(&report).is_empty(), "{}", run::explain(&report));
    assert_eq!(report.results.len(), checks.len());
    assert_eq!(census(), before, "containers and networks before and after");
}

/// The DNS-once variant (resolves the shared name at start only) fails
/// exactly the checks that need a new address or a new replica found, and
/// the failed run leaves nothing behind either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_once_fails_restart_and_discovery() {
    let Some(_engine) = enabled("dns_once_fails_restart_and_discovery") else {
        return;
    };
    let before = census();
    let mut args = docker_args(
        image(
            "PROXY_CONFORMANCE_DEFECTIVE_IMAGE",
            "istioctl-proxy-defective:local",
        ),
        &[
            "replica-partition",
            "replica-killed",
            "replica-restart",
            "dns-discovery",
        ],
    );
    args.proxy_env = vec!["ISTIOCTL_PROXY_DEFECTS=dns-once".into()];
    let config = run::config(args);
    let report = harness::runner::run(&config, &Hooks::default(), |_| {})
        .await
        .unwrap_or_else(|e| panic!("the run could not start: {e}"));
    let expected: BTreeSet<String> = ["replica-restart", "dns-discovery"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(run::failed(&report), expected, "{}", run::explain(&report));
    assert_eq!(census(), before, "containers and networks before and after");
}

/// A panic in the middle of a run (the bench up, containers running): the
/// panic hook the binary installs removes them by the run's label.
#[test]
fn a_panic_leaves_nothing() {
    let Some(_engine) = enabled("a_panic_leaves_nothing") else {
        return;
    };
    let before = census();
    let config = run::config(docker_args(
        image("PROXY_CONFORMANCE_PROXY_IMAGE", "istioctl-proxy:local"),
        &["syncz-union"],
    ));
    harness::topology::docker::sweep_on_panic(config.docker.run_id.clone());
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = running.clone();
    let hooks = Hooks {
        after_setup: Some(Arc::new(move |_ctx: &harness::checks::CheckContext| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            panic!("deliberate panic with the scenario's containers running");
        })),
        ..Hooks::default()
    };
    let outcome = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(harness::runner::run(&config, &hooks, |_| {}))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .join();
    let _ = std::panic::take_hook();
    assert!(outcome.is_err(), "the run was to panic: {outcome:?}");
    assert!(
        running.load(std::sync::atomic::Ordering::SeqCst),
        "it panicked before its bench was up"
    );
    assert_eq!(census(), before, "containers and networks before and after");
}

/// Ctrl-C while the containers run: the binary removes them and exits 130.
#[test]
fn ctrl_c_leaves_nothing() {
    let Some(_engine) = enabled("ctrl_c_leaves_nothing") else {
        return;
    };
    let before = census();
    let runner = Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .args(["run", "--topology", "docker", "--run-check", "replica-hang"])
        .args([
            "--proxy-image",
            &image("PROXY_CONFORMANCE_PROXY_IMAGE", "istioctl-proxy:local"),
        ])
        .args([
            "--replica-image",
            &image("PROXY_CONFORMANCE_REPLICA_IMAGE", "fake-istiod:local"),
        ])
        .args(["--report", "/dev/null"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    // Wait until the run's containers exist (its proxy container among them).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                "label=io.proxy-conformance.run",
                "--filter",
                "name=proxy",
            ])
            .output()
            .unwrap_or_else(|e| panic!("docker ps: {e}"));
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run's proxy container never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling a child process we own.
    unsafe {
        libc::kill(runner.id() as i32, libc::SIGINT);
    }
    let out = runner
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted:") && stderr.contains("removed"),
        "{stderr}"
    );
    assert_eq!(census(), before, "containers and networks before and after");
}
