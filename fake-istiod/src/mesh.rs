//! The live, mutable mesh every replica answers from.

use crate::scenario::{AuthSettings, Fault, IstiodSettings, Proxy, ReplicaAuth, Scenario};
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
    /// The debug-endpoint rules of this replica (its own version's, unless
    /// the scenario states them).
    pub auth: ReplicaAuth,
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
    /// istiod's push counter: `version_info` stays the same until the mesh
    /// changes (`time.Now().Format(time.RFC3339) + "/" + n`,
    /// `1.30.0:pilot/pkg/xds/discovery.go` `NextVersion`).
    pub push: u64,
    /// When the current push happened.
    pub pushed_at: std::time::SystemTime,
    /// Seed of the answer order (istiod emits one ClientConfig per connection
    /// in Go map order): the same scenario gives the same sequence of orders.
    pub seed: u64,
}

pub type SharedMesh = Arc<RwLock<MeshState>>;

impl MeshState {
    pub fn from_scenario(s: &Scenario) -> Self {
        // Ages in the scenario ("5m") count back from the moment it is loaded.
        Self::from_scenario_at(s, std::time::SystemTime::now())
    }

    /// Ages count back from `loaded_at`: replicas in several processes share
    /// one instant, so the same scenario age reads the same on every replica.
    pub fn from_scenario_at(s: &Scenario, loaded_at: std::time::SystemTime) -> Self {
        MeshState {
            loaded_at,
            push: 1,
            pushed_at: loaded_at,
            seed: scenario_seed(s),
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
                            auth: s.auth.for_replica(r.version.as_ref()),
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

    /// A change of the mesh: the next answers carry a new `version_info`.
    pub fn bump_push(&mut self) {
        self.push += 1;
        self.pushed_at = std::time::SystemTime::now();
    }

    /// `version_info` (and, from 1.23, the nonce prefix) of the current push.
    pub fn push_version(&self) -> String {
        format!(
            "{}/{}",
            crate::timefmt::format_rfc3339(self.pushed_at),
            self.push
        )
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

/// A seed that depends only on what the scenario describes (not on where its
/// file lives): FNV-1a over the description, replica names and proxy ids.
fn scenario_seed(s: &Scenario) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = std::iter::once(s.description.as_str())
        .chain(s.replicas.iter().map(|r| r.name.as_str()))
        .chain(s.proxies.iter().map(|p| p.id.as_str()));
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A small deterministic generator (SplitMix64) for the answer order.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
