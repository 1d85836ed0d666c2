//! `replica-error`: with a replica that answers with a gRPC error, or closes the stream mid-answer, the answer comes within
//! istioctl's timeout and is never silently partial.

use crate::suite::prelude::*;

crate::check! {
    id: "replica-error",
    profile: Profile::Resilience,
    description: "with a replica that answers with a gRPC error, or closes the stream mid-answer: an error naming it, or the rest plus a row naming it; never silently partial",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-grpc-error", "fault-truncated"],
}

async fn run(ctx: &Ctx) -> Checked {
    let failed = failing_replicas(ctx);
    never_silently_partial(ctx, &failed).await
}
