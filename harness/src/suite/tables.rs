//! How the runner renders an answer for a snapshot view (a thin layer over `render`).

use super::snapshots::View;
use crate::render::{self, OutputFormat, RenderError, RenderOptions};
use proto::IstioctlFamily;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use std::time::SystemTime;

/// What `istioctl proxy-status` of `family` prints for this one answer, with
/// ages computed at `now` (the scenario's load time makes them exactly the
/// scenario's ages, so tables are the same on every run).
pub fn render_view(
    family: IstioctlFamily,
    view: View,
    resp: &DiscoveryResponse,
    now: SystemTime,
) -> Result<String, RenderError> {
    let mut opts = RenderOptions::at(now);
    match view {
        View::Table => {}
        View::Verbose => opts.verbosity = 1,
        View::Json => opts.output = OutputFormat::Json,
    }
    render::render_responses(family, std::slice::from_ref(resp), &opts)
}
