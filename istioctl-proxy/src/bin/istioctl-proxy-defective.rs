//! `istioctl-proxy-defective`: the reference proxy with deliberate defects, for
//! the conformance suite's "teeth" test. Same CLI as `istioctl-proxy`; defects
//! come from `ISTIOCTL_PROXY_DEFECTS=a,b,...` (kebab-case names, e.g.
//! `no-dedupe,cap-4-mib`). Built only with the `test-defects` feature.
use clap::Parser;
use istioctl_proxy::Defect;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = istioctl_proxy::cli::Args::parse();
    let result = istioctl_proxy::cli::run(args, |config| {
        let list = std::env::var("ISTIOCTL_PROXY_DEFECTS").unwrap_or_default();
        config.defects = Defect::parse_list(&list).map_err(anyhow::Error::msg)?;
        tracing::warn!(defects = %list, "DEFECTIVE istioctl-proxy: for conformance tests only");
        Ok(())
    })
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            istioctl_proxy::cli::report_exit_error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
