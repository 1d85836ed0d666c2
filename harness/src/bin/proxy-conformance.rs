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
    Run(harness::runner::options::RunArgs),
    /// List the conformance checks with their profiles, features and scenarios.
    Checks(harness::run::ChecksArgs),
    /// Show proxy status exactly as istioctl proxy-status would, through an xDS address.
    Ps(harness::ps::PsArgs),
    /// Real clusters (kind, k3d, two contexts): the blog's external control plane with real istiod and istioctl.
    Cluster(cluster::cli::ClusterArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => harness::run::main(a).await,
        Command::Checks(a) => harness::run::checks(a).await,
        Command::Ps(a) => harness::ps::main(a).await,
        Command::Cluster(a) => cluster::cli::main(a).await.map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
