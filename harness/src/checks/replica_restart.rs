//! `replica-restart`: a replica restarts. On a cluster its pod is deleted and
//! its Deployment makes a successor with a new name and address (what a crash,
//! a node drain or a rollout does); the local fakes stop serving and serve
//! again on the same address. Once the successor serves, the proxy's answer
//! must be the full mesh again within a bound: a proxy that resolved its
//! replicas once, or keeps a dead connection, never recovers.

use crate::suite::prelude::*;

crate::check! {
    id: "replica-restart",
    profile: Profile::Resilience,
    description: "a replica that restarts (on a cluster: a new pod, name and address) while istioctl asks is asked again: soon after its successor serves, the answer is the full mesh",
    features: &[],
    needs: &[Capability::RestartReplicas],
    scenarios: &["network-faults"],
}

/// Requests sent through the proxy while the replica restarts.
const OUTAGE_ASKS: usize = 3;

async fn run(ctx: &Ctx) -> Checked {
    let before = ctx.replicas();
    let Some(victim) = before.last().cloned() else {
        return Err(fail("bench: no replicas"));
    };
    // A proxy already wrong before the restart fails here (waiting out the
    // bound after it would tell nothing more).
    full_answer(ctx)
        .await
        .map_err(|e| format!("before the restart: {e}"))?;
    let mut problems = Vec::new();
    let Some(restart) = ctx.control_plane.restart(&victim.name) else {
        return Err(skip(format!(
            "the {} topology was set up without a way to restart replicas",
            ctx.control_plane.topology()
        )));
    };
    // istioctl users keep asking while the replica restarts: the proxy sees
    // it fail (answers in the outage are not judged: on a real cluster the
    // mesh is moving then), and must still pick it up again afterwards.
    let (restarted, _) = futures::future::join(restart, async {
        for _ in 0..OUTAGE_ASKS {
            let _ = ctx.syncz().await;
            tokio::task::yield_now().await;
        }
    })
    .await;
    restarted.map_err(|e| format!("bench: cannot restart {}: {e}", victim.name))?;
    let successor = ctx
        .replicas()
        .into_iter()
        .find(|r| !before.contains(r))
        .map(|r| format!("{} ({})", r.name, r.tls_addr))
        .unwrap_or_else(|| format!("{} (the same address)", victim.name));
    // Converges: wait for the condition, bounded.
    let bound = ctx.control_plane.converge_after_restart() + ctx.proxy.discovery_refresh;
    match converges(bound, || full_answer(ctx)).await {
        Ok(t) => ctx.note(format!(
            "{} ({}) restarted as {successor}; full mesh {t:.1?} after it served",
            victim.name, victim.tls_addr
        )),
        Err(e) => problems.push(format!(
            "{}s after {} restarted as {successor}, the proxy's answer is still not the full mesh: {e}",
            bound.as_secs(),
            victim.name
        )),
    }
    verdict(problems)
}
