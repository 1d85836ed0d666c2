//! Each check's results gathered over its scenarios, concluded once its last
//! scenario is done and shown in catalog order, whatever order the scenarios
//! finish in; what is running now, for the progress line; and the run's
//! report, in catalog order (also of a run that stopped early).

use super::{Progress, Running};
use crate::checks::Check;
use crate::config::RunConfig;
use crate::report::{CheckResult, RunReport};
use crate::suite::Outcome;
use std::time::{Duration, Instant};

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

/// One check of the run, at its place in the catalog.
struct Slot {
    check: &'static Check,
    acc: Acc,
    /// Concluded (all its scenarios done, or skipped).
    result: Option<CheckResult>,
}

pub(super) struct Tally {
    /// In catalog order.
    slots: Vec<Slot>,
    /// Results before this one have been shown.
    shown: usize,
    /// Checks running now: which, on which scenario, since when.
    running: Vec<(&'static str, &'static str, Instant)>,
    date: String,
}

impl Tally {
    pub(super) fn new(selected: &[(&'static Check, Option<String>)], live: bool) -> Self {
        let slots = selected
            .iter()
            .map(|(check, _)| Slot {
                check,
                acc: Acc {
                    left: if live { 1 } else { check.scenarios.len() },
                    ..Acc::default()
                },
                result: None,
            })
            .collect();
        Tally {
            slots,
            shown: 0,
            running: Vec::new(),
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
        for (i, (check, skip)) in selected.iter().enumerate() {
            if let (Some(why), Some(slot)) = (skip, self.slots.get_mut(i)) {
                slot.result = Some(result(check, Outcome::Skip(why.clone()), Acc::default()));
            }
        }
        self.show(progress);
    }

    fn slot(&mut self, check: &Check) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.check.id == check.id)
    }

    /// A check started on a scenario.
    pub(super) fn started(&mut self, check: &'static Check, scenario: &'static str) {
        self.running.push((check.id, scenario, Instant::now()));
    }

    /// What one check concluded on one scenario; once it was its last
    /// scenario, the check's result (shown when those before it are).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        check: &'static Check,
        scenario: &str,
        outcome: Outcome,
        time: Duration,
        notes: Vec<String>,
        output: Option<String>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) {
        self.running
            .retain(|(id, s, _)| !(*id == check.id && *s == scenario));
        let Some(slot) = self.slot(check) else {
            return;
        };
        let a = &mut slot.acc;
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
        self.scenario_done(check, progress);
    }

    /// The scenario could not be opened: each of its checks fails with why.
    pub(super) fn failed_to_open(
        &mut self,
        checks: &[&'static Check],
        scenario: &str,
        why: &str,
        progress: &mut dyn FnMut(Progress<'_>),
    ) {
        for c in checks {
            if let Some(slot) = self.slot(c) {
                slot.acc
                    .problems
                    .push(format!("scenario {scenario}: {why}"));
            }
            self.scenario_done(c, progress);
        }
    }

    /// One of the check's scenarios is done: after its last, it concludes.
    fn scenario_done(&mut self, check: &'static Check, progress: &mut dyn FnMut(Progress<'_>)) {
        let Some(slot) = self.slot(check) else {
            return;
        };
        slot.acc.left = slot.acc.left.saturating_sub(1);
        if slot.acc.left > 0 || slot.result.is_some() {
            return;
        }
        let a = std::mem::take(&mut slot.acc);
        let outcome = if !a.problems.is_empty() {
            Outcome::Fail(a.problems.join("\n"))
        } else if !a.skips.is_empty() {
            Outcome::Skip(a.skips.join("\n"))
        } else {
            Outcome::Pass
        };
        slot.result = Some(result(check, outcome, a));
        self.show(progress);
    }

    /// Shows the concluded results that all before them in the catalog
    /// have been shown.
    fn show(&mut self, progress: &mut dyn FnMut(Progress<'_>)) {
        let total = self.slots.len();
        while let Some(result) = self.slots.get(self.shown).and_then(|s| s.result.as_ref()) {
            self.shown += 1;
            progress(Progress::Check {
                index: self.shown,
                total,
                result,
            });
        }
    }

    /// The run stopped early: the results concluded so far are shown, in
    /// catalog order, past the checks that did not conclude.
    pub(super) fn show_the_rest(&mut self, progress: &mut dyn FnMut(Progress<'_>)) {
        let total = self.slots.len();
        for (i, slot) in self.slots.iter().enumerate().skip(self.shown) {
            if let Some(result) = &slot.result {
                progress(Progress::Check {
                    index: i + 1,
                    total,
                    result,
                });
            }
        }
        self.shown = total;
    }

    /// How many checks concluded, of how many.
    pub(super) fn done(&self) -> (usize, usize) {
        let done = self.slots.iter().filter(|s| s.result.is_some()).count();
        (done, self.slots.len())
    }

    /// The checks running now, longest running first.
    pub(super) fn running(&self) -> Vec<Running> {
        let mut r: Vec<Running> = self
            .running
            .iter()
            .map(|(check, scenario, since)| Running {
                check,
                scenario,
                elapsed: since.elapsed(),
            })
            .collect();
        r.sort_by_key(|r| std::cmp::Reverse(r.elapsed));
        r
    }

    /// The checks that did not conclude (a run stopped early), in catalog order.
    pub(super) fn unfinished(&self) -> Vec<&'static str> {
        self.slots
            .iter()
            .filter(|s| s.result.is_none())
            .map(|s| s.check.id)
            .collect()
    }

    /// The report, in catalog order: every concluded check (all of them,
    /// unless the run stopped early: `stopped` says why).
    pub(super) fn report(
        self,
        config: &RunConfig,
        mode: String,
        duration: Duration,
        stopped: Option<String>,
    ) -> RunReport {
        RunReport {
            implementation: config.implementation.clone(),
            date: self.date,
            mode,
            istioctl_versions: config.families.iter().map(|f| f.label()).collect(),
            results: self.slots.into_iter().filter_map(|s| s.result).collect(),
            duration,
            stopped,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks;

    fn selected(ids: &[&str]) -> Vec<(&'static Check, Option<String>)> {
        ids.iter()
            .map(|id| (checks::find(id).expect("a check"), None))
            .collect()
    }

    /// Results are shown in catalog order, whatever order they conclude in.
    #[test]
    fn shown_in_catalog_order() {
        let sel = selected(&["syncz-union", "type-url-echo", "replica-hang"]);
        let mut tally = Tally::new(&sel, false);
        let shown = std::cell::RefCell::new(Vec::new());
        let mut progress = |p: Progress<'_>| {
            if let Progress::Check { index, result, .. } = p {
                shown.borrow_mut().push((index, result.id.clone()));
            }
        };
        let hang = sel[2].0;
        tally.started(hang, "fault-hang");
        assert_eq!(tally.running().len(), 1);
        tally.record(
            hang,
            "fault-hang",
            Outcome::Pass,
            Duration::ZERO,
            vec![],
            None,
            &mut progress,
        );
        assert!(tally.running().is_empty());
        let echo = sel[1].0;
        tally.record(
            echo,
            "three-replicas",
            Outcome::Pass,
            Duration::ZERO,
            vec![],
            None,
            &mut progress,
        );
        // syncz-union has three scenarios: nothing shown until all are done.
        let union = sel[0].0;
        for s in union.scenarios {
            assert!(shown.borrow().is_empty(), "{shown:?}");
            tally.record(
                union,
                s,
                Outcome::Pass,
                Duration::ZERO,
                vec![],
                None,
                &mut progress,
            );
        }
        assert_eq!(
            *shown.borrow(),
            vec![
                (1, "syncz-union".to_string()),
                (2, "type-url-echo".to_string()),
                (3, "replica-hang".to_string())
            ]
        );
        assert_eq!(tally.done(), (3, 3));
    }

    /// A run that stops early reports what concluded, and names the rest.
    #[test]
    fn a_stopped_run_keeps_what_concluded() {
        let sel = selected(&["syncz-union", "type-url-echo"]);
        let mut tally = Tally::new(&sel, false);
        let shown = std::cell::RefCell::new(Vec::new());
        let mut progress = |p: Progress<'_>| {
            if let Progress::Check { index, result, .. } = p {
                shown.borrow_mut().push((index, result.id.clone()));
            }
        };
        let echo = sel[1].0;
        tally.record(
            echo,
            "three-replicas",
            Outcome::Pass,
            Duration::ZERO,
            vec![],
            None,
            &mut progress,
        );
        assert!(shown.borrow().is_empty());
        tally.show_the_rest(&mut progress);
        assert_eq!(*shown.borrow(), vec![(2, "type-url-echo".to_string())]);
        assert_eq!(tally.unfinished(), vec!["syncz-union"]);
    }
}
