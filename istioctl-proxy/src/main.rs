//! `istioctl-proxy`: see `istioctl-proxy --help` and the crate README.
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = istioctl_proxy::cli::Args::parse();
    match istioctl_proxy::cli::run(args, |_| Ok(())).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            istioctl_proxy::cli::report_exit_error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
