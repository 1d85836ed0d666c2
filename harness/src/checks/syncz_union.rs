//! `syncz-union`: one ClientConfig per proxy, every replica's proxies present, none invented.

use super::common::*;
use crate::runner::context::node_id;
use std::collections::BTreeSet;

pub static CHECK: Check = Check {
    id: "syncz-union",
    profile: Profile::Core,
    description: "syncz through the proxy lists every proxy of every replica exactly once, and no other",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas", "mixed-versions", "blog-walkthrough"],
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: &Ctx) -> Outcome {
    let truth = match ctx.ground_truth().await {
        Ok(t) => t,
        Err(e) => return Outcome::fail(e),
    };
    let expected: BTreeSet<String> = truth
        .iter()
        .flat_map(|(_, ccs)| ccs.iter().map(|c| node_id(c).to_string()))
        .collect();
    let got = match ctx.merged().await {
        Ok((_, ccs)) => ccs,
        Err(e) => return Outcome::fail(e),
    };
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
    Outcome::from_problems(problems)
}
