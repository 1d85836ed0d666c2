//! Helpers several checks share.

use super::context::ClientErrorExt;
use super::context::{CheckContext, ISTIOCTL_TIMEOUT, client_configs, node_id};
use super::control_plane::{NetworkFaults, Replica};
use super::{Checked, Verdict, fail, verdict};
use fake_istiod::scenario::Fault;
use proto::envoy::envoy::service::status::v3::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Does `text` name the replica (pod name, or one of its addresses)?
pub fn names_replica(text: &str, r: &Replica) -> bool {
    r.named_in(text)
}

/// Ids with how often they occur.
pub fn id_counts(ccs: &[ClientConfig]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for cc in ccs {
        *m.entry(node_id(cc).to_string()).or_insert(0) += 1;
    }
    m
}

/// Lists at most a few items, then "and N more".
pub fn few<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let all: Vec<String> = items.into_iter().map(|t| t.to_string()).collect();
    let shown = all.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > 5 {
        format!("{shown} and {} more", all.len() - 5)
    } else {
        shown
    }
}

/// Compares the set of proxy ids the proxy returned with the expected one.
pub fn compare_ids(got: &[ClientConfig], expected: &BTreeSet<String>, problems: &mut Vec<String>) {
    let counts = id_counts(got);
    let got_ids: BTreeSet<String> = counts.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&got_ids).collect();
    let invented: Vec<&String> = got_ids.difference(expected).collect();
    let doubled: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| format!("{id} (x{n})"))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} proxies missing from the merged answer: {}",
            missing.len(),
            expected.len(),
            few(missing)
        ));
    }
    if !invented.is_empty() {
        problems.push(format!(
            "{} proxies no replica reported: {}",
            invented.len(),
            few(invented)
        ));
    }
    if !doubled.is_empty() {
        problems.push(format!("proxies listed more than once: {}", few(doubled)));
    }
}

/// Faults after which a replica gives no usable answer (a delay, a duplicate
/// claim or flapping do not count).
pub fn makes_replica_fail(f: &Fault) -> bool {
    matches!(
        f,
        Fault::Down
            | Fault::Reset
            | Fault::Hang
            | Fault::GrpcError { .. }
            | Fault::Garbage
            | Fault::Truncated
    ) || matches!(f, Fault::Poison(p) if p.poisons_syncz())
}

/// The replicas the scenario makes fail (down, reset, hang, gRPC error,
/// garbage, truncated, a poisoned syncz row).
pub fn failing_replicas(ctx: &CheckContext) -> Vec<Replica> {
    let Ok(mesh) = ctx.scripted() else {
        return Vec::new();
    };
    let failing: BTreeSet<&str> = mesh
        .scenario()
        .replicas
        .iter()
        .filter(|r| r.fault.as_ref().is_some_and(makes_replica_fail))
        .map(|r| r.name.as_str())
        .collect();
    ctx.replicas()
        .into_iter()
        .filter(|r| failing.contains(r.name.as_str()))
        .collect()
}

/// The rule every resilience check applies: with `failed` replicas failing,
/// a syncz request through the proxy must come back within istioctl's timeout
/// and must never be silently partial — either a gRPC error naming every failed
/// replica, or every healthy replica's proxies plus a marker row naming each
/// failed one.
pub async fn never_silently_partial(ctx: &CheckContext, failed: &[Replica]) -> Checked {
    if failed.is_empty() {
        return Err(fail(
            "the scenario has no failing replica: the bench is misconfigured",
        ));
    }
    // Ground truth from the healthy replicas only.
    let mut expected = BTreeSet::new();
    for r in ctx.replicas() {
        if failed.iter().any(|f| f.name == r.name) {
            continue;
        }
        match ctx.replica_fetch(&r, proto::type_url::SYNCZ, &[]).await {
            Ok(resp) => match client_configs(&resp) {
                Ok(ccs) => expected.extend(ccs.iter().map(|c| node_id(c).to_string())),
                Err(e) => return Err(fail(format!("bench: replica {}: {e}", r.name))),
            },
            Err(e) => {
                return Err(fail(format!(
                    "bench: cannot ask healthy replica {}: {e}",
                    r.name
                )));
            }
        }
    }
    let names = few(failed.iter().map(|r| r.name.clone()));
    let t0 = Instant::now();
    let answer = ctx.syncz().await;
    let took = t0.elapsed();
    if took >= ISTIOCTL_TIMEOUT {
        return Err(fail(format!(
            "answered after {took:.1?}: istioctl gives up at {ISTIOCTL_TIMEOUT:?} (timeout, still waiting for updates)"
        )));
    }
    match answer {
        Err(e) if e.is_timeout() => Err(fail(format!(
            "no answer within istioctl's {ISTIOCTL_TIMEOUT:?} timeout while {names} failed"
        ))),
        Err(e) => {
            let text = e.to_string();
            let unnamed: Vec<&str> = failed
                .iter()
                .filter(|r| !names_replica(&text, r))
                .map(|r| r.name.as_str())
                .collect();
            if unnamed.is_empty() {
                Ok(())
            } else {
                Err(fail(format!(
                    "the error does not say which replica failed (expected {} or its address): {text}",
                    unnamed.join(", ")
                )))
            }
        }
        Ok(resp) => {
            let ccs = match client_configs(&resp) {
                Ok(c) => c,
                Err(e) => {
                    return Err(fail(format!(
                        "the answer carries what a failing replica sent without checking it: {e}"
                    )));
                }
            };
            let mut problems = Vec::new();
            let got: BTreeSet<String> = ccs.iter().map(|c| node_id(c).to_string()).collect();
            let missing: Vec<&String> = expected.difference(&got).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{} proxies of healthy replicas are missing: {}",
                    missing.len(),
                    few(missing)
                ));
            }
            for r in failed {
                let marked = got
                    .iter()
                    .any(|id| !expected.contains(id) && names_replica(id, r));
                if !marked {
                    problems.push(format!(
                        "silently partial: replica {} failed, yet the answer is OK with no error and no row naming it",
                        r.name
                    ));
                }
            }
            verdict(problems)
        }
    }
}

/// Runs `f` and reports how long it took.
pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t0 = Instant::now();
    let v = f.await;
    (v, t0.elapsed())
}

/// The proxy's answer against the replicas' own (asked directly, now):
/// `Err` says what differs.
pub async fn full_answer(ctx: &CheckContext) -> Result<(), String> {
    let expected = ctx.expected_ids().await?;
    let (_, ccs) = ctx.merged().await?;
    let mut problems = Vec::new();
    compare_ids(&ccs, &expected, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Waits, bounded, until `cond` holds; returns how long it took, or the
/// last reason it did not hold once `bound` has passed.
pub async fn converges<F, Fut>(bound: Duration, mut cond: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let t0 = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match cond().await {
            Ok(()) => return Ok(t0.elapsed()),
            Err(e) if t0.elapsed() >= bound => return Err(e),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// How a proxy answered while a replica was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReplica {
    /// The answer (or its error) names the lost replica.
    Named,
    /// The answer is the other replicas' mesh exactly: the proxy no longer
    /// asks the lost one (its discovery dropped it).
    Dropped,
}

/// The proxy's syncz answer while `lost` is gone (partitioned or removed),
/// judged against the other replicas asked directly: within istioctl's
/// timeout, never silently partial, never the lost replica's proxies from a
/// stale copy. The lost replica is named, or (a discovering proxy) no
/// longer asked.
pub async fn answer_without(ctx: &CheckContext, lost: &Replica) -> Result<LostReplica, String> {
    let expected = ids_without(ctx, lost).await?;
    let t0 = Instant::now();
    let answer = ctx.syncz().await;
    let took = t0.elapsed();
    match answer {
        Err(e) if e.is_timeout() || took >= ISTIOCTL_TIMEOUT => Err(format!(
            "no answer within istioctl's {ISTIOCTL_TIMEOUT:?} timeout while {} was lost",
            lost.name
        )),
        Err(e) if names_replica(&e.to_string(), lost) => Ok(LostReplica::Named),
        Err(e) => Err(format!(
            "an error that does not name the lost replica {} ({}): {e}",
            lost.name, lost.tls_addr
        )),
        Ok(resp) => {
            let ccs =
                client_configs(&resp).map_err(|e| format!("the answer cannot be decoded: {e}"))?;
            let got: BTreeSet<String> = ccs.iter().map(|c| node_id(c).to_string()).collect();
            let missing: Vec<&String> = expected.difference(&got).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "{} proxies of the replicas still there are missing: {}",
                    missing.len(),
                    few(missing)
                ));
            }
            let extra: Vec<&String> = got.difference(&expected).collect();
            let (named, other): (Vec<&String>, Vec<&String>) =
                extra.into_iter().partition(|id| names_replica(id, lost));
            // A live mesh's sidecars reconnect to the replicas still there
            // (real Envoys, light sidecars): one that moved between the
            // ground truth and the answer is reported by a replica now.
            let other: Vec<&String> = if other.is_empty() {
                other
            } else {
                let now = ids_without(ctx, lost).await?;
                other.into_iter().filter(|id| !now.contains(*id)).collect()
            };
            if !other.is_empty() {
                return Err(format!(
                    "rows no replica reports now (a stale copy of {}'s proxies?): {}",
                    lost.name,
                    few(other)
                ));
            }
            Ok(if named.is_empty() {
                LostReplica::Dropped
            } else {
                LostReplica::Named
            })
        }
    }
}

/// The proxies every replica but `lost` reports, asked directly.
async fn ids_without(ctx: &CheckContext, lost: &Replica) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    for r in ctx.replicas().into_iter().filter(|r| r.name != lost.name) {
        let resp = ctx
            .replica_fetch(&r, proto::type_url::SYNCZ, &[])
            .await
            .map_err(|e| format!("bench: cannot ask replica {}: {e}", r.name))?;
        let ccs = client_configs(&resp).map_err(|e| format!("bench: replica {}: {e}", r.name))?;
        ids.extend(ccs.iter().map(|c| node_id(c).to_string()));
    }
    Ok(ids)
}

/// What the network checks start from: the topology's network faults (a
/// skip with `skip` where it has none), the replica to lose (the last one),
/// and a proxy whose answer is the full mesh before anything changes
/// (otherwise a failure `before <change>`).
pub async fn network_victim<'a>(
    ctx: &'a CheckContext,
    skip: &str,
    change: &str,
) -> Result<(&'a dyn NetworkFaults, Replica), Verdict> {
    let Some(net) = ctx.control_plane.network() else {
        return Err(Verdict::Skip(skip.to_string()));
    };
    let Some(victim) = ctx.replicas().last().cloned() else {
        return Err(fail("bench: no replicas"));
    };
    if let Err(e) = full_answer(ctx).await {
        return Err(fail(format!("before {change}: {e}")));
    }
    Ok((net, victim))
}
