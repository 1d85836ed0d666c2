//! The conformance harness: an istioctl-faithful client and table renderer, the
//! conformance checks, topologies and reports. The `proxy-conformance` binary is
//! a thin CLI over this library.
//!
//! Module ownership (keep boundaries, so the parts can grow independently):
//! - `client`, `decode`, `render`, `ps`: what istioctl sends, decodes and prints (`proxy-conformance ps`).
//! - `checks`, `runner`, `report`, `topology`: the conformance suite (`proxy-conformance run`, `checks`).

pub mod client;
pub mod decode;
pub mod ps;
pub mod render;
pub mod run;
