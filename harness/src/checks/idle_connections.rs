//! `idle-connections`: 2,000 connections that are opened and then say
//! nothing (half of them after the HTTP/2 preface) must not keep a normal
//! istioctl client from being answered. Needs about 2,000 file descriptors in
//! the harness (its soft open-file limit is raised to the hard limit) and, for
//! an in-process proxy, as many again.

use crate::suite::attacks::{
    MemoryBound, mib_bytes, normal_client_answered_within, raise_fd_limit, under_memory_bound,
};
use crate::suite::prelude::*;
use tokio::io::AsyncWriteExt;

crate::check! {
    id: "idle-connections",
    profile: Profile::Robustness,
    description: "2,000 idle connections open: a normal client is still answered within 5s; the proxy grows by at most 96 MiB",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
    // Measures the proxy's memory under an attack.
    isolation: Isolation::Alone,
}

const CONNECTIONS: usize = 2000;
/// The normal client's bound.
const BOUND: std::time::Duration = std::time::Duration::from_secs(5);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much the proxy's resident memory may grow during the attack: the
/// reference grew by 16 MiB for 2,000 connections (TLS and HTTP/2 state, 8
/// KiB each; README, "peak memory per attack"); the bound allows about 48
/// KiB per connection.
const MAX_GROWTH: MemoryBound = MemoryBound {
    process_tree: mib_bytes(96),
};

async fn run(ctx: &Ctx) -> Checked {
    under_memory_bound(ctx, MAX_GROWTH, "the idle connections", attack(ctx)).await
}

async fn attack(ctx: &Ctx) -> Checked {
    let limit = raise_fd_limit().unwrap_or(1024);
    // Both ends may live in this process (in-process proxy): keep headroom.
    let want = CONNECTIONS.min((limit as usize).saturating_sub(256) / 2);
    if want < CONNECTIONS {
        return Err(skip(format!(
            "the open-file limit ({limit}) allows only {want} idle connections here; \
             raise `ulimit -Hn` to at least {}",
            CONNECTIONS * 2 + 256
        )));
    }
    let started = std::time::Instant::now();
    let mut open = Vec::with_capacity(want);
    let mut refused = 0usize;
    let mut stalled_in_a_row = 0;
    for i in 0..want {
        // A proxy that stopped accepting: the backlog is full, stop trying.
        if stalled_in_a_row >= 5 {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            break;
        }
        let conn = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            tokio::net::TcpStream::connect(ctx.proxy.address.as_str()),
        )
        .await;
        match conn {
            Ok(Ok(mut s)) => {
                if i % 2 == 1 && !ctx.proxy.plaintext {
                    // TLS: a partial ClientHello record header.
                    let _ = s.write_all(&[0x16, 0x03, 0x01]).await;
                } else if i % 2 == 1 {
                    let _ = s.write_all(PREFACE).await;
                }
                open.push(s);
                stalled_in_a_row = 0;
            }
            _ => {
                refused += 1;
                stalled_in_a_row += 1;
            }
        }
    }
    let outcome = match normal_client_answered_within(ctx, BOUND).await {
        Ok(_) => Ok(()),
        Err(e) => Err(fail(format!(
            "with {} idle connections open ({refused} could not be opened): {e}",
            open.len()
        ))),
    };
    drop(open);
    outcome
}
