//! The conformance harness: an istioctl-faithful client and table renderer, the
//! conformance checks, topologies and reports. The `proxy-conformance` binary is
//! a thin CLI over this library.
//!
//! Module ownership (keep boundaries, so the parts can grow independently):
//! - `client`, `decode`, `render`, `ps`: what istioctl sends, decodes and prints (`proxy-conformance ps`).
//! - `checks`, `runner`, `report`, `run`: the conformance suite (`proxy-conformance run`, `checks`).
//! - `topology`: where the control plane lives (local fake replicas, a real cluster); the checks see only its interface.

pub mod checks;
pub use istioctl_client as client;
pub mod decode;
pub mod output;
pub mod ps;
pub mod render;
pub mod report;
pub mod run;
pub mod runner;
pub mod topology;
