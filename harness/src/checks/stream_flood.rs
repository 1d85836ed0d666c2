//! `stream-flood`: one client opens 2,000 ADS streams on one connection and
//! sends nothing on them; a normal istioctl client (its own connection) must
//! still be answered within 10 s. A proxy may cap streams per connection
//! (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: the rest then wait in the
//! flooding client); what it may not do is let them starve everyone else.

use crate::client;
use crate::suite::attacks::{
    EXCHANGE_BOUND, MemoryBound, Raw, mib_bytes, normal_client_answered, under_memory_bound,
};
use crate::suite::prelude::*;
use futures::StreamExt;
use std::time::Duration;

crate::check! {
    id: "stream-flood",
    profile: Profile::Robustness,
    description: "2,000 silent streams on one connection: a normal client is still answered within 10s; the proxy grows by at most 64 MiB",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
    // Measures the proxy's memory under an attack.
    isolation: Isolation::Alone,
}

const STREAMS: usize = 2000;
/// How long the flood is given to land before the normal client asks (an
/// attack's timing, not a synchronisation: nothing to wait for is observable).
const LAND: Duration = Duration::from_millis(500);

/// How much the proxy's resident memory may grow during the attack: the
/// reference grew by 2 MiB (it admits 100 streams per connection; README,
/// "peak memory per attack"); the bound leaves room for a proxy that
/// admits all 2,000 silent streams (a few KiB each).
const MAX_GROWTH: MemoryBound = MemoryBound {
    process_tree: mib_bytes(64),
};

async fn run(ctx: &Ctx) -> Checked {
    under_memory_bound(ctx, MAX_GROWTH, "the stream flood", attack(ctx)).await
}

async fn attack(ctx: &Ctx) -> Checked {
    let opts = ctx.istioctl();
    let channel = match tokio::time::timeout(EXCHANGE_BOUND, client::connect(&opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(fail(format!("the flooding client cannot connect: {e}"))),
        Err(_) => return Err(fail("the flooding client cannot connect within 10s")),
    };
    let token = opts.credentials.token().map(str::to_string);
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        let token = token.clone();
        let mut release = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let hold = async {
                if grpc.ready().await.is_err() {
                    return;
                }
                // A request stream that never yields and stays open.
                let mut stop = release.clone();
                let out = futures::stream::once(async move {
                    let _ = stop.wait_for(|r| *r).await;
                })
                .filter_map(|_| async { None::<Vec<u8>> });
                let mut req = tonic::Request::new(out);
                if let Some(t) = token
                    && let Ok(v) = format!("Bearer {t}").parse()
                {
                    req.metadata_mut().insert("authorization", v);
                }
                let path = http::uri::PathAndQuery::from_static(
                    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
                );
                let _ = grpc.streaming(req, path, Raw).await;
                let _ = release.wait_for(|r| *r).await;
            };
            // Bounded: every stream is let go within the check's time.
            let _ = tokio::time::timeout(EXCHANGE_BOUND * 3, hold).await;
        }));
    }
    tokio::time::sleep(LAND).await;
    let outcome = match normal_client_answered(ctx).await {
        Ok(_) => Ok(()),
        Err(e) => Err(fail(format!(
            "with {STREAMS} silent streams open on one connection: {e}"
        ))),
    };
    let _ = release_tx.send(true);
    for t in tasks {
        t.abort();
    }
    outcome
}
