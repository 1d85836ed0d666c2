//! The ordered steps of `cluster up` / `walkthrough` / `down`, as data: every
//! command with its argv and env, every file and manifest, every wait with its
//! bound. `cluster plan` prints it; the executor runs it.
//!
//! [`Plan::build`] is the list of phases, in order; each phase is a function
//! named after it:
//! - `clusters`: create the clusters, MetalLB, delete them, export their logs;
//! - `install`: istioctl, the shared CA, and the install guide up to the external istiod;
//! - `workloads`: the sample application, the gateways, the split across istiod replicas;
//! - `proxy`: the blog: the proxy deployed, port-forwarded, `istioctl proxy-status`.
//!
//! The data: `options` (what the plan is built from), `step` (a step and its
//! action); `builder` pushes steps; `display` prints the plan.
mod builder;
mod clusters;
mod display;
mod install;
mod options;
mod proxy;
mod step;
mod workloads;

pub use options::{PlanOptions, ProxyChoice, REFERENCE_IMAGE};
pub use step::{Action, ApplySource, Lookup, Step, Until};

use crate::istio::Switches;
use crate::manifests::{Manifest, ManifestError};
use builder::Builder;

#[derive(Debug, Clone)]
pub struct Plan {
    pub options: PlanOptions,
    pub switches: Switches,
    pub up: Vec<Step>,
    pub walkthrough: Vec<Step>,
    pub down: Vec<Step>,
    /// What to do with the logs when a step fails.
    pub on_failure: Vec<Step>,
}

/// The blog's section that prints the table.
pub const PROXY_STATUS_PHASE: &str = "Run the istioctl proxy-status command";

impl Plan {
    pub fn build(o: &PlanOptions) -> Result<Plan, ManifestError> {
        let sw = o.istio.switches();
        let mut b = Builder::new(o);

        if o.provider.creates_clusters() {
            clusters::create_clusters(&mut b, &sw)?;
            clusters::load_balancer_support(&mut b)?;
        }
        install::download_istioctl(&mut b);
        install::plant_shared_ca(&mut b)?;
        install::external_gateway(&mut b)?;
        install::remote_config_cluster(&mut b)?;
        install::external_control_plane(&mut b)?;
        workloads::sample_application(&mut b)?;
        workloads::enable_gateways(&mut b)?;
        workloads::measure_sharding(&mut b);
        proxy::deploy_proxy(&mut b)?;
        let up = b.take();

        proxy::port_forward_proxy(&mut b);
        proxy::proxy_status(&mut b, &sw);
        let walkthrough = b.take();

        clusters::delete_clusters(&mut b);
        let down = b.take();

        clusters::export_logs(&mut b);
        let on_failure = b.take();

        Ok(Plan {
            options: o.clone(),
            switches: sw,
            up,
            walkthrough,
            down,
            on_failure,
        })
    }

    /// Every manifest this plan renders itself (for validation and `--write-manifests`).
    pub fn rendered_manifests(&self) -> Vec<&Manifest> {
        self.all_steps()
            .filter_map(|s| match &s.action {
                Action::WriteFile { manifest, .. } => Some(manifest),
                Action::Apply {
                    source: ApplySource::Rendered(m),
                    ..
                } => Some(m),
                _ => None,
            })
            .collect()
    }

    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.up
            .iter()
            .chain(&self.walkthrough)
            .chain(&self.down)
            .chain(&self.on_failure)
    }
}
