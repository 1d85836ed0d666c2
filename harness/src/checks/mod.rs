//! The conformance checks: one file per check, each a [`Check`] with a stable id,
//! the profile it belongs to, the proxy features it requires and the scenarios it
//! runs on. [`catalog`] lists them all in report order.

pub mod authz_matrix;
pub mod bad_token;
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
pub mod real_istioctl;
pub mod replica_churn;
pub mod replica_down;
pub mod replica_error;
pub mod replica_garbage;
pub mod replica_hang;
pub mod replica_killed;
pub mod replica_partition;
pub mod replica_poison;
pub mod replica_poison_config_dump;
pub mod replica_restart;
pub mod replica_slow;
pub mod slow_readers;
pub mod stream_flood;
pub mod syncz_union;
pub mod table_snapshot;
pub mod tls;
pub mod type_url_echo;
pub mod unsupported;
pub mod version;

pub use crate::suite::{Capability, Check, CheckContext, Feature, Outcome, Profile};

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
        &real_istioctl::CHECK,
        &table_snapshot::CHECK,
        &empty_mesh::CHECK,
        &unsupported::CHECK,
        &replica_down::CHECK,
        &replica_hang::CHECK,
        &replica_slow::CHECK,
        &replica_error::CHECK,
        &replica_garbage::CHECK,
        &replica_poison::CHECK,
        &replica_poison_config_dump::CHECK,
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
