//! `concurrent-clients`: many istioctl clients at once all get the full answer.

use crate::suite::context::{client_configs, node_id};
use crate::suite::prelude::*;
use std::collections::BTreeSet;

crate::check! {
    id: "concurrent-clients",
    profile: Profile::Resilience,
    description: "50 istioctl clients at once all get the full merged answer",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
    // 50 clients at once load the machine on purpose.
    isolation: Isolation::Alone,
}

const CLIENTS: usize = 50;

async fn run(ctx: &Ctx) -> Checked {
    let expected = ctx.expected_ids().await?;
    let answers = futures::future::join_all((0..CLIENTS).map(|_| ctx.syncz())).await;
    let mut failures = Vec::new();
    let mut partial = 0;
    for a in answers {
        match a {
            Err(e) => failures.push(e.to_string()),
            Ok(resp) => {
                let ids: BTreeSet<String> = client_configs(&resp)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| node_id(c).to_string())
                    .collect();
                if ids != expected {
                    partial += 1;
                }
            }
        }
    }
    let mut problems = Vec::new();
    if !failures.is_empty() {
        problems.push(format!(
            "{} of {CLIENTS} clients failed, e.g.: {}",
            failures.len(),
            failures[0]
        ));
    }
    if partial > 0 {
        problems.push(format!(
            "{partial} of {CLIENTS} clients got an incomplete or wrong set of proxies"
        ));
    }
    verdict(problems)
}
