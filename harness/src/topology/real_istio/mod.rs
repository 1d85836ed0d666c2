//! The `real-istio` topology (issue 18, in progress): the real Istio and
//! Kubernetes binaries, built from their Go modules by
//! `ci/real-istio-build.sh`, run as processes on this machine. So far: the two
//! Kubernetes API servers of the external control plane (external, remote)
//! with one kubeconfig; istiod replicas, sidecars and the topology itself
//! come next.

pub mod apiserver;
pub mod binaries;
pub mod istiod;
pub mod sidecar;

use std::time::Duration;

/// What went wrong, and at which step.
#[derive(Debug, thiserror::Error)]
pub enum RealIstioError {
    #[error(
        "the real-istio binaries {missing} are not in {dir}: build them with `{}` (needs Go and the Go module proxy), or set REAL_ISTIO_BIN",
        binaries::BUILD
    )]
    Missing { dir: String, missing: String },
    #[error("cannot {step}: {error}")]
    Step { step: String, error: String },
    #[error("{what} is not serving: {last} (waited at most {bound:?}); its output:\n{output}")]
    NotServing {
        what: String,
        bound: Duration,
        last: String,
        output: String,
    },
}

impl RealIstioError {
    pub fn step(step: &str, error: impl std::fmt::Display) -> Self {
        RealIstioError::Step {
            step: step.to_string(),
            error: error.to_string(),
        }
    }
}
