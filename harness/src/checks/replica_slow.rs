//! `replica-slow`: slow replicas (each answering after a delay) still give the full
//! answer, in about one delay, not the sum (fan-out must be parallel).

use crate::suite::context::client_configs;
use crate::suite::prelude::*;

crate::check! {
    id: "replica-slow",
    profile: Profile::Resilience,
    description: "replicas that each answer after a delay give the full answer in about one delay (parallel fan-out)",
    features: &[],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["slow-replicas"],
    // One delay against the sum of all: an attack beside it would blur that.
    isolation: Isolation::Timed,
}

async fn run(ctx: &Ctx) -> Checked {
    let mesh = ctx.scripted()?;
    let delays: Vec<u64> = mesh
        .scenario()
        .replicas
        .iter()
        .filter_map(|r| match r.fault {
            Some(fake_istiod::scenario::Fault::Delay(d)) => Some(d.as_millis() as u64),
            _ => None,
        })
        .collect();
    let (Some(&slowest), sum) = (delays.iter().max(), delays.iter().sum::<u64>()) else {
        return Err(fail("bench: the scenario has no delayed replica"));
    };
    if delays.len() < 2 {
        return Err(fail(
            "bench: the scenario needs at least two delayed replicas",
        ));
    }
    let expected = ctx.expected_ids().await?;
    let (answer, took) = timed(ctx.syncz()).await;
    let mut problems = Vec::new();
    match answer {
        Err(e) => problems.push(format!(
            "replicas answering within {slowest} ms made the request fail after {took:.1?}: {e}"
        )),
        Ok(resp) => match client_configs(&resp) {
            Err(e) => problems.push(e),
            Ok(ccs) => compare_ids(&ccs, &expected, &mut problems),
        },
    }
    // Parallel: about the slowest delay. Sequential: about the sum.
    let limit_ms = slowest + (sum - slowest) / 2;
    if took.as_millis() as u64 > limit_ms {
        problems.push(format!(
            "took {} ms with replicas answering after {} ms each: the slowest alone is {slowest} ms, their sum {sum} ms; the fan-out looks sequential",
            took.as_millis(),
            delays.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("/"),
        ));
    }
    verdict(problems)
}
