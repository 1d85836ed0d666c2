//! `large-mesh`: answers far above gRPC's 4 MiB default message size get through whole.

use super::common::*;
use prost::Message;

pub static CHECK: Check = Check {
    id: "large-mesh",
    profile: Profile::Resilience,
    description: "a mesh whose syncz answer is far above gRPC's 4 MiB default comes through complete",
    features: &[],
    needs: &[Capability::ScriptedMesh],
    scenarios: &["large-mesh"],
    run: |ctx| Box::pin(run(ctx)),
};

const GRPC_DEFAULT_MAX: usize = 4 * 1024 * 1024;

async fn run(ctx: &Ctx) -> Outcome {
    let expected = match ctx.expected_ids().await {
        Ok(e) => e,
        Err(e) => return Outcome::fail(e),
    };
    let (resp, got) = match ctx.merged().await {
        Ok(m) => m,
        Err(e) => return Outcome::fail(format!("{} proxies: {e}", expected.len())),
    };
    let size = resp.encoded_len();
    if size <= GRPC_DEFAULT_MAX {
        return Outcome::fail(format!(
            "bench: the answer is only {size} bytes, not above gRPC's 4 MiB default"
        ));
    }
    let mut problems = Vec::new();
    compare_ids(&got, &expected, &mut problems);
    Outcome::from_problems(problems)
}
