//! `duplicate-proxy`: a proxy reported twice appears once, with the newest
//! report: by two replicas (it reconnected to another one), or twice by ONE
//! replica (istiod lists one ClientConfig per connection, and the old
//! connection is not closed yet: `1.30.0:pilot/pkg/xds/statusgen.go` `debugSyncz`).
//! fault-duplicate has both.

use crate::suite::context::node_id;
use crate::suite::prelude::*;
use std::collections::BTreeMap;

crate::check! {
    id: "duplicate-proxy",
    profile: Profile::Resilience,
    description: "a proxy reported by two replicas appears once, with the newest report",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-duplicate"],
}

/// The newest `last_updated` of any xDS type of a ClientConfig.
fn newest_update(
    cc: &proto::envoy::envoy::service::status::v3::ClientConfig,
) -> Option<std::time::SystemTime> {
    crate::decode::xds_configs(cc)
        .iter()
        .filter_map(|x| x.last_updated)
        .max()
}

async fn run(ctx: &Ctx) -> Checked {
    let truth = ctx.ground_truth().await?;
    // Ids reported by more than one replica, and the newest report of each.
    let mut seen: BTreeMap<String, Vec<(String, _)>> = BTreeMap::new();
    for (r, ccs) in &truth {
        for cc in ccs {
            seen.entry(node_id(cc).to_string())
                .or_default()
                .push((r.name.clone(), cc.clone()));
        }
    }
    let dups: Vec<(&String, &Vec<(String, _)>)> =
        seen.iter().filter(|(_, v)| v.len() > 1).collect();
    if dups.is_empty() {
        return Err(fail("bench: no proxy is reported twice in this scenario"));
    }
    let (_, got) = ctx.merged().await?;
    let mut problems = Vec::new();
    for (id, reports) in dups {
        let mine: Vec<_> = got.iter().filter(|c| node_id(c) == id.as_str()).collect();
        match mine.len() {
            1 => {
                let newest = reports
                    .iter()
                    .max_by_key(|(_, cc)| newest_update(cc))
                    .map(|(name, cc)| (name, cc));
                if let Some((owner, cc)) = newest
                    && mine[0] != cc
                {
                    problems.push(format!(
                        "{id}: kept an older report, not the newest one (from {owner})"
                    ));
                }
            }
            n => {
                let mut by: Vec<String> = reports.iter().map(|(r, _)| r.clone()).collect();
                by.dedup();
                let how = if by.len() == 1 {
                    format!("twice by {} (two connections)", by[0])
                } else {
                    format!("by {}", few(by))
                };
                problems.push(format!(
                    "{id} is reported {how} and appears {n} times in the merged answer"
                ))
            }
        }
    }
    verdict(problems)
}
