//! `proxy-conformance run` and `proxy-conformance checks`: the CLI edge of the
//! conformance suite (the work is in `runner`, `checks` and `report`).

use crate::checks;
use crate::config::RunConfig;
use crate::report::live::LiveLine;
use crate::report::{RunReport, junit, terminal, yaml};
use crate::runner::{self, Progress, RunError};
use crate::suite::Profile;
use crate::topology::TopologyKind;
use anyhow::Context;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

pub use crate::config::RunArgs;

/// Arguments of `proxy-conformance checks`.
#[derive(Debug, clap::Args)]
pub struct ChecksArgs {
    /// Print as Markdown (the README's catalog is generated this way).
    #[arg(long)]
    pub markdown: bool,
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub async fn main(args: RunArgs) -> anyhow::Result<i32> {
    let ids: Vec<&str> = checks::catalog().iter().map(|c| c.id).collect();
    let config = RunConfig::resolve(&args, &ids)?;
    let style = terminal::Style::detect();

    // A proxy command that daemonizes leaves its process group and its
    // parent: as a subreaper we still find (and reap) it. Only here, in the
    // binary: it is process-wide (see runner::process).
    if matches!(config.proxy, crate::config::ProxyMode::Command(_))
        && let Err(e) = crate::topology::process::become_subreaper()
    {
        eprintln!(
            "warning: cannot become a child subreaper ({e}): a proxy that daemonizes may be left running"
        );
    }

    // Ctrl-C: the runner stops (the reports get what concluded before),
    // proxy processes are killed (the run's containers and networks
    // removed), and the run leaves once its reports are written.
    let docker_run =
        (config.topology == TopologyKind::Docker).then(|| config.docker.run_id.clone());
    if let Some(run) = &docker_run {
        crate::topology::docker::sweep_on_panic(run.clone());
    }
    let (interrupted_tx, mut interrupted) = tokio::sync::watch::channel(false);
    let (cleaned_tx, cleaned) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            // First the runner: nothing that fails because its proxy is
            // killed below counts.
            let _ = interrupted_tx.send(true);
            crate::topology::process::kill_all();
            if let Some(run) = docker_run {
                let swept = match crate::topology::docker::engine::Engine::connect().await {
                    Ok(engine) => engine.sweep(&run).await,
                    Err(e) => Err(e),
                };
                match swept {
                    Ok((c, n)) => eprintln!(
                        "\ninterrupted: {c} containers and {n} networks of run {run} removed"
                    ),
                    Err(e) => eprintln!(
                        "\ninterrupted: cannot remove the run's containers ({e}); remove them with: docker rm -f $(docker ps -aq --filter label={}={run}); docker network prune --filter label={}={run}",
                        crate::topology::docker::engine::RUN_LABEL,
                        crate::topology::docker::engine::RUN_LABEL
                    ),
                }
            } else {
                eprintln!("\ninterrupted: proxy processes stopped");
            }
            let _ = cleaned_tx.send(());
            // The reports are written on the main task; leave without them
            // if that takes longer than this (or at a second Ctrl-C).
            let _ = tokio::time::timeout(REPORTS_ON_INTERRUPT, tokio::signal::ctrl_c()).await;
            std::process::exit(130);
        }
    });
    let interrupt = async move {
        let _ = interrupted.wait_for(|i| *i).await;
    };

    let cluster = &config.cluster;
    let what = match (config.topology, &config.proxy) {
        (TopologyKind::Cluster, crate::config::ProxyMode::Address(a)) => {
            format!("the proxy at {a}")
        }
        (TopologyKind::Cluster, _) => match &cluster.live.proxy_service {
            Some((svc, port)) => format!(
                "the proxy deployed as Service {}/{svc}:{port} (context {})",
                cluster.live.namespace, cluster.external_context
            ),
            None => "the deployed proxy".to_string(),
        },
        (_, crate::config::ProxyMode::Bundled) => {
            "the bundled reference istioctl-proxy".to_string()
        }
        (_, crate::config::ProxyMode::Command(c)) => format!("`{c}`"),
        (_, crate::config::ProxyMode::Address(a)) => format!("the proxy at {a}"),
        (_, crate::config::ProxyMode::Image(i)) => format!("the proxy image {i}"),
    };
    let mesh = match config.topology {
        TopologyKind::Local => "scenarios".to_string(),
        TopologyKind::Docker => format!(
            "scenarios as containers (replica image {})",
            config.docker.replicas.replica_image
        ),
        TopologyKind::Cluster => format!(
            "the live mesh of istiod in {} (contexts {} and {})",
            cluster.live.namespace, cluster.external_context, cluster.remote_context
        ),
        TopologyKind::RealIstio => format!(
            "the live mesh of {} real istiod replicas (processes on loopback)",
            config.real_istio.replicas
        ),
    };
    let mut live = LiveLine::new(std::io::stdout().is_terminal());
    // Scenario lines only when scenarios open one at a time: side by side,
    // they would say little between checks shown in catalog order.
    let mut one_at_a_time = true;
    let outcome = runner::run_until(&config, &Default::default(), interrupt, |p| match p {
        Progress::Start {
            checks,
            scenarios,
            jobs,
            sequential,
        } => {
            one_at_a_time = jobs <= 1;
            let side_by_side = if jobs > 1 && scenarios > 1 {
                format!(", up to {} at once", jobs.min(scenarios))
            } else {
                String::new()
            };
            live.print(&format!(
                "proxy-conformance: {checks} checks on {}{side_by_side} against {what}; istioctl {}\n",
                if !matches!(
                    config.topology,
                    TopologyKind::Cluster | TopologyKind::RealIstio
                ) {
                    format!("{scenarios} {mesh}")
                } else {
                    mesh.clone()
                },
                config
                    .families
                    .iter()
                    .map(|f| f.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Some(why) = sequential {
                live.print(&format!("scenarios run one at a time: {why}\n"));
            }
        }
        Progress::Prepared(lines) => {
            for line in lines {
                live.print(&format!("{line}\n"));
            }
        }
        Progress::Scenario {
            name,
            index,
            total,
            replicas,
        } => {
            if one_at_a_time {
                live.print(&format!("-- scenario {index}/{total}: {name}\n"));
            }
            if matches!(config.proxy, crate::config::ProxyMode::Address(_)) {
                for r in replicas {
                    live.print(&format!("   replica {r}\n"));
                }
            }
        }
        Progress::Check {
            index,
            total,
            result,
        } => live.print(&format!(
            "{}\n",
            terminal::check_line(style, index, total, result)
        )),
        Progress::Running {
            done,
            total,
            running,
        } => live.running(done, total, running),
    })
    .await;
    // Also a run that stopped early has its reports, of what concluded.
    let (report, error) = match outcome {
        Ok(report) => (report, None),
        Err(runner::Stopped { error, report }) => (*report, Some(error)),
    };
    let written = write_reports(&config, style, &report);
    match error {
        None => {
            written?;
            Ok(if report.succeeded() { 0 } else { 1 })
        }
        Some(RunError::Interrupted) => {
            // Not before the processes and containers are gone.
            let _ = cleaned.await;
            written?;
            Ok(130)
        }
        Some(error) => {
            if let Err(e) = written {
                eprintln!("Error: {e:#}");
            }
            Err(error.into())
        }
    }
}

/// Longest the reports may take after Ctrl-C before the run leaves without them.
const REPORTS_ON_INTERRUPT: Duration = Duration::from_secs(10);

/// The summary, then the YAML and JUnit reports.
fn write_reports(
    config: &RunConfig,
    style: terminal::Style,
    report: &RunReport,
) -> anyhow::Result<()> {
    crate::output::text(&terminal::summary(style, report));
    write_file(&config.report, &yaml::render(report)?)?;
    crate::say!("YAML report: {}", config.report.display());
    if let Some(path) = &config.junit {
        write_file(path, &junit::render(report))?;
        crate::say!("JUnit report: {}", path.display());
    }
    Ok(())
}

/// The check catalog as text or Markdown.
pub fn catalog_text(markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        out.push_str("| check | profile | what it proves | needs feature | needs topology | scenarios |\n|---|---|---|---|---|---|\n");
    }
    let list = |names: Vec<&str>| {
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    };
    for profile in Profile::ALL {
        if !markdown {
            out.push_str(&format!("{profile}:\n"));
        }
        for c in checks::catalog()
            .into_iter()
            .filter(|c| c.profile == profile)
        {
            let features = list(c.features.iter().map(|f| f.name()).collect());
            let needs = list(c.needs.iter().map(|n| n.name()).collect());
            if markdown {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} | {} |\n",
                    c.id,
                    profile,
                    c.description,
                    features,
                    needs,
                    c.scenarios.join(", ")
                ));
            } else {
                out.push_str(&format!("  {:<25} {}\n", c.id, c.description));
                let mut meta = format!("  {:<25} scenarios: {}", "", c.scenarios.join(", "));
                if !c.features.is_empty() {
                    meta.push_str(&format!("; needs feature: {features}"));
                }
                if !c.needs.is_empty() {
                    meta.push_str(&format!("; needs topology: {needs}"));
                }
                out.push_str(&meta);
                out.push('\n');
            }
        }
    }
    out
}

pub async fn checks(args: ChecksArgs) -> anyhow::Result<i32> {
    crate::output::text(&catalog_text(args.markdown));
    Ok(0)
}
