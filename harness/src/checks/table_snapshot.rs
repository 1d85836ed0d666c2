//! `table-snapshot`: what istioctl prints through the proxy equals the scenario's
//! snapshot, for every selected istioctl family (and its `-v 1` / `-o json` views).

use crate::suite::prelude::*;
use crate::suite::snapshots::{View, compare_view, snapshot_name};

crate::check! {
    id: "table-snapshot",
    profile: Profile::Core,
    description: "istioctl proxy-status through the proxy prints exactly the expected table, per istioctl version",
    features: &[],
    needs: &[Capability::ScriptedMesh],
    scenarios: &[
        "blog-walkthrough",
        "three-replicas",
        "mixed-versions",
        "empty-mesh",
        "three-replicas-1-19",
    ],
}

async fn run(ctx: &Ctx) -> Checked {
    let mesh = ctx.scripted()?;
    let resp = ctx
        .syncz()
        .await
        .map_err(|e| format!("syncz through the proxy failed: {e}"))?;
    let mut problems = Vec::new();
    for family in &ctx.families {
        for view in View::of(*family) {
            let name = snapshot_name(&ctx.scenario_name, *family, *view);
            let Some(expected) = ctx.snapshots.get(&name) else {
                problems.push(format!("no snapshot {name}.snap to compare with"));
                continue;
            };
            let actual = match crate::suite::tables::render_view(
                *family,
                *view,
                &resp,
                mesh.scenario_time(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("istioctl {family} cannot show the answer: {e}"));
                    continue;
                }
            };
            if let Err(diff) = compare_view(*view, expected, &actual) {
                problems.push(format!(
                    "istioctl {family}{} differs from {name}.snap:\n{diff}",
                    view.suffix()
                ));
            }
        }
    }
    verdict(problems)
}
