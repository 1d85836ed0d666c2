//! How the runner renders an answer for a snapshot view (a thin layer over `render`).

use crate::render::{self, OutputFormat, RenderError, RenderOptions};
use crate::runner::snapshots::View;
use proto::IstioctlFamily;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use std::time::SystemTime;

/// What `istioctl proxy-status` of `family` prints for this one answer (ages are
/// computed from now and redacted by the comparison).
pub fn render_view(
    family: IstioctlFamily,
    view: View,
    resp: &DiscoveryResponse,
) -> Result<String, RenderError> {
    let mut opts = RenderOptions::at(SystemTime::now());
    match view {
        View::Table => {}
        View::Verbose => opts.verbosity = 1,
        View::Json => opts.output = OutputFormat::Json,
    }
    render::render_responses(family, std::slice::from_ref(resp), &opts)
}
