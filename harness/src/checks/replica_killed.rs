//! `replica-killed`: a replica's container is removed (its process, its
//! address and its DNS record are gone, as a deleted pod's). The next answer
//! must still be complete for the others and name the lost replica, or (a
//! proxy discovering by DNS or the Kubernetes API) leave it out once discovery
//! says it is gone; never a stale copy of its proxies, never silently partial
//! while it is still being asked. The replica is started again afterwards
//! (a new container and address) for the checks that follow.

use crate::suite::prelude::*;
use std::time::Duration;

crate::check! {
    id: "replica-killed",
    profile: Profile::Resilience,
    description: "a replica whose container is removed (address and DNS record gone): the next answers are complete for the others and name it, or leave it out once discovery says it is gone",
    features: &[],
    needs: &[Capability::AddRemoveReplicas],
    scenarios: &["network-faults"],
}

/// Besides the refresh interval: time for one request.
const SLACK: Duration = Duration::from_secs(3);

async fn run(ctx: &Ctx) -> Checked {
    let (net, victim) =
        network_victim(ctx, "the topology cannot remove replicas", "the removal").await?;
    let lost = net
        .remove(&victim.name)
        .await
        .map_err(|e| format!("bench: cannot remove {}: {e}", victim.name))?;
    let mut problems = Vec::new();
    // At once, and again once a discovering proxy has had its refresh.
    let later = ctx.proxy.discovery_refresh + SLACK;
    for (when, wait) in [("right after", Duration::ZERO), ("later", later)] {
        tokio::time::sleep(wait).await;
        let (judged, took) = timed(answer_without(ctx, &lost)).await;
        match judged {
            Ok(how) => ctx.note(format!(
                "{when} {} was removed: answered in {took:.1?}, {}",
                lost.name,
                match how {
                    LostReplica::Named => "naming it",
                    LostReplica::Dropped => "leaving it out",
                }
            )),
            Err(e) => problems.push(format!("{when} {} was removed: {e}", lost.name)),
        }
    }
    // Put it back for the next checks (a new container and address); how
    // fast the proxy finds it is dns-discovery's and replica-restart's to judge.
    match net.add(&victim.name).await {
        Ok(_) => {
            let _ = converges(later, || full_answer(ctx)).await;
        }
        Err(e) => problems.push(format!("bench: cannot start {} again: {e}", victim.name)),
    }
    verdict(problems)
}
