//! `proxy-conformance`: conformance bench for istioctl aggregating proxies.
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "proxy-conformance",
    version,
    about = "Conformance bench for istioctl aggregating proxies (istioctl proxy-status against an external control plane)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the conformance suite against a proxy (default: the bundled reference proxy on local fake istiod replicas).
    Run(Box<harness::config::RunArgs>),
    /// List the conformance checks with their profiles, features and scenarios.
    Checks(harness::run_command::ChecksArgs),
    /// Show proxy status exactly as istioctl proxy-status would, through an xDS address.
    Ps(harness::ps::PsArgs),
    /// Real istiod, kube-apiserver and etcd as processes on this machine (built by `bash ci/real-istio-build.sh`): up, walkthrough, down.
    RealIstio(harness::real_istio_command::RealIstioArgs),
    /// Real clusters (kind, k3d, two contexts): the blog's external control plane with real istiod and istioctl.
    Cluster(ClusterCli),
}

#[derive(Debug, clap::Args)]
struct ClusterCli {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    #[command(flatten)]
    Steps(cluster::cli::ClusterCommand),
    /// The conformance suite on the cluster: the real istiod pods as the ground truth, the deployed proxy under test (the same as `run --topology cluster`).
    Run(Box<harness::config::RunArgs>),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => harness::run_command::main(*a).await,
        Command::Checks(a) => harness::run_command::checks(a).await,
        Command::Ps(a) => harness::ps::main(a).await,
        Command::RealIstio(a) => harness::real_istio_command::main(a).await,
        Command::Cluster(ClusterCli {
            command: ClusterCommand::Steps(command),
        }) => cluster::cli::main(cluster::cli::ClusterArgs { command })
            .await
            .map_err(anyhow::Error::from),
        Command::Cluster(ClusterCli {
            command: ClusterCommand::Run(mut a),
        }) => {
            a.topology = Some(harness::topology::TopologyKind::Cluster);
            harness::run_command::main(*a).await
        }
    };
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
