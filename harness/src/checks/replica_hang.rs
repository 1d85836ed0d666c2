//! `replica-hang`: with a replica that accepts and never answers, the answer comes within
//! istioctl's timeout and is never silently partial.

use crate::suite::prelude::*;

crate::check! {
    id: "replica-hang",
    profile: Profile::Resilience,
    description: "with a replica that accepts and never answers: an error naming it, or the rest plus a row naming it; never silently partial",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-hang"],
}

async fn run(ctx: &Ctx) -> Checked {
    let failed = failing_replicas(ctx);
    never_silently_partial(ctx, &failed).await
}
