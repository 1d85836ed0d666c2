//! The live, mutable mesh every replica answers from.

use crate::scenario::{AuthSettings, Fault, IstiodSettings, Proxy, Scenario};
use proto::IstioVersion;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// One replica's identity as the answers need it.
#[derive(Debug, Clone)]
pub struct ReplicaIdentity {
    pub name: String,
    pub version: IstioVersion,
    pub revision: String,
}

/// A replica's current fault and when it was set (flap phases count from it).
#[derive(Debug, Clone)]
pub struct FaultState {
    pub fault: Option<Fault>,
    pub since: Instant,
}

impl FaultState {
    pub fn new(fault: Option<Fault>) -> Self {
        FaultState {
            fault,
            since: Instant::now(),
        }
    }
}

#[derive(Debug)]
pub struct MeshState {
    pub istiod: IstiodSettings,
    pub auth: AuthSettings,
    pub replicas: BTreeMap<String, ReplicaIdentity>,
    pub proxies: BTreeMap<String, Arc<Proxy>>,
    /// When the scenario was loaded: its relative ages ("5m") count back from here.
    pub loaded_at: std::time::SystemTime,
}

pub type SharedMesh = Arc<RwLock<MeshState>>;

impl MeshState {
    pub fn from_scenario(s: &Scenario) -> Self {
        // Ages in the scenario ("5m") count back from the moment it is loaded.
        let loaded_at = std::time::SystemTime::now();
        MeshState {
            loaded_at,
            istiod: s.istiod.clone(),
            auth: s.auth.clone(),
            replicas: s
                .replicas
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        ReplicaIdentity {
                            name: r.name.clone(),
                            version: s.replica_version(r),
                            revision: r
                                .revision
                                .clone()
                                .unwrap_or_else(|| s.istiod.revision.clone()),
                        },
                    )
                })
                .collect(),
            proxies: s
                .proxies
                .iter()
                .map(|p| (p.id.clone(), Arc::new(p.clone().pinned(loaded_at))))
                .collect(),
        }
    }

    /// The proxies a replica owns, sorted by id.
    pub fn proxies_of(&self, replica: &str) -> Vec<Arc<Proxy>> {
        self.proxies
            .values()
            .filter(|p| p.replica == replica)
            .cloned()
            .collect()
    }

    pub fn count_of(&self, replica: &str) -> usize {
        self.proxies
            .values()
            .filter(|p| p.replica == replica)
            .count()
    }
}
