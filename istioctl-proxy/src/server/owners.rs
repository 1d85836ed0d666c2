//! Which replica has which proxy (config_dump routing): learned from the
//! kept rows of every syncz answer, and from config_dump answers found by
//! asking every replica.
//!
//! Bounded: an answer that shows the whole mesh (a caller who sees every
//! namespace) REBUILDS the table (entries of proxies it still shows are
//! moved over, the rest forgotten), so the table holds one mesh, never the
//! union of every node id ever seen. Between two such answers, what
//! namespace-limited answers and config_dump add is capped at
//! [`MAX_ADDED`] entries, and node ids longer than [`MAX_ID_BYTES`] are
//! never remembered (a forgotten owner only costs asking every replica).

use crate::auth::Visibility;
use crate::discovery::Replica;
use crate::fanout::ReplicaAnswer;
use crate::merge::KeptRows;
use std::collections::HashMap;

/// Entries added between two whole-mesh answers, at most.
pub(crate) const MAX_ADDED: usize = 100_000;

/// Node ids longer than this are not remembered (a Kubernetes `pod.ns` is
/// at most 253 + 1 + 63 bytes; istiod's longest node ids are about 400).
pub(crate) const MAX_ID_BYTES: usize = 1024;

type Owners = HashMap<Box<[u8]>, String, foldhash::fast::RandomState>;

/// Which replica has which proxy (config_dump routing).
#[derive(Default)]
pub(crate) struct OwnerTable {
    /// node id (its bytes) → the replica a syncz answer showed it on last.
    owners: Owners,
    /// Entries added since the table was last rebuilt.
    added: usize,
    /// The digest of the last syncz answer learned from: the same rows on
    /// the same replicas again (a mesh at rest) are not learned again.
    learned: Option<u64>,
}

impl OwnerTable {
    /// The replica a syncz answer last showed `proxy_id` on, if among `replicas`.
    pub fn owner_of(&self, proxy_id: &str, replicas: &[Replica]) -> Option<Replica> {
        let name = self.owners.get(proxy_id.as_bytes())?;
        replicas.iter().find(|r| &r.name == name).cloned()
    }

    /// `replica` has `proxy_id` (it answered its config_dump).
    pub fn remember(&mut self, proxy_id: &str, replica: &str) {
        self.add(proxy_id, replica);
    }

    /// How many entries it holds (tests: bounded).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Adds or updates one entry, within the bounds.
    fn add(&mut self, id: &str, replica: &str) {
        if id.len() > MAX_ID_BYTES {
            return;
        }
        match self.owners.get_mut(id.as_bytes()) {
            Some(known) if known == replica => {}
            Some(known) => *known = replica.to_string(),
            None if self.added < MAX_ADDED => {
                self.added += 1;
                self.owners
                    .insert(id.as_bytes().into(), replica.to_string());
            }
            None => {}
        }
    }

    /// Replaces the table with the owners of one whole-mesh answer (entries
    /// it still shows are moved over, with their allocations).
    fn rebuild<'a>(&mut self, owners: impl Iterator<Item = (&'a str, &'a str)>) {
        let mut old = std::mem::take(&mut self.owners);
        let mut fresh = Owners::with_capacity_and_hasher(old.len(), Default::default());
        for (id, replica) in owners {
            if id.len() > MAX_ID_BYTES {
                continue;
            }
            match old.remove_entry(id.as_bytes()) {
                Some((key, mut known)) => {
                    if known != replica {
                        known = replica.to_string();
                    }
                    fresh.insert(key, known);
                }
                None => {
                    fresh.insert(id.as_bytes().into(), replica.to_string());
                }
            }
        }
        fresh.shrink_to_fit();
        self.owners = fresh;
        self.added = 0;
    }
}

/// Writes the owners of a syncz answer's kept rows into the owner table
/// (a whole-mesh answer rebuilds it; nothing when the answer kept the same
/// rows as the last one learned).
pub(super) fn learn_owners(
    mut table: tokio::sync::OwnedMutexGuard<OwnerTable>,
    answers: &[ReplicaAnswer],
    kept: &KeptRows,
) {
    if table.learned == Some(kept.digest) {
        return;
    }
    table.learned = Some(kept.digest);
    if *kept.visibility() == Visibility::All {
        table.rebuild(kept.owners(answers));
    } else {
        for (id, replica) in kept.owners(answers) {
            table.add(id, replica);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_mesh_answers_rebuild_and_additions_are_capped() {
        let mut t = OwnerTable::default();
        let ids: Vec<String> = (0..1000).map(|i| format!("p{i}.ns")).collect();
        t.rebuild(ids.iter().map(|i| (i.as_str(), "r1")));
        assert_eq!(t.len(), 1000);
        // A churned mesh: the old ids are forgotten.
        let next: Vec<String> = (1000..1500).map(|i| format!("p{i}.ns")).collect();
        t.rebuild(next.iter().map(|i| (i.as_str(), "r2")));
        assert_eq!(t.len(), 500);
        assert!(!t.owners.contains_key(b"p0.ns".as_slice()));
        // Additions between rebuilds are capped; long ids never kept.
        for i in 0..MAX_ADDED + 10 {
            t.remember(&format!("x{i}"), "r1");
        }
        assert_eq!(t.len(), 500 + MAX_ADDED);
        t.remember(&"n".repeat(30_000), "r1");
        t.rebuild(std::iter::empty());
        t.remember(&"n".repeat(30_000), "r1");
        assert_eq!(t.len(), 0);
        t.remember("a.ns", "r1");
        t.remember("a.ns", "r3");
        assert_eq!(
            t.owners.get(b"a.ns".as_slice()).map(String::as_str),
            Some("r3")
        );
    }
}
