//! `replica-poison`: with replicas whose syncz answers hold valid rows and
//! ONE row istioctl cannot decode, the other replicas' proxies still come
//! through and each poisoned replica is named; never an answer istioctl
//! cannot decode. istioctl decodes every row of the answer and prints no
//! table at all when one fails (`istioctl/pkg/writer/pilot/status.go`
//! `setupStatusPrint`: `could not unmarshal ClientConfig`), so a proxy that
//! forwards a poisoned row breaks the whole mesh's table, naming no replica.
//!
//! The rows are issue 22's reproducers (fake-istiod's `poison` fault). One,
//! an Any nested 100 groups deep, is past prost's recursion limit (100) and
//! within Go's (10,000): the real istioctl reads it, `proxy-conformance ps`
//! and every prost-based client do not; it counts as undecodable here.

use crate::suite::prelude::*;

crate::check! {
    id: "replica-poison",
    profile: Profile::Resilience,
    description: "with replicas whose syncz answer holds valid rows and one row istioctl cannot decode: every other replica's proxies plus a row or an error naming each poisoned replica; never an undecodable answer, never silently partial",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-poison"],
}

async fn run(ctx: &Ctx) -> Checked {
    let failed = failing_replicas(ctx);
    never_silently_partial(ctx, &failed).await
}
