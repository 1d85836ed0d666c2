//! Scenarios side by side: up to `jobs` sessions open at once, each running
//! its own checks in catalog order. What a check declares ([`Isolation`])
//! decides what may run beside it: an `Alone` check (memory measured, the
//! machine loaded on purpose) runs while no other `Alone` or `Timed` check
//! runs and no scenario starts or stops; `Shared` checks run beside anything.
//! This is a read-write lock over the machine: `Timed` checks and every open
//! and stop hold it shared, an `Alone` check exclusively (the lock is fair:
//! once an `Alone` check waits, what asks after it waits too).

use super::tally::Tally;
use super::{CHECK_BOUND, PROGRESS_EVERY, Progress, RunError};
use crate::checks::Check;
use crate::suite::{Isolation, Outcome};
use crate::topology::{Hooks, OpenError, Session, Topology};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{RwLock, mpsc};

/// What a scenario's task reports to the runner.
enum Event<'a> {
    Opened {
        scenario: &'static str,
        index: usize,
        total: usize,
        replicas: Vec<String>,
    },
    OpenFailed {
        scenario: &'static str,
        checks: &'a [&'static Check],
        error: OpenError,
    },
    Started {
        check: &'static Check,
        scenario: &'static str,
    },
    Finished {
        check: &'static Check,
        scenario: &'static str,
        outcome: Outcome,
        time: Duration,
        notes: Vec<String>,
        output: Option<String>,
    },
}

/// What every scenario's task shares.
struct Shared<'a> {
    topology: &'a dyn Topology,
    hooks: &'a Hooks,
    machine: RwLock<()>,
    /// Set when the run stops early: no further check starts.
    halt: AtomicBool,
    events: mpsc::UnboundedSender<Event<'a>>,
}

/// Opens the scenarios, at most `jobs` at once, in order, and runs their
/// checks; returns early (`Err`) when the run cannot go on or `interrupt`
/// completes.
pub(super) async fn run_groups<'a>(
    topology: &'a dyn Topology,
    hooks: &'a Hooks,
    groups: &'a [(&'static str, Vec<&'static Check>)],
    jobs: usize,
    tally: &mut Tally,
    progress: &mut dyn FnMut(Progress<'_>),
    interrupt: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (events, mut rx) = mpsc::unbounded_channel();
    let shared = Shared {
        topology,
        hooks,
        machine: RwLock::new(()),
        halt: AtomicBool::new(false),
        events,
    };
    let total = groups.len();
    let mut next = groups.iter().enumerate();
    let mut open = FuturesUnordered::new();
    let mut ever_ready = false;
    let mut stopped: Option<RunError> = None;
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(interrupt);
    loop {
        // One scenario until a proxy has come up: a proxy that never does
        // stops the run at its first scenario, started once.
        let limit = if ever_ready { jobs } else { 1 };
        while stopped.is_none() && open.len() < limit {
            let Some((i, (scenario, checks))) = next.next() else {
                break;
            };
            open.push(run_group(&shared, i + 1, total, scenario, checks));
        }
        if open.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = &mut interrupt => {
                shared.halt.store(true, Ordering::SeqCst);
                return Err(RunError::Interrupted);
            }
            Some(event) = rx.recv() => {
                let fatal = handle(event, topology, &mut ever_ready, tally, progress);
                if let Some(e) = fatal
                    && stopped.is_none()
                {
                    shared.halt.store(true, Ordering::SeqCst);
                    stopped = Some(e);
                }
            }
            Some(()) = open.next() => {}
            _ = tick.tick() => {
                let (done, total) = tally.done();
                progress(Progress::Running { done, total, running: &tally.running() });
            }
        }
    }
    // What the last tasks sent before they ended.
    while let Ok(event) = rx.try_recv() {
        if let Some(e) = handle(event, topology, &mut ever_ready, tally, progress)
            && stopped.is_none()
        {
            stopped = Some(e);
        }
    }
    match stopped {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Takes one event in; `Some` when the run cannot go on.
fn handle(
    event: Event<'_>,
    topology: &dyn Topology,
    ever_ready: &mut bool,
    tally: &mut Tally,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Option<RunError> {
    match event {
        Event::Opened {
            scenario,
            index,
            total,
            replicas,
        } => {
            *ever_ready = true;
            progress(Progress::Scenario {
                name: scenario,
                index,
                total,
                replicas: &replicas,
            });
        }
        // The live mesh is the only one: nothing else to try.
        Event::OpenFailed { error, .. } if !topology.scripted() => {
            return Some(RunError::Live(error));
        }
        // A proxy that never came up fails the run once, with its output,
        // instead of every scenario after the same timeout (197 s seen).
        Event::OpenFailed {
            scenario, error, ..
        } if !*ever_ready && error.is_not_ready() => {
            return Some(RunError::NeverReady {
                scenario: scenario.to_string(),
                error,
            });
        }
        // Every check of this scenario fails with the reason.
        Event::OpenFailed {
            scenario,
            checks,
            error,
        } => tally.failed_to_open(checks, scenario, &error.to_string(), progress),
        Event::Started { check, scenario } => tally.started(check, scenario),
        Event::Finished {
            check,
            scenario,
            outcome,
            time,
            notes,
            output,
        } => tally.record(check, scenario, outcome, time, notes, output, progress),
    }
    None
}

/// One scenario: opens it, runs its checks in order, stops it.
async fn run_group<'a>(
    shared: &Shared<'a>,
    index: usize,
    total: usize,
    scenario: &'static str,
    checks: &'a [&'static Check],
) {
    let send = |e: Event<'a>| {
        // The runner only goes before the tasks when the run was interrupted.
        let _ = shared.events.send(e);
    };
    let opened = {
        let _machine = shared.machine.read().await;
        if shared.halt.load(Ordering::SeqCst) {
            return;
        }
        shared.topology.open(scenario).await
    };
    let session = match opened {
        Ok(session) => session,
        Err(error) => {
            return send(Event::OpenFailed {
                scenario,
                checks,
                error,
            });
        }
    };
    send(Event::Opened {
        scenario,
        index,
        total,
        replicas: replica_lines(&session),
    });
    if let Some(after_setup) = &shared.hooks.after_setup {
        after_setup(&session.ctx);
    }
    for check in checks {
        let (mut beside, mut alone) = (None, None);
        match check.isolation {
            Isolation::Shared => {}
            Isolation::Timed => beside = Some(shared.machine.read().await),
            Isolation::Alone => alone = Some(shared.machine.write().await),
        }
        if shared.halt.load(Ordering::SeqCst) {
            break;
        }
        send(Event::Started { check, scenario });
        send(run_check(&session, check, scenario).await);
        drop((beside, alone));
    }
    let _machine = shared.machine.read().await;
    session.stop().await;
}

/// One check on one session, bounded by [`CHECK_BOUND`].
async fn run_check(
    session: &Session,
    check: &'static Check,
    scenario: &'static str,
) -> Event<'static> {
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
    Event::Finished {
        check,
        scenario,
        outcome,
        time: t0.elapsed(),
        notes: ctx.take_notes(),
        output,
    }
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
