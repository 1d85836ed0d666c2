//! `--proxy-cmd`: the proxy under test as a process, started per scenario from
//! a command line with placeholders. The real `istioctl-proxy` binary passes
//! the whole suite this way; a proxy that dies or never answers is reported
//! with the reason and its output.

use crate::support::run;

use harness::checks::Outcome;
use harness::config::RunArgs;
use std::path::PathBuf;
use std::time::Duration;

/// The `istioctl-proxy` binary of this workspace's target folder (built by
/// `cargo test --workspace` and by ci/test.sh).
fn istioctl_proxy_bin() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/integration-HASH -> target/debug/istioctl-proxy
    let bin = me
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("istioctl-proxy"))
        .unwrap_or_default();
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p istioctl-proxy`; ci/test.sh does)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istioctl_proxy_binary_passes_every_check_as_a_command() {
    let _alone = run::alone().await;
    let cmd = format!(
        "{} --listen {{listen}} --health-listen off --istiod {{istiod}} --cert {{cert}} --key {{key}} \
         --istiod-ca {{ca}} --istiod-server-name istiod.{{namespace}}.svc --identity passthrough \
         --token-public-key {{token_issuer_key}} --replica-timeout 2s --request-timeout 4s",
        istioctl_proxy_bin().display()
    );
    let config = run::config(RunArgs {
        proxy_cmd: Some(cmd),
        ..Default::default()
    });
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    assert_eq!(report.mode, "command");
    if let Err(e) = run::passes_where_it_can(&report, harness::topology::TopologyKind::Local) {
        panic!("failures with the proxy as a command:\n{e}");
    }
}

/// Runs the suite (`checks`, or all) with a proxy command that is expected
/// never to come up; returns the run's error and how long it took.
async fn never_ready(cmd: &str, ready: Duration, checks: &[&str]) -> (String, Duration) {
    let config = run::config(RunArgs {
        proxy_cmd: Some(cmd.to_string()),
        run_check: checks.iter().map(|c| c.to_string()).collect(),
        proxy_ready_timeout: Some(ready),
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => panic!("the run went on: {}", run::explain(&r)),
        Err(e) => (e.to_string(), t0.elapsed()),
    }
}

#[tokio::test]
async fn a_proxy_that_exits_is_reported_with_its_output() {
    let (why, _) = never_ready(
        "echo 'bad flag --lisen' >&2; exit 3",
        Duration::from_secs(10),
        &["empty-mesh"],
    )
    .await;
    assert!(
        why.contains("the run stopped at its first scenario (empty-mesh)"),
        "{why}"
    );
    assert!(
        why.contains("the proxy command `echo 'bad flag --lisen' >&2; exit 3`"),
        "{why}"
    );
    assert!(why.contains("exited before answering"), "{why}");
    assert!(why.contains("exit status: 3"), "{why}");
    assert!(why.contains("bad flag --lisen"), "{why}");
}

#[tokio::test]
async fn a_proxy_that_never_listens_times_out_clearly() {
    let (why, _) = never_ready(
        "echo listening soon; exec sleep 30",
        Duration::from_millis(600),
        &["empty-mesh"],
    )
    .await;
    assert!(why.contains("did not answer within"), "{why}");
    assert!(why.contains("listening soon"), "{why}");
}

/// Found: a proxy that never came up cost every scenario the ready timeout
/// (13 scenarios x 15 s = 197 s). Now the first one stops the run: the
/// command is started once, not once per scenario.
#[tokio::test]
async fn a_proxy_that_never_becomes_ready_stops_the_run_at_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let starts = dir.path().join("starts");
    let cmd = format!("echo started >> '{}'; exec sleep 30", starts.display());
    let (why, took) = never_ready(&cmd, Duration::from_millis(500), &[]).await;
    let n = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(n, 1, "started {n} times: {why}");
    assert!(why.contains("did not answer within 500ms"), "{why}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// Found: one huge output line was held whole and copied into the report
/// (603 MB runner, 200 MB report). Now it is cut, marked and bounded.
#[tokio::test]
async fn a_huge_output_line_is_cut_in_the_error() {
    let (why, _) = never_ready(
        "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the end; exit 4",
        Duration::from_secs(20),
        &["empty-mesh"],
    )
    .await;
    assert!(
        why.contains("exit status: 4"),
        "{}",
        &why[..why.len().min(2000)]
    );
    assert!(
        why.contains("more bytes not kept]"),
        "{}",
        &why[..why.len().min(2000)]
    );
    assert!(
        why.ends_with("the end"),
        "{}",
        &why[why.len().saturating_sub(200)..]
    );
    assert!(why.len() < 64 * 1024, "{} bytes", why.len());
}

/// Found: a proxy's huge output line went whole into the report (200 MB).
/// A failing check's output in the report is the cut line with its marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_output_line_is_cut_in_the_report() {
    // A real proxy that prints a 10 MB line, then serves only the FIRST
    // replica: syncz-union fails on three-replicas (proxies missing).
    let cmd = format!(
        "head -c 10000000 /dev/zero | tr '\\0' x; echo; \
         exec {} --listen {{listen}} --health-listen off --istiod \"${{PROXY_CONFORMANCE_ISTIOD%%,*}}\" \
         --cert {{cert}} --key {{key}} --istiod-ca {{ca}} --istiod-server-name istiod.{{namespace}}.svc \
         --identity passthrough --token-public-key {{token_issuer_key}} --replica-timeout 2s --request-timeout 4s",
        istioctl_proxy_bin().display()
    );
    let config = run::config(RunArgs {
        proxy_cmd: Some(cmd),
        run_check: vec!["syncz-union".to_string()],
        ..Default::default()
    });
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    let [r] = &report.results[..] else {
        panic!("expected one result: {}", run::explain(&report));
    };
    assert!(matches!(r.outcome, Outcome::Fail(_)), "{:?}", r.outcome);
    let out = r.proxy_output.clone().unwrap_or_default();
    assert!(
        out.contains("[… line cut: 9995904 more bytes not kept]"),
        "{}",
        &out[..out.len().min(500)]
    );
    // JUnit carries the output (system-out); the YAML report the reasons.
    let junit = harness::report::junit::render(&report);
    assert!(junit.contains("line cut: 9995904 more bytes not kept"));
    assert!(
        junit.len() < 256 * 1024,
        "JUnit report of {} bytes",
        junit.len()
    );
    let yaml = harness::report::yaml::render(&report).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        yaml.len() < 256 * 1024,
        "YAML report of {} bytes",
        yaml.len()
    );
}
