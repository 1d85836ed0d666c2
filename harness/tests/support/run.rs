//! Run configurations and report helpers for tests that run the suite.

use harness::checks::Outcome;
use harness::config::{RunArgs, RunConfig};
use harness::report::RunReport;
use std::collections::BTreeSet;

/// Held by every test that runs the whole suite (or much of it).
static SUITE_RUNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other whole-suite run of this test binary is on, and keeps
/// others waiting while the guard lives. The suite's latency checks
/// (`replica-slow`: the fan-out must not look sequential) judge wall time on
/// a two-core machine; when each test file was a binary of its own, cargo ran
/// them one after the other and such runs never overlapped.
pub async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    SUITE_RUNS.lock().await
}

/// The default run configuration (bundled proxy, all checks, all families), with
/// the reports written nowhere that matters.
pub fn config(args: RunArgs) -> RunConfig {
    let ids: Vec<&str> = harness::checks::catalog().iter().map(|c| c.id).collect();
    match RunConfig::resolve(&args, &ids) {
        Ok(c) => c,
        Err(e) => panic!("bad test options: {e}"),
    }
}

pub fn failed(report: &RunReport) -> BTreeSet<String> {
    report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
        .map(|r| r.id.clone())
        .collect()
}

/// Every failure with its reason, for assertion messages.
pub fn explain(report: &RunReport) -> String {
    report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Fail(why) => Some(format!("{}: {why}", r.id)),
            Outcome::Skip(why) => Some(format!("{} (skipped): {why}", r.id)),
            Outcome::Pass => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every check passed, but those needing what `topology` lacks (skipped,
/// saying so).
pub fn passes_where_it_can(
    report: &RunReport,
    topology: harness::topology::TopologyKind,
) -> Result<(), String> {
    let caps = topology.capabilities();
    let mut wrong = Vec::new();
    for r in &report.results {
        let Some(check) = harness::checks::find(&r.id) else {
            wrong.push(format!("{} is not in the catalog", r.id));
            continue;
        };
        let runnable = check.needs.iter().all(|n| caps.contains(n));
        let ok = if runnable {
            r.outcome == Outcome::Pass
        } else {
            matches!(&r.outcome, Outcome::Skip(why) if why.contains(&format!("which the {topology} topology does not have")))
        };
        if !ok {
            wrong.push(format!("{}: {:?}", r.id, r.outcome));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", wrong.join("\n"), explain(report)))
    }
}
