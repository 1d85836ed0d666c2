//! `replica-down`: with a replica that is down (nothing listening, or resetting connections), the answer comes within
//! istioctl's timeout and is never silently partial.

use crate::suite::prelude::*;

crate::check! {
    id: "replica-down",
    profile: Profile::Resilience,
    description: "with a replica that is down (nothing listening, or resetting connections): an error naming it, or the rest plus a row naming it; never silently partial",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-down", "fault-reset"],
}

async fn run(ctx: &Ctx) -> Checked {
    let failed = failing_replicas(ctx);
    never_silently_partial(ctx, &failed).await
}
