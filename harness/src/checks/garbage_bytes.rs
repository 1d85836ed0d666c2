//! `garbage-bytes`: whatever arrives on the proxy's port (random bytes, an
//! HTTP/1.1 request, an HTTP/2 preface followed by malformed frames), a
//! normal istioctl client is still answered afterwards.

use crate::suite::attacks::{
    EXCHANGE_BOUND, MemoryBound, mib_bytes, normal_client_answered, under_memory_bound,
};
use crate::suite::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

crate::check! {
    id: "garbage-bytes",
    profile: Profile::Robustness,
    description: "random bytes, HTTP/1.1 and malformed HTTP/2 frames on the port: a normal client is still answered",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
    // Measures the proxy's memory under an attack.
    isolation: Isolation::Alone,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Deterministic pseudo-random bytes (xorshift), so every run sends the same.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed & 0xff) as u8
        })
        .collect()
}

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut bad_frames = PREFACE.to_vec();
    // SETTINGS with a length that is not a multiple of 6, then a DATA frame on
    // stream 0, then a frame claiming 16 MiB.
    bad_frames.extend([0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]);
    bad_frames.extend([0, 0, 3, 0, 0, 0, 0, 0, 0, b'x', b'y', b'z']);
    bad_frames.extend([0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 1]);
    vec![
        (
            "64 KiB of random bytes",
            noise(64 * 1024, 0x9e37_79b9_7f4a_7c15),
        ),
        (
            "an HTTP/1.1 request",
            b"GET / HTTP/1.1\r\nHost: istioctl-proxy\r\n\r\n".to_vec(),
        ),
        ("an HTTP/2 preface, then malformed frames", bad_frames),
        (
            "a half HTTP/2 preface, then nothing",
            PREFACE[..10].to_vec(),
        ),
    ]
}

/// How much the proxy's resident memory may grow during the attack: a few
/// short connections of garbage; the reference grew by under 1 MiB (README,
/// "peak memory per attack").
const MAX_GROWTH: MemoryBound = MemoryBound {
    process_tree: mib_bytes(32),
};

async fn run(ctx: &Ctx) -> Checked {
    under_memory_bound(ctx, MAX_GROWTH, "the garbage", attack(ctx)).await
}

async fn attack(ctx: &Ctx) -> Checked {
    let mut problems = Vec::new();
    for (what, bytes) in payloads() {
        let sent = tokio::time::timeout(EXCHANGE_BOUND, async {
            let mut s = tokio::net::TcpStream::connect(ctx.proxy.address.as_str()).await?;
            s.write_all(&bytes).await?;
            // Read whatever comes back (bounded), so the proxy sees a live peer.
            let mut buf = vec![0; 4096];
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut buf)).await;
            Ok::<_, std::io::Error>(())
        })
        .await;
        // A refused or reset connection is the proxy's right; only what
        // follows matters.
        let _ = sent;
        if let Err(e) = normal_client_answered(ctx).await {
            problems.push(format!("after {what}: {e}"));
        }
    }
    verdict(problems)
}
