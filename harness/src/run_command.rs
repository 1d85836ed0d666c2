//! `proxy-conformance run` and `proxy-conformance checks`: the CLI edge of the
//! conformance suite (the work is in `runner`, `checks` and `report`).

use crate::checks;
use crate::config::RunConfig;
use crate::report::{junit, terminal, yaml};
use crate::runner::{self, Progress};
use crate::suite::Profile;
use crate::topology::TopologyKind;
use anyhow::Context;
use std::path::Path;

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

    // Ctrl-C: kill proxy processes (remove the run's containers and
    // networks), then leave.
    let docker_run =
        (config.topology == TopologyKind::Docker).then(|| config.docker.run_id.clone());
    if let Some(run) = &docker_run {
        crate::topology::docker::sweep_on_panic(run.clone());
    }
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
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
            std::process::exit(130);
        }
    });

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
    let report = runner::run(&config, &Default::default(), |p| match p {
        Progress::Start { checks, scenarios } => crate::say!(
            "proxy-conformance: {checks} checks on {} against {what}; istioctl {}",
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
        ),
        Progress::Prepared(lines) => {
            for line in lines {
                crate::say!("{line}");
            }
        }
        Progress::Scenario {
            name,
            index,
            total,
            replicas,
        } => {
            crate::say!("-- scenario {index}/{total}: {name}");
            if matches!(config.proxy, crate::config::ProxyMode::Address(_)) {
                for r in replicas {
                    crate::say!("   replica {r}");
                }
            }
        }
        Progress::Check {
            index,
            total,
            result,
        } => crate::say!("{}", terminal::check_line(style, index, total, result)),
    })
    .await?;

    crate::output::text(&terminal::summary(style, &report));
    write_file(&config.report, &yaml::render(&report)?)?;
    crate::say!("YAML report: {}", config.report.display());
    if let Some(path) = &config.junit {
        write_file(path, &junit::render(&report))?;
        crate::say!("JUnit report: {}", path.display());
    }
    Ok(if report.succeeded() { 0 } else { 1 })
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
