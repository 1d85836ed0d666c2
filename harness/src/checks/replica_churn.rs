//! `replica-churn`: replicas that go away or come back, and proxies that move between
//! replicas, are picked up between requests.

use crate::suite::context::node_id;
use crate::suite::prelude::*;
use fake_istiod::scenario::Fault;

crate::check! {
    id: "replica-churn",
    profile: Profile::Resilience,
    description: "a replica that goes down, comes back, or a proxy that moves replica, shows in the next answer",
    features: &[],
    needs: &[Capability::ReplicaFaults, Capability::MoveProxies],
    scenarios: &["three-replicas"],
}

async fn full_answer(ctx: &Ctx, step: &str) -> Result<(), String> {
    let expected = ctx.expected_ids().await?;
    let (_, ccs) = ctx.merged().await.map_err(|e| format!("{step}: {e}"))?;
    let mut problems = Vec::new();
    compare_ids(&ccs, &expected, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{step}: {}", problems.join("; ")))
    }
}

async fn run(ctx: &Ctx) -> Checked {
    let mesh = ctx.scripted()?;
    let replicas = ctx.replicas();
    let Some(last) = replicas.last().cloned() else {
        return Err(fail("bench: no replicas"));
    };
    let mut problems = Vec::new();
    if let Err(e) = full_answer(ctx, "before any change").await {
        problems.push(e);
    }
    // 1. The last replica goes down.
    mesh.set_fault(&last.name, Some(Fault::Down))
        .await
        .map_err(|e| format!("bench: cannot take {} down: {e}", last.name))?;
    if let Err(Verdict::Fail(why)) = never_silently_partial(ctx, std::slice::from_ref(&last)).await
    {
        problems.push(format!("after {} went down: {why}", last.name));
    }
    // 2. It comes back: its proxies must be back in the next answer.
    mesh.set_fault(&last.name, None)
        .await
        .map_err(|e| format!("bench: cannot bring {} back: {e}", last.name))?;
    if let Err(e) = full_answer(ctx, &format!("after {} came back", last.name)).await {
        problems.push(e);
    }
    // 3. A proxy reconnects to another replica.
    let truth = ctx.ground_truth().await.unwrap_or_default();
    let mover = truth.iter().find_map(|(r, ccs)| {
        ccs.first()
            .map(|c| (r.name.clone(), node_id(c).to_string()))
    });
    if let Some((from, id)) = mover {
        let to = replicas
            .iter()
            .find(|r| r.name != from)
            .map(|r| r.name.clone());
        if let Some(to) = to {
            match mesh.move_proxy(&id, &to).await {
                Ok(()) => {
                    if let Err(e) =
                        full_answer(ctx, &format!("after {id} moved from {from} to {to}")).await
                    {
                        problems.push(e);
                    }
                }
                Err(e) => problems.push(format!("bench: cannot move {id}: {e}")),
            }
        }
    }
    verdict(problems)
}
