//! The conformance runner: selects the checks, groups them by scenario, and
//! for each scenario has the topology open a session (the control plane and
//! the proxy under test), runs the checks on it, stops it, and collects a
//! [`RunReport`]. It knows topologies only through [`Topology`].

mod tally;

use crate::checks::{self, Check};
use crate::config::RunConfig;
use crate::report::{CheckResult, RunReport};
use crate::suite::snapshots::Snapshots;
use crate::suite::{Capability, Outcome};
use crate::topology::{Hooks, OpenError, ProxyError, Session, Topology};
use std::sync::Arc;
use std::time::Instant;
use tally::Tally;

pub use crate::suite::CHECK_BOUND;

/// What the runner tells its caller while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    /// What the topology needs the user to know before the run (e.g. how to
    /// configure a proxy at a fixed address), a line each.
    Prepared(&'a [String]),
    /// The run is starting: how many checks, on how many scenarios.
    Start { checks: usize, scenarios: usize },
    /// A scenario's replicas and proxy are up.
    Scenario {
        name: &'a str,
        index: usize,
        total: usize,
        replicas: &'a [String],
    },
    /// A check finished (all its scenarios done).
    Check {
        index: usize,
        total: usize,
        result: &'a CheckResult,
    },
}

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
/// on it, under the topology's name.
fn group(
    selected: &[(&'static Check, Option<String>)],
    live: Option<&'static str>,
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
    groups
}

/// Runs the suite.
pub async fn run(
    config: &RunConfig,
    hooks: &Hooks,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let snapshots = Arc::new(match &config.snapshots {
        Some(dir) => Snapshots::from_dir(dir).map_err(|error| RunError::Snapshots {
            path: dir.clone(),
            error,
        })?,
        None => Snapshots::embedded(),
    });
    let mut topology = config.topology(hooks, snapshots);
    let selected = select(config, topology.name(), topology.capabilities());
    let live = (!topology.scripted()).then(|| topology.name());
    let groups = group(&selected, live);
    let names: Vec<&'static str> = groups.iter().map(|(n, _)| *n).collect();
    let notice = topology.prepare(&names).await.map_err(RunError::Prepare)?;
    if !notice.is_empty() {
        progress(Progress::Prepared(&notice));
    }
    progress(Progress::Start {
        checks: selected.len(),
        scenarios: groups.len(),
    });
    let mut tally = Tally::new(&selected, live.is_some());
    tally.skipped(&selected, &mut progress);
    let outcome = run_groups(&*topology, hooks, &groups, &mut tally, &mut progress).await;
    topology.finish().await;
    outcome?;
    Ok(tally.report(config, topology.mode(), started.elapsed()))
}

/// Opens each scenario in turn and runs its checks.
async fn run_groups(
    topology: &dyn Topology,
    hooks: &Hooks,
    groups: &[(&'static str, Vec<&'static Check>)],
    tally: &mut Tally,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), RunError> {
    let mut ever_ready = false;
    for (i, (scenario, checks)) in groups.iter().enumerate() {
        match topology.open(scenario).await {
            Ok(session) => {
                ever_ready = true;
                progress(Progress::Scenario {
                    name: scenario,
                    index: i + 1,
                    total: groups.len(),
                    replicas: &replica_lines(&session),
                });
                if let Some(after_setup) = &hooks.after_setup {
                    after_setup(&session.ctx);
                }
                for check in checks {
                    run_check(&session, check, scenario, tally).await;
                }
                session.stop().await;
            }
            // The live mesh is the only one: nothing else to try.
            Err(e) if !topology.scripted() => return Err(RunError::Live(e)),
            // A proxy that never came up fails the run once, with its output,
            // instead of every scenario after the same timeout (197 s seen).
            Err(error) if !ever_ready && error.is_not_ready() => {
                return Err(RunError::NeverReady {
                    scenario: scenario.to_string(),
                    error,
                });
            }
            // Every check of this scenario fails with the reason.
            Err(e) => tally.failed_to_open(checks, scenario, &e.to_string()),
        }
        tally.scenario_done(checks, progress);
    }
    Ok(())
}

/// One check on one session, bounded by [`CHECK_BOUND`].
async fn run_check(session: &Session, check: &'static Check, scenario: &str, tally: &mut Tally) {
    let ctx = &session.ctx;
    let t0 = Instant::now();
    let before = ctx.proxy_output.as_ref().map(|o| o.len()).unwrap_or(0);
    let outcome = match tokio::time::timeout(CHECK_BOUND, (check.run)(ctx)).await {
        Ok(checked) => Outcome::from(checked),
        Err(_) => Outcome::Fail(format!(
            "the check did not finish within {}s",
            CHECK_BOUND.as_secs()
        )),
    };
    // The proxy's output since the check began, when it failed.
    let output = match (&outcome, &ctx.proxy_output) {
        (Outcome::Fail(_), Some(out)) => {
            Some(out.tail(out.len().saturating_sub(before).clamp(20, 60)))
        }
        _ => None,
    };
    tally.record(
        check,
        scenario,
        outcome,
        t0.elapsed(),
        ctx.take_notes(),
        output,
    );
}

/// The session's replicas as the progress line shows them.
fn replica_lines(session: &Session) -> Vec<String> {
    session
        .ctx
        .replicas()
        .iter()
        .map(|r| match r.plaintext_addr {
            Some(p) => format!("{} {p} (tls {})", r.name, r.tls_addr),
            None => format!("{} (tls {})", r.name, r.tls_addr),
        })
        .collect()
}
