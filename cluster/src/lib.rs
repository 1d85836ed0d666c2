//! Real clusters for proxy-conformance: the external control plane of the
//! install guide and the blog (seeds/) in kind, k3d or two existing contexts.
//!
//! In flow order (README.md has the map and how the plan follows the guide):
//! - [`cli`]: `cluster plan|up|walkthrough|down`;
//! - [`istio`]: Istio versions and their switches (each citing its source);
//! - [`provider`]: kind / k3d / contexts (create, load images, logs, delete);
//! - [`crd`]: serde types of the non-core objects we render;
//! - [`manifests`]: every object rendered; [`certs`]: the shared CA, generated;
//! - [`plan`]: the ordered steps, one function per phase (`cluster plan` prints them);
//! - [`exec`]: runs a plan; [`kubeops`]: every API call it makes, through `kube`;
//! - [`table`]: istioctl's proxy-status table against the remote cluster;
//! - [`live`]: a running external control plane, connected for the conformance suite.
pub mod certs;
pub mod cli;
pub mod crd;
pub mod exec;
pub mod istio;
pub mod kubeops;
pub mod live;
pub mod manifests;
pub mod plan;
pub mod provider;
#[cfg(test)]
pub(crate) mod scripted_api;
pub mod table;

pub use istio::IstioVersion;
pub use plan::{Plan, PlanOptions, ProxyChoice};
pub use provider::{Provider, Role};
