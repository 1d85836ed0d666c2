//! `passthrough-fidelity`: each ClientConfig (status, metadata, error state) is what its
//! owning replica sent.

use super::common::*;
use crate::runner::context::{client_configs, node_id};
use std::collections::BTreeMap;

pub static CHECK: Check = Check {
    id: "passthrough-fidelity",
    profile: Profile::Core,
    description: "every ClientConfig through the proxy equals the owning replica's (statuses, metadata, error details)",
    features: &[],
    scenarios: &["three-replicas", "mixed-versions"],
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: &Ctx) -> Outcome {
    let truth = match ctx.ground_truth().await {
        Ok(t) => t,
        Err(e) => return Outcome::fail(e),
    };
    let owner: BTreeMap<String, (String, _)> = truth
        .into_iter()
        .flat_map(|(r, ccs)| {
            ccs.into_iter()
                .map(move |c| (node_id(&c).to_string(), (r.name.clone(), c)))
        })
        .collect();
    let resp = match ctx.syncz().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("syncz through the proxy failed: {e}")),
    };
    let got = match client_configs(&resp) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(e),
    };
    let mut problems = Vec::new();
    for cc in &got {
        let id = node_id(cc);
        let Some((replica, want)) = owner.get(id) else {
            continue; // syncz-union reports unknown ids
        };
        if cc != want {
            problems.push(format!(
                "{id}: differs from what {replica} sent:\n{}",
                crate::runner::snapshots::diff(&format!("{want:#?}\n"), &format!("{cc:#?}\n"))
            ));
        }
        if problems.len() >= 3 {
            problems.push("(further differences not shown)".into());
            break;
        }
    }
    Outcome::from_problems(problems)
}
