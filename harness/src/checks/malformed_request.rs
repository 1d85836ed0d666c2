//! `malformed-request`: bytes that are not a `DiscoveryRequest` (undecodable
//! protobuf, invalid UTF-8 in a string field) get a gRPC error, not a stream
//! closed with status OK and no answer (istioctl would then wait for its
//! whole timeout), and the proxy keeps serving.

use crate::suite::attacks::{
    MemoryBound, RawOutcome, field, mib_bytes, normal_client_answered, raw_exchange,
    under_memory_bound,
};
use crate::suite::prelude::*;

crate::check! {
    id: "malformed-request",
    profile: Profile::Robustness,
    description: "undecodable protobuf and invalid UTF-8 get a gRPC error, not a silent OK; the proxy keeps serving",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
    // Measures the proxy's memory under an attack.
    isolation: Isolation::Alone,
}

/// How much the proxy's resident memory may grow during the attack: three
/// tiny requests; the reference grew by under 1 MiB (README, "peak memory
/// per attack").
const MAX_GROWTH: MemoryBound = MemoryBound {
    process_tree: mib_bytes(32),
};

async fn run(ctx: &Ctx) -> Checked {
    under_memory_bound(ctx, MAX_GROWTH, "the malformed requests", attack(ctx)).await
}

async fn attack(ctx: &Ctx) -> Checked {
    let mut problems = Vec::new();
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "undecodable protobuf (a truncated varint)",
            vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01],
        ),
        (
            "invalid UTF-8 in type_url",
            field(4, &[b'i', 0xff, 0xfe, b'o']),
        ),
        // A field that claims more bytes than the message has.
        ("a truncated length-delimited field", vec![0x22, 0x7f, b'x']),
    ];
    for (what, bytes) in cases {
        match raw_exchange(&ctx.istioctl(), vec![bytes]).await {
            RawOutcome::Status(code, _) if code != tonic::Code::Ok => {}
            other => problems.push(format!("{what}: expected a gRPC error, got: {other}")),
        }
    }
    if let Err(e) = normal_client_answered(ctx).await {
        problems.push(format!("after the malformed requests: {e}"));
    }
    verdict(problems)
}
