//! `--proxy-cmd`: the proxy under test as a process, started per scenario from
//! a command line with placeholders. The real `istioctl-proxy` binary passes
//! the whole suite this way; a proxy that dies or never answers is reported
//! with the reason and its output.

mod run_support;
use run_support as support;

use harness::checks::Outcome;
use harness::runner::options::RunArgs;
use std::path::PathBuf;
use std::time::Duration;

/// The `istioctl-proxy` binary of this workspace's target folder (built by
/// `cargo test --workspace` and by ci/test.sh).
fn istioctl_proxy_bin() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/proxy_cmd-HASH -> target/debug/istioctl-proxy
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
    let cmd = format!(
        "{} --listen {{listen}} --health-listen off --istiod {{istiod}} --cert {{cert}} --key {{key}} \
         --istiod-ca {{ca}} --istiod-server-name istiod.{{namespace}}.svc --identity passthrough \
         --token-public-key {{token_issuer_key}} --replica-timeout 2s --request-timeout 4s",
        istioctl_proxy_bin().display()
    );
    let config = support::config(RunArgs {
        proxy_cmd: Some(cmd),
        ..Default::default()
    });
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    assert_eq!(report.mode, "command");
    assert!(
        report.results.iter().all(|r| r.outcome == Outcome::Pass),
        "failures with the proxy as a command:\n{}",
        support::explain(&report)
    );
}

async fn only_outcome(cmd: &str, ready: Duration) -> String {
    let config = support::config(RunArgs {
        proxy_cmd: Some(cmd.to_string()),
        run_check: vec!["empty-mesh".to_string()],
        proxy_ready_timeout: Some(ready),
        ..Default::default()
    });
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    match &report.results[..] {
        [r] => match &r.outcome {
            Outcome::Fail(why) => why.clone(),
            other => panic!("expected a failure, got {other:?}"),
        },
        other => panic!("expected one result, got {other:?}"),
    }
}

#[tokio::test]
async fn a_proxy_that_exits_is_reported_with_its_output() {
    let why = only_outcome(
        "echo 'bad flag --lisen' >&2; exit 3",
        Duration::from_secs(10),
    )
    .await;
    assert!(why.contains("exited before answering"), "{why}");
    assert!(why.contains("exit status: 3"), "{why}");
    assert!(why.contains("bad flag --lisen"), "{why}");
}

#[tokio::test]
async fn a_proxy_that_never_listens_times_out_clearly() {
    let why = only_outcome(
        "echo listening soon; exec sleep 30",
        Duration::from_millis(600),
    )
    .await;
    assert!(why.contains("did not answer within"), "{why}");
    assert!(why.contains("listening soon"), "{why}");
}
