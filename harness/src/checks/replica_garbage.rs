//! `replica-garbage`: with a replica that sends resources of a wrong type and a ControlPlane that is not JSON, the answer comes within
//! istioctl's timeout and is never silently partial.

use crate::suite::prelude::*;

crate::check! {
    id: "replica-garbage",
    profile: Profile::Resilience,
    description: "with a replica that sends resources of a wrong type and a ControlPlane that is not JSON: an error naming it, or the rest plus a row naming it; never silently partial",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-garbage"],
}

async fn run(ctx: &Ctx) -> Checked {
    let failed = failing_replicas(ctx);
    never_silently_partial(ctx, &failed).await
}
