//! `large-mesh`: answers far above gRPC's 4 MiB default message size get through whole.

use crate::suite::prelude::*;
use prost::Message;

crate::check! {
    id: "large-mesh",
    profile: Profile::Resilience,
    description: "a mesh whose syncz answer is far above gRPC's 4 MiB default comes through complete",
    features: &[],
    needs: &[Capability::ScriptedMesh],
    scenarios: &["large-mesh"],
    // A mesh far above 4 MiB: its load and memory must not meet another check's.
    isolation: Isolation::Alone,
}

const GRPC_DEFAULT_MAX: usize = 4 * 1024 * 1024;

async fn run(ctx: &Ctx) -> Checked {
    let expected = ctx.expected_ids().await?;
    let (resp, got) = ctx
        .merged()
        .await
        .map_err(|e| format!("{} proxies: {e}", expected.len()))?;
    let size = resp.encoded_len();
    if size <= GRPC_DEFAULT_MAX {
        return Err(fail(format!(
            "bench: the answer is only {size} bytes, not above gRPC's 4 MiB default"
        )));
    }
    let mut problems = Vec::new();
    compare_ids(&got, &expected, &mut problems);
    verdict(problems)
}
