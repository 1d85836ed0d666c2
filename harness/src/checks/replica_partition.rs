//! `replica-partition`: a replica's container is cut off from the network
//! (docker disconnects it: packets to its address go nowhere, no RST, and its
//! DNS record disappears). Connections the proxy holds to it, and new ones,
//! hang instead of failing: only the proxy's own deadline saves istioctl. The
//! answer must come within istioctl's timeout, complete for the other
//! replicas, naming the lost one (or, a discovering proxy that already saw its
//! record go, without asking it). Once the network heals, the full mesh again.

use crate::suite::prelude::*;
use std::time::Duration;

crate::check! {
    id: "replica-partition",
    profile: Profile::Resilience,
    description: "a replica cut off by the network (connections hang, no RST): an answer within istioctl's timeout, complete for the others, naming it; the full mesh again once the network heals",
    features: &[],
    needs: &[Capability::NetworkPartitions],
    scenarios: &["network-faults"],
}

/// After the network heals: the replica serves at once; a discovering proxy
/// may need its refresh interval, plus this.
const HEAL_SLACK: Duration = Duration::from_secs(5);

async fn run(ctx: &Ctx) -> Checked {
    let (net, victim) =
        network_victim(ctx, "the topology has no network to cut", "the partition").await?;
    net.partition(&victim.name)
        .await
        .map_err(|e| format!("bench: cannot partition {}: {e}", victim.name))?;
    let mut problems = Vec::new();
    let (judged, took) = timed(answer_without(ctx, &victim)).await;
    match judged {
        Ok(how) => ctx.note(format!(
            "answered in {took:.1?} with {} ({}) cut off: {}",
            victim.name,
            victim.tls_addr,
            match how {
                LostReplica::Named => "named it",
                LostReplica::Dropped => "no longer asked it (its DNS record is gone)",
            }
        )),
        Err(e) => problems.push(format!("while {} was cut off: {e}", victim.name)),
    }
    if let Err(e) = net.heal(&victim.name).await {
        problems.push(format!("bench: cannot reconnect {}: {e}", victim.name));
        return verdict(problems);
    }
    let bound = ctx.proxy.discovery_refresh + HEAL_SLACK;
    match converges(bound, || full_answer(ctx)).await {
        Ok(t) => ctx.note(format!("full mesh again {t:.1?} after the network healed")),
        Err(e) => problems.push(format!(
            "{:.0?} after the network healed, the answer is still not the full mesh: {e}",
            bound
        )),
    }
    verdict(problems)
}
