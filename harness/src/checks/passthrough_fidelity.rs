//! `passthrough-fidelity`: each ClientConfig (status, metadata, error state) is what its
//! owning replica sent.

use crate::suite::context::node_id;
use crate::suite::prelude::*;
use proto::envoy::envoy::service::status::v3::ClientConfig;
use std::collections::BTreeMap;

crate::check! {
    id: "passthrough-fidelity",
    profile: Profile::Core,
    description: "every ClientConfig through the proxy equals the owning replica's (statuses, metadata, error details)",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas", "mixed-versions", "three-replicas-1-19"],
}

/// A ClientConfig as sorted lines (map order in Debug output is random).
fn canonical(cc: &ClientConfig) -> String {
    let mut lines = vec![format!("node.id: {}", node_id(cc))];
    if let Some(md) = cc.node.as_ref().and_then(|n| n.metadata.as_ref()) {
        let mut keys: Vec<_> = md.fields.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in keys {
            lines.push(format!("node.metadata.{k}: {:?}", v.kind));
        }
    }
    for x in crate::decode::xds_configs(cc) {
        lines.push(format!(
            "{}: {} last_updated={:?} error={:?}",
            x.type_url,
            x.status_name(),
            x.last_updated,
            x.error_details
        ));
    }
    // Anything else (fields this view does not show) still differs in full.
    let mut rest = cc.clone();
    rest.node = None;
    rest.generic_xds_configs.clear();
    #[allow(deprecated)]
    rest.xds_config.clear();
    lines.push(format!("other fields: {rest:?}"));
    lines.join("\n") + "\n"
}

async fn run(ctx: &Ctx) -> Checked {
    let truth = ctx.ground_truth().await?;
    let owner: BTreeMap<String, (String, _)> = truth
        .into_iter()
        .flat_map(|(r, ccs)| {
            ccs.into_iter()
                .map(move |c| (node_id(&c).to_string(), (r.name.clone(), c)))
        })
        .collect();
    let (_, got) = ctx.merged().await?;
    let mut problems = Vec::new();
    for cc in &got {
        let id = node_id(cc);
        let Some((replica, want)) = owner.get(id) else {
            continue; // syncz-union reports unknown ids
        };
        if cc != want {
            problems.push(format!(
                "{id}: differs from what {replica} sent:\n{}",
                crate::suite::snapshots::diff(&canonical(want), &canonical(cc))
            ));
        }
        if problems.len() >= 3 {
            problems.push("(further differences not shown)".into());
            break;
        }
    }
    verdict(problems)
}
