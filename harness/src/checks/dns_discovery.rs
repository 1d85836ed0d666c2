//! `dns-discovery`: the proxy finds istiod through one DNS name that resolves
//! to every replica (a headless Service; on docker a network alias every
//! replica container shares). A replica removed stops being asked, and one
//! added shows in the answer, each within the refresh interval the proxy
//! declares (`--proxy-discovery-refresh`) plus one request. A proxy that
//! resolved the name once, at start, keeps asking a dead address and never
//! sees the new replica.

use crate::suite::prelude::*;
use std::time::Duration;

crate::check! {
    id: "dns-discovery",
    profile: Profile::Resilience,
    description: "replicas found by one DNS name: a replica removed stops being asked and one added shows in the answer, each within the proxy's declared refresh interval",
    features: &[Feature::DnsDiscovery],
    needs: &[Capability::AddRemoveReplicas],
    scenarios: &["network-faults"],
}

/// Besides the refresh interval: time for one request (a replica that is
/// gone may still cost the proxy its per-replica deadline once).
const SLACK: Duration = Duration::from_secs(3);

async fn run(ctx: &Ctx) -> Checked {
    let (net, victim) = network_victim(
        ctx,
        "the topology cannot add or remove replicas",
        "any change",
    )
    .await?;
    let bound = ctx.proxy.discovery_refresh + SLACK;
    let lost = net
        .remove(&victim.name)
        .await
        .map_err(|e| format!("bench: cannot remove {}: {e}", victim.name))?;
    let mut problems = Vec::new();
    let gone = converges(bound, || async {
        match answer_without(ctx, &lost).await? {
            LostReplica::Dropped => Ok(()),
            LostReplica::Named => Err(format!(
                "the answer still names {} ({}): the proxy still asks it",
                lost.name, lost.tls_addr
            )),
        }
    })
    .await;
    match gone {
        Ok(t) => ctx.note(format!(
            "{} no longer asked {t:.1?} after its removal",
            lost.name
        )),
        Err(e) => problems.push(format!(
            "{bound:.0?} after {} was removed (refresh {:.0?} declared): {e}",
            lost.name, ctx.proxy.discovery_refresh
        )),
    }
    let added = match net.add(&victim.name).await {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("bench: cannot add {} again: {e}", victim.name));
            return verdict(problems);
        }
    };
    match converges(bound, || full_answer(ctx)).await {
        Ok(t) => ctx.note(format!(
            "{} at its new address {} in the answer {t:.1?} after it served",
            added.name, added.tls_addr
        )),
        Err(e) => problems.push(format!(
            "{bound:.0?} after {} was added at {} (refresh {:.0?} declared), the answer is not the full mesh: {e}",
            added.name, added.tls_addr, ctx.proxy.discovery_refresh
        )),
    }
    verdict(problems)
}
