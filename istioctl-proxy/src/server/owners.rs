//! Which replica has which proxy (config_dump routing): learned from the
//! kept rows of every syncz answer, and from config_dump answers found by
//! asking every replica.

use crate::discovery::Replica;
use crate::fanout::ReplicaAnswer;
use crate::merge::KeptRows;
use std::collections::HashMap;

/// Which replica has which proxy (config_dump routing).
#[derive(Default)]
pub(crate) struct OwnerTable {
    /// node id (its bytes) → the replica a syncz answer showed it on last.
    owners: HashMap<Box<[u8]>, String, foldhash::fast::RandomState>,
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
        self.owners
            .insert(proxy_id.as_bytes().into(), replica.to_string());
    }
}

/// Writes the owners of a syncz answer's kept rows into the owner table
/// (only changed entries: no allocation for a proxy whose owner is known;
/// nothing when the answer kept the same rows as the last one learned).
pub(super) fn learn_owners(
    mut table: tokio::sync::OwnedMutexGuard<OwnerTable>,
    answers: &[ReplicaAnswer],
    kept: &KeptRows,
) {
    if table.learned == Some(kept.digest) {
        return;
    }
    table.learned = Some(kept.digest);
    let owners = &mut table.owners;
    for (id, replica) in kept.owners(answers) {
        match owners.get_mut(id.as_bytes()) {
            Some(known) if known == replica => {}
            Some(known) => *known = replica.to_string(),
            None => {
                owners.insert(id.as_bytes().into(), replica.to_string());
            }
        }
    }
}
