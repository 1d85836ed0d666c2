//! `oversized-request`: istioctl's requests are a few hundred bytes; a proxy
//! that reads and holds requests of any size can be driven out of memory by
//! one client. Requests of 8 MiB (valid `DiscoveryRequest`s, several at once
//! on one connection) must be refused with a gRPC error, and the proxy must
//! keep serving.

use crate::suite::attacks::{
    MemoryBound, RawOutcome, field, mib_bytes, normal_client_answered, raw_exchange,
    under_memory_bound,
};
use crate::suite::prelude::*;

crate::check! {
    id: "oversized-request",
    profile: Profile::Robustness,
    description: "8 MiB requests (valid protobuf, 8 at once) are refused by the proxy itself (ResourceExhausted or InvalidArgument); the proxy keeps serving and grows by at most 32 MiB",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
    // Measures the proxy's memory under an attack.
    isolation: Isolation::Alone,
}

/// Size and count: bounded, well above anything istioctl sends.
const SIZE: usize = 8 * 1024 * 1024;
const AT_ONCE: usize = 8;
const PROBE_TYPE: &str = "istio.io/debug/oversized-request-probe";

/// How much the proxy's resident memory may grow during the attack. A
/// proxy that refuses oversized requests unread holds at most its HTTP/2
/// receive windows (the reference: 1 MiB per connection, 8 here); the
/// reference grew by 1 MiB (README, "peak memory per attack"), one that
/// reads them in full by 46 MiB.
const MAX_GROWTH: MemoryBound = MemoryBound {
    process_tree: mib_bytes(32),
};

async fn run(ctx: &Ctx) -> Checked {
    under_memory_bound(ctx, MAX_GROWTH, "the oversized requests", attack(ctx)).await
}

async fn attack(ctx: &Ctx) -> Checked {
    // A request with one huge resource name, of a type URL no proxy serves:
    // a proxy that reads it in full answers Unimplemented (or passes it on),
    // one that refuses it unread says ResourceExhausted.
    let mut msg = field(4, PROBE_TYPE.as_bytes());
    msg.extend(field(3, &vec![b'a'; SIZE]));
    let opts = ctx.istioctl();
    let outcomes =
        futures::future::join_all((0..AT_ONCE).map(|_| raw_exchange(&opts, vec![msg.clone()])))
            .await;
    let mut wrong = Vec::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        match o {
            // The proxy's own refusal; Unavailable and the like would mean
            // it read the request in full and passed it on to istiod.
            RawOutcome::Status(
                tonic::Code::ResourceExhausted
                | tonic::Code::InvalidArgument
                | tonic::Code::OutOfRange
                | tonic::Code::Internal,
                _,
            ) => {}
            // A connection reset counts as a refusal too.
            RawOutcome::Transport(_) => {}
            other => wrong.push((i + 1, other.to_string())),
        }
    }
    let mut problems = Vec::new();
    if let Some((_, first)) = wrong.first() {
        problems.push(format!(
            "{} of {AT_ONCE} 8 MiB requests were not refused by the proxy itself \
             (ResourceExhausted or InvalidArgument expected); request #{}: {first}",
            wrong.len(),
            wrong[0].0
        ));
    }
    if let Err(e) = normal_client_answered(ctx).await {
        problems.push(format!("after the oversized requests: {e}"));
    }
    verdict(problems)
}
