//! The `real-istio` topology: the real Istio and Kubernetes binaries, built
//! from their Go modules by `ci/real-istio-build.sh`, run as processes on
//! this machine: two Kubernetes API servers ([`apiserver`]), istiod replicas
//! ([`istiod`]), light sidecars ([`sidecar`]), put together as the external
//! control plane ([`world`]) and offered to the checks ([`topology`]).

pub mod agent;
pub mod apiserver;
pub mod binaries;
pub mod istiod;
pub mod objects;
pub mod service;
pub mod sidecar;
pub mod topology;
pub mod world;

pub use topology::{CAPABILITIES, NAME, RealIstioTopology};
pub use world::{RealIstio, WorldOptions};

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
