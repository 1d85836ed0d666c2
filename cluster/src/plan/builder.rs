//! The helper the phases push their steps through: it remembers the current
//! phase and its source, and knows the work dir's paths and the contexts.
use std::time::Duration;

use super::options::PlanOptions;
use super::step::{Action, ApplySource, Step, Until};
use crate::manifests::Manifest;
use crate::provider::Role;

/// Where a phase comes from (printed next to its title).
pub(super) const GUIDE: &str = "seeds/install-external-controlplane.md";
pub(super) const BLOG: &str = "seeds/blog-istioctl-remote-cluster.md";
pub(super) const CLUSTERS: &str = "shared/docs/clusters.md";

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) struct Builder<'a> {
    pub(super) o: &'a PlanOptions,
    pub(super) steps: Vec<Step>,
    phase: &'static str,
    source: &'static str,
}

impl<'a> Builder<'a> {
    pub(super) fn new(o: &'a PlanOptions) -> Self {
        Builder {
            o,
            steps: vec![],
            phase: "",
            source: "",
        }
    }
    /// The steps pushed since the last call (one section of the plan: up, walkthrough, ...).
    pub(super) fn take(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }
    /// `--context=NAME` of a cluster, for istioctl.
    pub(super) fn ctx(&self, r: Role) -> String {
        format!("--context={}", self.o.provider.context(r))
    }
    pub(super) fn phase(&mut self, phase: &'static str, source: &'static str) {
        self.phase = phase;
        self.source = source;
    }
    pub(super) fn push(&mut self, name: impl Into<String>, cluster: Option<Role>, action: Action) {
        self.steps.push(Step {
            phase: self.phase,
            name: name.into(),
            source: self.source,
            cluster,
            parallel: None,
            action,
        });
    }
    pub(super) fn run(
        &mut self,
        name: impl Into<String>,
        cluster: Option<Role>,
        argv: Vec<String>,
        timeout: u64,
    ) {
        self.push(
            name,
            cluster,
            Action::Run {
                argv,
                env: vec![],
                stdout_to: None,
                timeout: secs(timeout),
            },
        );
    }
    pub(super) fn apply(&mut self, name: impl Into<String>, cluster: Role, m: Manifest) {
        self.push(
            name,
            Some(cluster),
            Action::Apply {
                cluster,
                namespace: None,
                source: ApplySource::Rendered(m),
                timeout: secs(60),
            },
        );
    }
    pub(super) fn wait(
        &mut self,
        name: impl Into<String>,
        cluster: Role,
        until: Until,
        timeout: u64,
    ) {
        self.push(
            name,
            Some(cluster),
            Action::Wait {
                cluster,
                until,
                timeout: secs(timeout),
            },
        );
    }
    pub(super) fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.o.work_dir)
    }
    pub(super) fn istioctl(&self) -> String {
        format!("{}/istio-{}/bin/istioctl", self.o.work_dir, self.o.istio)
    }
    pub(super) fn write(&mut self, m: Manifest) {
        let path = self.file(&m.file);
        self.push(
            format!("write {}", m.file),
            None,
            Action::WriteFile { manifest: m, path },
        );
    }
}
