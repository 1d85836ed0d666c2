//! The conformance runner: selects checks, groups them by scenario, and for each
//! scenario starts fake istiod replicas and the proxy under test, runs the
//! checks, stops everything, and collects a [`RunReport`].

pub mod context;
pub mod memory;
pub mod options;
pub mod process;
pub mod proxy;
pub mod snapshots;
pub mod tables;

use crate::checks::{self, Check, Outcome};
use crate::report::{CheckResult, RunReport};
use crate::topology::TopologyKind;
use fake_istiod::scenario::Scenario;
use options::RunConfig;
use snapshots::Snapshots;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a single check may take on one scenario (istioctl's 30 s timeout
/// plus room): past it the check fails instead of hanging the run.
pub const CHECK_BOUND: Duration = Duration::from_secs(60);

/// What the runner tells its caller while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The run is starting: how many checks, on how many scenarios.
    Start { checks: usize, scenarios: usize },
    /// With --proxy-addr: what the running proxy must be configured with.
    Fixed(&'a proxy::FixedSetup),
    /// A scenario's replicas and proxy are being started.
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
    #[error("scenario {name}: {message}")]
    Scenario { name: String, message: String },
    #[error("cannot read snapshots from {path}: {error}")]
    Snapshots {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// The proxy did not come up for the first scenario: every other one
    /// would wait the same timeout in vain, so the run stops at once.
    /// (`error` is part of the message, deliberately not a `source`: `{:#}`
    /// would print it twice, proxy output and all.)
    /// The cluster topology could not be reached: no check can run.
    #[error("{0}")]
    Cluster(proxy::ProxyError),
    /// The docker topology cannot run at all (no engine).
    #[error("{0}")]
    Docker(crate::topology::docker::DockerError),
    #[error("the run stopped at its first scenario ({scenario}): {error}")]
    NeverReady {
        scenario: String,
        error: proxy::ProxyError,
    },
}

/// Loads a scenario by name from the folder, or the embedded copies.
pub fn load_scenario(config: &RunConfig, name: &str) -> Result<Scenario, RunError> {
    let err = |message: String| RunError::Scenario {
        name: name.to_string(),
        message,
    };
    match &config.scenarios {
        Some(dir) => {
            let path = dir.join(format!("{name}.yaml"));
            Scenario::load(&path).map_err(|e| err(e.to_string()))
        }
        None => {
            let (_, text) = snapshots::EMBEDDED_SCENARIOS
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| err("not among the embedded scenarios".to_string()))?;
            Scenario::parse(text, &format!("scenarios/{name}.yaml")).map_err(|e| err(e.to_string()))
        }
    }
}

/// The checks a run selects, each with `Some(reason)` when it is skipped.
pub fn select(config: &RunConfig) -> Vec<(&'static Check, Option<String>)> {
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
                    .find(|n| !config.topology.capabilities().contains(n))
                    .map(|cap| {
                        format!(
                            "needs {cap}, which the {} topology does not have",
                            config.topology
                        )
                    })
            };
            (c, skip)
        })
        .collect()
}

/// Runs the suite.
pub async fn run(
    config: &RunConfig,
    hooks: &proxy::Hooks,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let snapshots = Arc::new(match &config.snapshots {
        Some(dir) => Snapshots::from_dir(dir).map_err(|error| RunError::Snapshots {
            path: dir.clone(),
            error,
        })?,
        None => Snapshots::embedded(),
    });

    let selected = select(config);
    // A topology without a scripted mesh has one mesh, the live one: every
    // check runs once on it, under the topology's name.
    let scripted = config
        .topology
        .capabilities()
        .contains(&crate::topology::Capability::ScriptedMesh);
    let live = [config.topology.name()];
    // Scenario -> the checks that run on it, in first-use order.
    let mut order: Vec<&'static str> = Vec::new();
    let mut by_scenario: BTreeMap<&'static str, Vec<&'static Check>> = BTreeMap::new();
    for (check, skip) in &selected {
        if skip.is_some() {
            continue;
        }
        let sessions: &[&'static str] = if scripted { check.scenarios } else { &live };
        for s in sessions {
            if !order.contains(s) {
                order.push(s);
            }
            by_scenario.entry(s).or_default().push(check);
        }
    }
    // A running proxy is configured once: every scenario gets the same replica addresses.
    let mut hooks = hooks.clone();
    if scripted && matches!(config.proxy, options::ProxyMode::Address(_)) {
        let mut most = 0;
        for name in &order {
            if let Ok(s) = load_scenario(config, name) {
                most = most.max(s.replicas.len());
            }
        }
        hooks.pad_replicas_to = Some(most);
        let fixed = proxy::prepare_fixed(config, most).await?;
        progress(Progress::Fixed(&fixed));
    }
    let hooks = &hooks;
    progress(Progress::Start {
        checks: selected.len(),
        scenarios: order.len(),
    });

    // Per check: problems by scenario, time spent, scenarios left.
    struct Acc {
        problems: Vec<String>,
        skips: Vec<String>,
        time: Duration,
        left: usize,
        output: Option<String>,
        notes: Vec<String>,
    }
    let mut acc: BTreeMap<&str, Acc> = selected
        .iter()
        .map(|(c, _)| {
            (
                c.id,
                Acc {
                    problems: vec![],
                    skips: vec![],
                    time: Duration::ZERO,
                    left: if scripted { c.scenarios.len() } else { 1 },
                    output: None,
                    notes: vec![],
                },
            )
        })
        .collect();
    let mut results: Vec<CheckResult> = Vec::new();
    let total = selected.len();
    let emit = |check: &Check,
                outcome: Outcome,
                time: Duration,
                output: Option<String>,
                notes: Vec<String>,
                results: &mut Vec<CheckResult>,
                progress: &mut dyn FnMut(Progress<'_>)| {
        results.push(CheckResult {
            id: check.id.to_string(),
            profile: check.profile,
            description: check.description.to_string(),
            outcome,
            duration: time,
            proxy_output: output,
            notes,
        });
        if let Some(result) = results.last() {
            progress(Progress::Check {
                index: results.len(),
                total,
                result,
            });
        }
    };
    for (check, skip) in &selected {
        if let Some(why) = skip {
            emit(
                check,
                Outcome::Skip(why.clone()),
                Duration::ZERO,
                None,
                vec![],
                &mut results,
                &mut progress,
            );
        }
    }

    // The docker topology's engine, once for the run.
    let engine = match config.topology {
        TopologyKind::Docker if !order.is_empty() => {
            use crate::topology::docker::{BUILD_PROXY_IMAGE, BUILD_REPLICA_IMAGE, engine::Engine};
            let engine = Engine::connect().await.map_err(RunError::Docker)?;
            // Both images, once: a missing one stops the run at once.
            engine
                .require_image(&config.docker.replicas.replica_image, BUILD_REPLICA_IMAGE)
                .await
                .map_err(RunError::Docker)?;
            if let options::ProxyMode::Image(image) = &config.proxy {
                engine
                    .require_image(image, BUILD_PROXY_IMAGE)
                    .await
                    .map_err(RunError::Docker)?;
            }
            Some(engine)
        }
        _ => None,
    };

    // Whether the proxy has come up for any scenario yet.
    let mut ever_ready = false;
    for (i, scenario_name) in order.iter().enumerate() {
        let checks_here = by_scenario.get(scenario_name).cloned().unwrap_or_default();
        let setup = match config.topology {
            TopologyKind::Cluster => {
                proxy::Bench::connect_cluster(config, hooks, snapshots.clone()).await
            }
            TopologyKind::Docker => match (load_scenario(config, scenario_name), &engine) {
                (Ok(scenario), Some(engine)) => {
                    proxy::Bench::start_docker(
                        config,
                        engine.clone(),
                        &config.docker.run_id,
                        scenario_name,
                        scenario,
                        snapshots.clone(),
                    )
                    .await
                }
                (Ok(_), None) => Err(proxy::ProxyError::Setup("no docker engine".to_string())),
                (Err(RunError::Scenario { message, .. }), _) => {
                    Err(proxy::ProxyError::Setup(message))
                }
                (Err(e), _) => Err(proxy::ProxyError::Setup(e.to_string())),
            },
            TopologyKind::Local => match load_scenario(config, scenario_name) {
                Ok(scenario) => {
                    proxy::Bench::start(config, hooks, scenario_name, scenario, snapshots.clone())
                        .await
                }
                // The scenario is named where the failure is reported.
                Err(RunError::Scenario { message, .. }) => Err(proxy::ProxyError::Setup(message)),
                Err(e) => Err(proxy::ProxyError::Setup(e.to_string())),
            },
        };
        let bench = match setup {
            Ok(b) => {
                ever_ready = true;
                Some(b)
            }
            // A proxy that never came up fails the run once, with its output,
            // instead of every scenario after the same timeout (197 s seen).
            // The live mesh is the only one: nothing else to try.
            Err(e) if config.topology == TopologyKind::Cluster => {
                return Err(RunError::Cluster(e));
            }
            Err(e) if !ever_ready && e.is_not_ready() => {
                return Err(RunError::NeverReady {
                    scenario: scenario_name.to_string(),
                    error: e,
                });
            }
            Err(e) => {
                // Every check of this scenario fails with the reason.
                for c in &checks_here {
                    if let Some(a) = acc.get_mut(c.id) {
                        a.problems.push(format!("scenario {scenario_name}: {e}"));
                    }
                }
                None
            }
        };
        if let Some(bench) = bench {
            let names: Vec<String> = bench
                .ctx
                .replicas()
                .iter()
                .map(|r| match r.plaintext_addr {
                    Some(p) => format!("{} {p} (tls {})", r.name, r.tls_addr),
                    None => format!("{} (tls {})", r.name, r.tls_addr),
                })
                .collect();
            progress(Progress::Scenario {
                name: scenario_name,
                index: i + 1,
                total: order.len(),
                replicas: &names,
            });
            if let Some(after_setup) = &hooks.after_setup {
                after_setup(&bench.ctx);
            }
            for c in &checks_here {
                let t0 = Instant::now();
                let before = bench
                    .ctx
                    .proxy_output
                    .as_ref()
                    .map(|o| o.len())
                    .unwrap_or(0);
                let outcome = match tokio::time::timeout(CHECK_BOUND, (c.run)(&bench.ctx)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Fail(format!(
                        "the check did not finish within {}s",
                        CHECK_BOUND.as_secs()
                    )),
                };
                let notes = bench.ctx.take_notes();
                if let Some(a) = acc.get_mut(c.id) {
                    a.time += t0.elapsed();
                    a.notes
                        .extend(notes.iter().map(|n| prefix(c, scenario_name, n)));
                    match outcome {
                        Outcome::Pass => {}
                        Outcome::Fail(why) => {
                            a.problems.push(prefix(c, scenario_name, &why));
                            if let Some(out) = &bench.ctx.proxy_output {
                                let new = out.len().saturating_sub(before).clamp(20, 60);
                                a.output = Some(out.tail(new));
                            }
                        }
                        Outcome::Skip(why) => a.skips.push(prefix(c, scenario_name, &why)),
                    }
                }
            }
            bench.stop().await;
        }
        for c in &checks_here {
            let Some(a) = acc.get_mut(c.id) else { continue };
            a.left = a.left.saturating_sub(1);
            if a.left == 0 {
                let outcome = if !a.problems.is_empty() {
                    Outcome::Fail(a.problems.join("\n"))
                } else if !a.skips.is_empty() {
                    Outcome::Skip(a.skips.join("\n"))
                } else {
                    Outcome::Pass
                };
                let output = a.output.take();
                let notes = std::mem::take(&mut a.notes);
                emit(
                    c,
                    outcome,
                    a.time,
                    output,
                    notes,
                    &mut results,
                    &mut progress,
                );
            }
        }
    }

    // Anything of this run's still on the engine (a scenario that failed
    // half-way) goes now.
    if let Some(engine) = &engine {
        match engine.sweep(&config.docker.run_id).await {
            Ok((0, 0)) => {}
            Ok((c, n)) => tracing::warn!(
                containers = c,
                networks = n,
                "removed what the run left behind"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot sweep the run's containers"),
        }
    }

    // Report order = catalog order.
    let position = |id: &str| checks::catalog().iter().position(|c| c.id == id);
    results.sort_by_key(|r| position(&r.id));
    Ok(RunReport {
        implementation: config.implementation.clone(),
        date,
        mode: match (config.topology, &config.proxy) {
            (TopologyKind::Local, p) => p.name().to_string(),
            (TopologyKind::Docker, p) => format!("docker {}", p.name()),
            (TopologyKind::Cluster, options::ProxyMode::Address(_)) => "cluster address".into(),
            (TopologyKind::Cluster, _) => "cluster service".into(),
        },
        istioctl_versions: config.families.iter().map(|f| f.label()).collect(),
        results,
        duration: started.elapsed(),
    })
}

/// Prefixes a multi-scenario check's reason with the scenario.
fn prefix(check: &Check, scenario: &str, why: &str) -> String {
    if check.scenarios.len() > 1 {
        format!("[{scenario}] {why}")
    } else {
        why.to_string()
    }
}
