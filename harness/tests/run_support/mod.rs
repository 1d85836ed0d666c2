//! Shared by the harness's integration tests.
#![allow(dead_code)]

use harness::checks::Outcome;
use harness::report::RunReport;
use harness::runner::options::{RunArgs, RunConfig};
use std::collections::BTreeSet;

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
