//! Each check's results gathered over its scenarios, emitted once its last
//! scenario is done, and the run's report in catalog order.

use super::Progress;
use crate::checks::{self, Check};
use crate::config::RunConfig;
use crate::report::{CheckResult, RunReport};
use crate::suite::Outcome;
use std::collections::BTreeMap;
use std::time::Duration;

/// One check so far.
#[derive(Default)]
struct Acc {
    problems: Vec<String>,
    skips: Vec<String>,
    time: Duration,
    /// Scenarios still to run.
    left: usize,
    /// The proxy's output around the last failure.
    output: Option<String>,
    notes: Vec<String>,
}

pub(super) struct Tally {
    acc: BTreeMap<&'static str, Acc>,
    results: Vec<CheckResult>,
    total: usize,
    date: String,
}

impl Tally {
    pub(super) fn new(selected: &[(&'static Check, Option<String>)], live: bool) -> Self {
        let acc = selected
            .iter()
            .map(|(c, _)| {
                let left = if live { 1 } else { c.scenarios.len() };
                (
                    c.id,
                    Acc {
                        left,
                        ..Acc::default()
                    },
                )
            })
            .collect();
        Tally {
            acc,
            results: Vec::new(),
            total: selected.len(),
            date: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }

    /// The checks skipped before anything runs.
    pub(super) fn skipped(
        &mut self,
        selected: &[(&'static Check, Option<String>)],
        progress: &mut dyn FnMut(Progress<'_>),
    ) {
        for (check, skip) in selected {
            if let Some(why) = skip {
                let result = result(check, Outcome::Skip(why.clone()), Acc::default());
                self.emit(result, progress);
            }
        }
    }

    /// What one check concluded on one scenario.
    pub(super) fn record(
        &mut self,
        check: &Check,
        scenario: &str,
        outcome: Outcome,
        time: Duration,
        notes: Vec<String>,
        output: Option<String>,
    ) {
        let Some(a) = self.acc.get_mut(check.id) else {
            return;
        };
        a.time += time;
        a.notes
            .extend(notes.iter().map(|n| prefix(check, scenario, n)));
        match outcome {
            Outcome::Pass => {}
            Outcome::Fail(why) => {
                a.problems.push(prefix(check, scenario, &why));
                if output.is_some() {
                    a.output = output;
                }
            }
            Outcome::Skip(why) => a.skips.push(prefix(check, scenario, &why)),
        }
    }

    /// The scenario could not be opened: each of its checks fails with why.
    pub(super) fn failed_to_open(&mut self, checks: &[&'static Check], scenario: &str, why: &str) {
        for c in checks {
            if let Some(a) = self.acc.get_mut(c.id) {
                a.problems.push(format!("scenario {scenario}: {why}"));
            }
        }
    }

    /// A scenario is done: the checks it was the last scenario of are reported.
    pub(super) fn scenario_done(
        &mut self,
        checks: &[&'static Check],
        progress: &mut dyn FnMut(Progress<'_>),
    ) {
        for c in checks {
            let Some(a) = self.acc.get_mut(c.id) else {
                continue;
            };
            a.left = a.left.saturating_sub(1);
            if a.left > 0 {
                continue;
            }
            let a = std::mem::take(a);
            let outcome = if !a.problems.is_empty() {
                Outcome::Fail(a.problems.join("\n"))
            } else if !a.skips.is_empty() {
                Outcome::Skip(a.skips.join("\n"))
            } else {
                Outcome::Pass
            };
            self.emit(result(c, outcome, a), progress);
        }
    }

    fn emit(&mut self, result: CheckResult, progress: &mut dyn FnMut(Progress<'_>)) {
        self.results.push(result);
        if let Some(result) = self.results.last() {
            progress(Progress::Check {
                index: self.results.len(),
                total: self.total,
                result,
            });
        }
    }

    /// The report, in catalog order.
    pub(super) fn report(
        mut self,
        config: &RunConfig,
        mode: String,
        duration: Duration,
    ) -> RunReport {
        let catalog = checks::catalog();
        let position = |id: &str| catalog.iter().position(|c| c.id == id);
        self.results.sort_by_key(|r| position(&r.id));
        RunReport {
            implementation: config.implementation.clone(),
            date: self.date,
            mode,
            istioctl_versions: config.families.iter().map(|f| f.label()).collect(),
            results: self.results,
            duration,
        }
    }
}

fn result(check: &Check, outcome: Outcome, a: Acc) -> CheckResult {
    CheckResult {
        id: check.id.to_string(),
        profile: check.profile,
        description: check.description.to_string(),
        outcome,
        duration: a.time,
        proxy_output: a.output,
        notes: a.notes,
    }
}

/// Prefixes a multi-scenario check's reason with the scenario.
fn prefix(check: &Check, scenario: &str, why: &str) -> String {
    if check.scenarios.len() > 1 {
        format!("[{scenario}] {why}")
    } else {
        why.to_string()
    }
}
