//! The conformance checks: one file per check, each a [`Check`] with a stable id,
//! the profile it belongs to, the proxy features it requires and the scenarios it
//! runs on. [`catalog`] lists them all in report order.

pub mod authz_matrix;
pub mod bad_token;
pub mod common;
pub mod concurrent_clients;
pub mod config_dump_owner;
pub mod config_dump_unknown;
pub mod dns_discovery;
pub mod duplicate_proxy;
pub mod empty_mesh;
pub mod external_identity;
pub mod garbage_bytes;
pub mod idle_connections;
pub mod istioctl_ack;
pub mod large_mesh;
pub mod malformed_request;
pub mod missing_token;
pub mod no_privilege_escalation;
pub mod oversized_request;
pub mod passthrough_fidelity;
pub mod replica_churn;
pub mod replica_down;
pub mod replica_error;
pub mod replica_garbage;
pub mod replica_hang;
pub mod replica_killed;
pub mod replica_partition;
pub mod replica_restart;
pub mod replica_slow;
pub mod robustness;
pub mod slow_readers;
pub mod stream_flood;
pub mod syncz_union;
pub mod table_snapshot;
pub mod tls;
pub mod type_url_echo;
pub mod unsupported;
pub mod version;

use futures::future::BoxFuture;
use serde::Serialize;
use std::fmt;

pub use crate::runner::context::CheckContext;
pub use crate::topology::Capability;

/// A profile groups checks like gateway-api's conformance profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// What every istioctl user needs.
    Core,
    /// Faults of replicas, scale and concurrency.
    Resilience,
    /// Authentication, authorization and transport security.
    Security,
    /// Hostile clients: garbage, malformed and oversized requests, floods of
    /// connections, and every request type against every caller namespace.
    Robustness,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Core,
        Profile::Resilience,
        Profile::Security,
        Profile::Robustness,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Resilience => "resilience",
            Profile::Security => "security",
            Profile::Robustness => "robustness",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Optional behaviours a proxy may support; a check that requires one the
/// proxy does not claim (`--supported-features`) is skipped, visibly.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    clap::ValueEnum,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// Serves TLS.
    Tls,
    /// Answers `istio.io/debug/config_dump` (istioctl proxy-status <pod>.<ns>).
    ConfigDump,
    /// Finds its replicas by DNS (a headless Service's name) and follows
    /// them as they come and go (the docker topology's dns-discovery check).
    DnsDiscovery,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Feature::Tls, Feature::ConfigDump, Feature::DnsDiscovery];
    pub fn name(self) -> &'static str {
        match self {
            Feature::Tls => "tls",
            Feature::ConfigDump => "config-dump",
            Feature::DnsDiscovery => "dns-discovery",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Why, in words a proxy author can act on (may span several lines, e.g. a diff).
    Fail(String),
    /// Why the check did not run.
    Skip(String),
}

impl Outcome {
    pub fn fail(msg: impl Into<String>) -> Self {
        Outcome::Fail(msg.into())
    }
    /// `Pass` when every problem list is empty, else `Fail` with them all.
    pub fn from_problems(problems: Vec<String>) -> Self {
        if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(problems.join("\n"))
        }
    }
}

/// The async body of a check.
pub type CheckFn = for<'a> fn(&'a CheckContext) -> BoxFuture<'a, Outcome>;

/// One conformance check.
pub struct Check {
    /// Stable id (used by `--run-check`, `--skip-check` and in reports).
    pub id: &'static str,
    pub profile: Profile,
    pub description: &'static str,
    /// Features the proxy must claim for the check to run.
    pub features: &'static [Feature],
    /// What the topology must be able to do for the check to run (on one
    /// that cannot, the check is skipped with the reason).
    pub needs: &'static [Capability],
    /// Scenario names (files in `scenarios/` without `.yaml`) it runs on, in
    /// order, on a topology with a scripted mesh; elsewhere it runs once, on
    /// the live mesh.
    pub scenarios: &'static [&'static str],
    pub run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Every check, in report order (core, resilience, security, robustness).
pub fn catalog() -> Vec<&'static Check> {
    vec![
        &syncz_union::CHECK,
        &external_identity::CHECK,
        &passthrough_fidelity::CHECK,
        &type_url_echo::CHECK,
        &istioctl_ack::CHECK,
        &config_dump_owner::CHECK,
        &config_dump_unknown::CHECK,
        &version::CHECK,
        &table_snapshot::CHECK,
        &empty_mesh::CHECK,
        &unsupported::CHECK,
        &replica_down::CHECK,
        &replica_hang::CHECK,
        &replica_slow::CHECK,
        &replica_error::CHECK,
        &replica_garbage::CHECK,
        &duplicate_proxy::CHECK,
        &large_mesh::CHECK,
        &concurrent_clients::CHECK,
        &replica_churn::CHECK,
        // On their own scenario, in this order: a proxy that never recovers
        // from a new address fails restart and discovery, not what comes first.
        &replica_partition::CHECK,
        &replica_killed::CHECK,
        &replica_restart::CHECK,
        &dns_discovery::CHECK,
        &missing_token::CHECK,
        &bad_token::CHECK,
        &no_privilege_escalation::CHECK,
        &tls::CHECK,
        &malformed_request::CHECK,
        &oversized_request::CHECK,
        &stream_flood::CHECK,
        &idle_connections::CHECK,
        &authz_matrix::CHECK,
        &slow_readers::CHECK,
        // Last: a proxy that garbage kills fails this one check, not the rest.
        &garbage_bytes::CHECK,
    ]
}

/// Looks a check up by id.
pub fn find(id: &str) -> Option<&'static Check> {
    catalog().into_iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for c in catalog() {
            assert!(seen.insert(c.id), "duplicate check id {}", c.id);
            assert!(
                c.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{} is not kebab-case",
                c.id
            );
            assert!(!c.scenarios.is_empty(), "{} runs on no scenario", c.id);
            assert!(!c.description.is_empty(), "{} has no description", c.id);
        }
    }

    #[test]
    fn catalog_is_in_profile_order() {
        let profiles: Vec<Profile> = catalog().iter().map(|c| c.profile).collect();
        let mut sorted = profiles.clone();
        sorted.sort();
        assert_eq!(profiles, sorted);
    }
}
