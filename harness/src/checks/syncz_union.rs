//! `syncz-union`: one ClientConfig per proxy, every replica's proxies present, none invented.

use crate::suite::context::node_id;
use crate::suite::prelude::*;
use std::collections::BTreeSet;

crate::check! {
    id: "syncz-union",
    profile: Profile::Core,
    description: "syncz through the proxy lists every proxy of every replica exactly once, and no other",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas", "mixed-versions", "blog-walkthrough"],
}

async fn run(ctx: &Ctx) -> Checked {
    let truth = ctx.ground_truth().await?;
    let expected: BTreeSet<String> = truth
        .iter()
        .flat_map(|(_, ccs)| ccs.iter().map(|c| node_id(c).to_string()))
        .collect();
    let (_, got) = ctx.merged().await?;
    let mut problems = Vec::new();
    compare_ids(&got, &expected, &mut problems);
    if let Some(p) = problems.first_mut() {
        // Say which replicas the missing proxies belong to: the usual cause.
        let got_ids: BTreeSet<&str> = got.iter().map(node_id).collect();
        let lost: Vec<String> = truth
            .iter()
            .filter(|(_, ccs)| !ccs.is_empty() && ccs.iter().all(|c| !got_ids.contains(node_id(c))))
            .map(|(r, _)| r.name.clone())
            .collect();
        if !lost.is_empty() {
            p.push_str(&format!(
                " (nothing at all from replica {})",
                lost.join(", ")
            ));
        }
    }
    verdict(problems)
}
