//! `large-mesh`: answers far above gRPC's 4 MiB default message size get through whole.

use super::common::*;
use crate::runner::context::{client_configs, node_id};
use prost::Message;
use std::collections::BTreeSet;

pub static CHECK: Check = Check {
    id: "large-mesh",
    profile: Profile::Resilience,
    description: "a mesh whose syncz answer is far above gRPC's 4 MiB default comes through complete",
    features: &[],
    scenarios: &["large-mesh"],
    run: |ctx| Box::pin(run(ctx)),
};

const GRPC_DEFAULT_MAX: usize = 4 * 1024 * 1024;

async fn run(ctx: &Ctx) -> Outcome {
    let truth = match ctx.ground_truth().await {
        Ok(t) => t,
        Err(e) => return Outcome::fail(e),
    };
    let expected: BTreeSet<String> = truth
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| node_id(c).to_string()))
        .collect();
    let resp = match ctx.syncz().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::fail(format!(
                "{} proxies: syncz through the proxy failed: {e}",
                expected.len()
            ));
        }
    };
    let size = resp.encoded_len();
    if size <= GRPC_DEFAULT_MAX {
        return Outcome::fail(format!(
            "bench: the answer is only {size} bytes, not above gRPC's 4 MiB default"
        ));
    }
    let got = match client_configs(&resp) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(e),
    };
    let mut problems = Vec::new();
    compare_ids(&got, &expected, &mut problems);
    Outcome::from_problems(problems)
}
