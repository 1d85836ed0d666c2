//! The conformance runner: selects the checks, groups them by scenario, and
//! for each scenario has the topology open a session (the control plane and
//! the proxy under test), runs the checks on it, stops it, and collects a
//! [`RunReport`]. Scenarios run side by side (`--jobs`, see [`schedule`])
//! where the topology allows it. It knows topologies only through [`Topology`].

mod schedule;
mod tally;

use crate::checks::{self, Check};
use crate::config::RunConfig;
use crate::report::{CheckResult, RunReport};
use crate::suite::Capability;
use crate::suite::snapshots::Snapshots;
use crate::topology::{Hooks, OpenError, ProxyError};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::Tally;

pub use crate::suite::CHECK_BOUND;

/// What the runner tells its caller while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    /// What the topology needs the user to know before the run (e.g. how to
    /// configure a proxy at a fixed address), a line each.
    Prepared(&'a [String]),
    /// The run is starting: how many checks, on how many scenarios, how many
    /// of them open at once, and why only one when `--jobs` asked for more.
    Start {
        checks: usize,
        scenarios: usize,
        jobs: usize,
        sequential: Option<&'a str>,
    },
    /// A scenario's replicas and proxy are up.
    Scenario {
        name: &'a str,
        index: usize,
        total: usize,
        replicas: &'a [String],
    },
    /// A check finished (all its scenarios done); in catalog order, `index`
    /// its place there.
    Check {
        index: usize,
        total: usize,
        result: &'a CheckResult,
    },
    /// While checks run (every [`PROGRESS_EVERY`]): how many are done, and
    /// which run now and for how long.
    Running {
        done: usize,
        total: usize,
        running: &'a [Running],
    },
}

/// A check running now.
#[derive(Debug, Clone)]
pub struct Running {
    pub check: &'static str,
    pub scenario: &'static str,
    pub elapsed: Duration,
}

/// How often [`Progress::Running`] is sent.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read snapshots from {path}: {error}")]
    Snapshots {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// The topology cannot run at all (no docker engine, a missing image, a
    /// state folder that cannot be written).
    #[error("{0}")]
    Prepare(ProxyError),
    /// A topology with one live mesh could not open it: no check can run.
    #[error("{0}")]
    Live(OpenError),
    /// The proxy did not come up for the first scenario: every other one
    /// would wait the same timeout in vain, so the run stops at once.
    /// (`error` is part of the message, deliberately not a `source`: `{:#}`
    /// would print it twice, proxy output and all.)
    #[error("the run stopped at its first scenario ({scenario}): {error}")]
    NeverReady { scenario: String, error: OpenError },
    /// Interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

/// A run that ended before every check ran: why, and the report of what
/// ran so far (its `stopped` says why, in words).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Stopped {
    pub error: RunError,
    pub report: Box<RunReport>,
}

impl RunError {
    /// The words a report of the run keeps.
    fn reason(&self, unfinished: &[&str]) -> String {
        let what = match self {
            RunError::Interrupted => "interrupted (Ctrl-C)".to_string(),
            RunError::NeverReady { scenario, .. } => {
                format!("the proxy did not come up for its first scenario ({scenario})")
            }
            e => format!("{e}"),
        };
        if unfinished.is_empty() {
            what
        } else {
            format!("{what}; not finished: {}", unfinished.join(", "))
        }
    }
}

/// The checks a run selects, each with `Some(reason)` when it is skipped on a
/// topology with these capabilities.
pub fn select(
    config: &RunConfig,
    topology: &str,
    capabilities: &[Capability],
) -> Vec<(&'static Check, Option<String>)> {
    checks::catalog()
        .into_iter()
        .filter(|c| config.profiles.is_empty() || config.profiles.contains(&c.profile))
        .filter(|c| config.run_checks.is_empty() || config.run_checks.iter().any(|id| id == c.id))
        .map(|c| {
            let skip = if config.skip_checks.iter().any(|id| id == c.id) {
                Some("skipped by --skip-check".to_string())
            } else if let Some(f) = c
                .features
                .iter()
                .find(|f| !config.supported_features.contains(f))
            {
                Some(format!("requires feature {f}, not in --supported-features"))
            } else if c.features.contains(&checks::Feature::Tls) && config.proxy_plaintext {
                Some("the proxy is tested in plaintext (--proxy-plaintext)".to_string())
            } else {
                c.needs
                    .iter()
                    .find(|n| !capabilities.contains(n))
                    .map(|cap| format!("needs {cap}, which the {topology} topology does not have"))
            };
            (c, skip)
        })
        .collect()
}

/// Scenario -> the checks that run on it, in first-use order. A topology
/// without a scripted mesh has one mesh, the live one: every check runs once
/// on it, under the topology's name. With `side_by_side`, a scenario's
/// checks that run alone ([`Isolation::Alone`](crate::suite::Isolation)) get a
/// session of their own, right after the others': the others then need not
/// wait for them (nor they for the others).
fn group(
    selected: &[(&'static Check, Option<String>)],
    live: Option<&'static str>,
    side_by_side: bool,
) -> Vec<(&'static str, Vec<&'static Check>)> {
    let mut groups: Vec<(&'static str, Vec<&'static Check>)> = Vec::new();
    for (check, _) in selected.iter().filter(|(_, skip)| skip.is_none()) {
        let sessions: &[&'static str] = match &live {
            Some(live) => std::slice::from_ref(live),
            None => check.scenarios,
        };
        for s in sessions {
            match groups.iter_mut().find(|(name, _)| name == s) {
                Some((_, checks)) => checks.push(check),
                None => groups.push((s, vec![check])),
            }
        }
    }
    if !side_by_side || live.is_some() {
        return groups;
    }
    use crate::suite::Isolation;
    let mut split = Vec::with_capacity(groups.len());
    for (scenario, checks) in groups {
        let (alone, others): (Vec<_>, Vec<_>) = checks
            .into_iter()
            .partition(|c| c.isolation == Isolation::Alone);
        for part in [others, alone] {
            if !part.is_empty() {
                split.push((scenario, part));
            }
        }
    }
    // After the first (which alone opens until a proxy has come up), the
    // sessions whose checks cannot run beside each other open first: they
    // run one after the other, the rest fills in around them.
    let first = split.len().min(1);
    split[first..].sort_by_key(|(_, checks)| {
        !checks
            .iter()
            .any(|c| matches!(c.isolation, Isolation::Alone | Isolation::Timed))
    });
    split
}

/// Runs the suite.
pub async fn run(
    config: &RunConfig,
    hooks: &Hooks,
    progress: impl FnMut(Progress<'_>),
) -> Result<RunReport, Stopped> {
    run_until(config, hooks, std::future::pending(), progress).await
}

/// Runs the suite until `interrupt` completes (Ctrl-C): then the checks
/// still running are dropped and the report has what concluded before.
pub async fn run_until(
    config: &RunConfig,
    hooks: &Hooks,
    interrupt: impl Future<Output = ()>,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<RunReport, Stopped> {
    let started = Instant::now();
    let empty = |error: RunError| {
        let reason = error.reason(&[]);
        let report = Tally::new(&[], false).report(
            config,
            config.proxy.name().to_string(),
            started.elapsed(),
            Some(reason),
        );
        Stopped {
            error,
            report: Box::new(report),
        }
    };
    let snapshots = Arc::new(match &config.snapshots {
        Some(dir) => Snapshots::from_dir(dir).map_err(|error| {
            empty(RunError::Snapshots {
                path: dir.clone(),
                error,
            })
        })?,
        None => Snapshots::embedded(),
    });
    let mut topology = config.topology(hooks, snapshots);
    let selected = select(config, topology.name(), topology.capabilities());
    let live = (!topology.scripted()).then(|| topology.name());
    let sequential = topology.sequential();
    let jobs = match sequential {
        Some(_) => 1,
        None => config.jobs.max(1),
    };
    let groups = group(&selected, live, jobs > 1);
    let mut names: Vec<&'static str> = Vec::new();
    for (n, _) in &groups {
        if !names.contains(n) {
            names.push(n);
        }
    }
    tokio::pin!(interrupt);
    let prepared = tokio::select! {
        biased;
        () = &mut interrupt => return Err(empty(RunError::Interrupted)),
        p = topology.prepare(&names) => p,
    };
    let notice = prepared.map_err(|e| empty(RunError::Prepare(e)))?;
    if !notice.is_empty() {
        progress(Progress::Prepared(&notice));
    }
    progress(Progress::Start {
        checks: selected.len(),
        scenarios: names.len(),
        jobs,
        sequential: sequential
            .as_deref()
            .filter(|_| config.jobs > 1 && groups.len() > 1),
    });
    let mut tally = Tally::new(&selected, live.is_some());
    tally.skipped(&selected, &mut progress);
    let outcome = schedule::run_groups(
        &*topology,
        hooks,
        &groups,
        jobs,
        &mut tally,
        &mut progress,
        interrupt,
    )
    .await;
    if !matches!(outcome, Err(RunError::Interrupted)) {
        topology.finish().await;
    }
    let mode = topology.mode();
    match outcome {
        Ok(()) => Ok(tally.report(config, mode, started.elapsed(), None)),
        Err(error) => {
            tally.show_the_rest(&mut progress);
            let reason = error.reason(&tally.unfinished());
            let report = tally.report(config, mode, started.elapsed(), Some(reason));
            Err(Stopped {
                error,
                report: Box::new(report),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Isolation;

    fn selected(ids: &[&str]) -> Vec<(&'static Check, Option<String>)> {
        ids.iter()
            .map(|id| (checks::find(id).expect("a check"), None))
            .collect()
    }

    /// Side by side, a scenario's checks that run alone get their own
    /// session, and sessions that cannot overlap open first (after the first).
    #[test]
    fn grouping_side_by_side() {
        let sel = selected(&[
            "type-url-echo",
            "replica-slow",
            "stream-flood",
            "replica-hang",
        ]);
        let one_by_one = group(&sel, None, false);
        let names: Vec<_> = one_by_one.iter().map(|(s, c)| (*s, c.len())).collect();
        assert_eq!(
            names,
            vec![
                ("three-replicas", 2),
                ("slow-replicas", 1),
                ("fault-hang", 1)
            ]
        );
        let side = group(&sel, None, true);
        let names: Vec<_> = side
            .iter()
            .map(|(s, c)| (*s, c.iter().map(|c| c.id).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("three-replicas", vec!["type-url-echo"]),
                ("three-replicas", vec!["stream-flood"]),
                ("slow-replicas", vec!["replica-slow"]),
                ("fault-hang", vec!["replica-hang"]),
            ]
        );
        assert!(
            side[1].1.iter().all(|c| c.isolation == Isolation::Alone),
            "the alone session holds only alone checks"
        );
        // The live mesh is one session, whatever the checks declare.
        assert_eq!(group(&sel, Some("cluster"), true).len(), 1);
    }
}
