//! Everything on the wire, shared by every crate of the bench.
//!
//! - [`control`]: the fake-istiod control API (generated from `fake_istiod/control/v1/control.proto`).
//! - [`type_url`]: the debug and xDS type URLs istioctl and istiod use.
//! - [`control_plane`]: `IstioControlPlaneInstance`, the JSON in `control_plane.identifier`.
//! - [`node`]: the node id and metadata istioctl sends, and how istiod reads them.
//! - [`version`]: Istio versions and the behaviour families of istiod and istioctl.
//!
//! Envoy messages come from [`envoy_types`], re-exported as [`envoy`].

pub mod control_plane;
pub mod node;
pub mod type_url;
pub mod version;

/// Envoy's protobuf messages and gRPC services (the `envoy-types` crate).
pub use envoy_types::pb as envoy;

/// The fake-istiod control API.
pub mod control {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fake_istiod.control.v1");
}

pub use control_plane::{BuildInfo, IstioControlPlaneInstance};
pub use version::{
    EmptyMesh, FlagSupport, ForeignResource, IstioctlRules, StatusLayout, VersionColumn,
};
pub use version::{IstioVersion, IstioctlFamily, SynczShape};
