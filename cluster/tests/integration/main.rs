//! The cluster crate's integration tests, in one binary (one link instead of
//! one per file): a module per concern.
//!
//! - `plan_snapshots`: the plan over providers x Istio versions, as insta snapshots
//!   (kept in `cluster/tests/snapshots/` under their original names);
//! - `manifests_strict`: every rendered manifest against its type, no unknown field.
mod manifests_strict;
mod plan_snapshots;
