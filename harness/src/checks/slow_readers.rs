//! `slow-readers`: clients that ask for a large answer and never read it. A
//! proxy that computes and holds every such answer until its client reads it
//! can be driven out of memory by a few dozen connections (40 clients not
//! reading 12 MB answers took a proxy to 1 GB). Clients, each on its own
//! connection, ask for syncz of a 6,000-proxy mesh (about 2.5 MB) and read
//! nothing beyond their first HTTP/2 window: [`PACE`] of them wait for their
//! answer at a time, a new one starting as one is answered or refused, for
//! [`ATTACK_TIME`] (at most [`READERS`]); each holds its connection and its
//! stream to the end. Then a normal istioctl client must be answered within
//! [`BOUND`], and the proxy's memory (when the runner can read it) may grow by
//! at most [`MAX_GROWTH`]. How many slow readers a proxy lets in during the
//! attack time is its own doing: the reference proxy takes about five (it
//! makes each new one wait until a reader that stalls gives its answer slot
//! up); one that holds every answer takes all it can compute, and is caught
//! holding them.
//!
//! A proxy may refuse slow readers (ResourceExhausted), make them wait, or
//! close their connections; what it may not do is hold all their answers or
//! let them starve everyone else.
//!
//! Why a medium mesh, not `large-mesh`: the attack is bounded by how fast the
//! proxy (and the replicas) compute answers, and a proxy's memory while it
//! computes a few answers at once is several times one answer. With 10 MB
//! answers a debug build computes only about six in the attack's time, which
//! a proxy holding them all and one holding none tell apart by little more
//! than noise; with 2.5 MB answers the attack gets through all 40, and
//! holding them (~100 MB and more) stands well above computing a few.

use crate::client;
use crate::suite::attacks::{
    MemoryBound, mib_bytes, normal_client_answered_within, with_memory_bound,
};
use crate::suite::prelude::*;
use prost::Message;
use std::time::{Duration, Instant};

crate::check! {
    id: "slow-readers",
    profile: Profile::Robustness,
    description: "clients that never read a 2.5 MB syncz answer, two waiting at a time for 2s (up to 40, each holding its connection): the proxy holds at most 8 of their answers, answers a normal client within 10s, and grows by at most 96 MiB",
    features: &[],
    // The attack needs answers far larger than the clients' windows: a mesh
    // of 6,000 proxies that only a scripted mesh provides.
    needs: &[Capability::ScriptedMesh],
    scenarios: &["medium-mesh"],
    // Measures the proxy's memory under an attack.
    isolation: Isolation::Alone,
}

/// Clients that never read (each on its own connection: per-connection
/// limits must not be what saves the proxy).
const READERS: usize = 40;
/// Slow readers waiting for their answer at once; the next starts when one
/// is answered or refused. The proxy can compute the answers (a proxy that
/// holds them all then shows it), and the attack measures what slow readers
/// make the proxy hold, not how fast it computes many at once.
const PACE: usize = 2;
/// No new slow reader starts after this long, and those still waiting for
/// their answer then are counted as such (the note says how many did what).
/// The `unbounded-answers` defect has about 20 answers out in this time (a
/// debug build), more than [`MAX_PENDING`].
const ATTACK_TIME: Duration = Duration::from_secs(2);
/// The normal client's bound (istioctl's own timeout is 30 s).
const BOUND: Duration = Duration::from_secs(10);
/// How much the proxy's resident memory may grow during the attack. The
/// reference grew by 21-34 MiB (debug build; README, "peak memory per
/// attack"): it computes at most 2 answers at once here and keeps at most 4
/// for clients that do not read. A proxy that holds all 40 answers grew by
/// 130 MiB (the `unbounded-answers` defect: 40 × 2.5 MB encoded and what it
/// keeps around them).
const MAX_GROWTH: MemoryBound = MemoryBound {
    process_tree: mib_bytes(96),
};
/// The attacking clients' HTTP/2 windows (stream and connection): what each
/// of them buffers at most, since they never read. Small, so that the
/// attackers' own buffers do not count in an in-process measurement.
const ATTACKER_WINDOW: u32 = 64 * 1024;
/// Answers started and not read that a proxy may still hold at the end of
/// the attack (the reference holds at most its 4 answer slots; twice that
/// leaves room for other designs). A proxy that holds every slow
/// reader's answer holds all of them: 40 when the attack gets through.
const MAX_PENDING: usize = 8;
/// How long the slow readers may take to say whether their answer is still pending.
const CENSUS_BOUND: Duration = Duration::from_secs(2);
/// After the normal client was answered, the attack stays on this long more
/// (sampling memory): answers the proxy computes late still show.
const LINGER: Duration = Duration::from_millis(500);

async fn run(ctx: &Ctx) -> Checked {
    let mut problems = Vec::new();
    let result = with_memory_bound(
        ctx,
        MAX_GROWTH,
        "the slow readers' attack",
        &mut problems,
        attack(ctx),
    )
    .await;
    problems.extend(result.err());
    verdict(problems)
}

/// What one slow reader came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reader {
    /// The answer started to arrive (the proxy computed it); not read further.
    Arrived,
    /// The proxy answered with this gRPC status instead (e.g. busy).
    Refused(String),
    /// The stream or connection was closed (e.g. the proxy gave up on it).
    Closed(String),
    /// Nothing happened within the bound.
    Pending,
}

/// gRPC's length-prefixed message frame.
fn grpc_frame(msg: &[u8]) -> prost::bytes::Bytes {
    let mut f = Vec::with_capacity(msg.len() + 5);
    f.push(0);
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f.into()
}

/// One slow reader on its own connection: sends istioctl's syncz request,
/// waits until the answer starts to arrive (or is refused), reports that on
/// `settled`, then holds stream and connection, reading nothing more, until
/// `release`; then tells `census` whether the answer is still pending (the
/// proxy holds the rest of it) or the proxy closed the stream or connection.
/// Raw HTTP/2 (h2), because it must see the answer start without opening its
/// flow-control window: hyper would give the window back on every frame it
/// reads.
async fn slow_reader(
    opts: client::ClientOptions,
    request: prost::bytes::Bytes,
    settled: tokio::sync::mpsc::Sender<Reader>,
    mut release: tokio::sync::watch::Receiver<bool>,
    census: tokio::sync::mpsc::Sender<bool>,
) {
    let settle = |r: Reader| {
        let settled = settled.clone();
        async move {
            let _ = settled.send(r).await;
        }
    };
    let io = match client::dial(&opts).await {
        Ok(io) => io,
        Err(e) => return settle(Reader::Closed(e.to_string())).await,
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(ATTACKER_WINDOW)
        .initial_connection_window_size(ATTACKER_WINDOW)
        .handshake::<_, prost::bytes::Bytes>(io)
        .await;
    let (h2, connection) = match handshake {
        Ok(h) => h,
        Err(e) => return settle(Reader::Closed(format!("HTTP/2 handshake: {e}"))).await,
    };
    // The connection's frames are processed here, as long as the reader lives.
    let connection = tokio::spawn(connection);
    let held = async {
        let mut h2 = h2
            .ready()
            .await
            .map_err(|e| Reader::Closed(e.to_string()))?;
        let scheme = if matches!(
            opts.credentials,
            client::Credentials::PlaintextWithToken { .. } | client::Credentials::Plaintext
        ) {
            "http"
        } else {
            "https"
        };
        let mut req = http::Request::post(format!("{scheme}://{}{ADS_PATH}", opts.address))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = opts.credentials.token() {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(()).map_err(|e| Reader::Closed(e.to_string()))?;
        let (answer, mut send) = h2
            .send_request(req, false)
            .map_err(|e| Reader::Closed(e.to_string()))?;
        // The request stream stays open, as istioctl's does.
        send.send_data(request, false)
            .map_err(|e| Reader::Closed(e.to_string()))?;
        let answer = answer.await.map_err(|e| Reader::Closed(e.to_string()))?;
        if let Some(status) = answer.headers().get("grpc-status") {
            return Err(Reader::Refused(format!("grpc-status {status:?}")));
        }
        let mut body = answer.into_body();
        match body.data().await {
            // Deliberately no `flow_control().release_capacity`: the proxy
            // may send no more than the window.
            Some(Ok(_first)) => Ok((send, body)),
            Some(Err(e)) => Err(Reader::Closed(e.to_string())),
            None => match body.trailers().await {
                Ok(Some(t)) => Err(Reader::Refused(format!(
                    "grpc-status {:?}",
                    t.get("grpc-status")
                ))),
                Ok(None) => Err(Reader::Closed("ended with no answer".into())),
                Err(e) => Err(Reader::Closed(e.to_string())),
            },
        }
    };
    match tokio::time::timeout(SETTLE_BOUND, held).await {
        Ok(Ok((send, mut body))) => {
            settle(Reader::Arrived).await;
            let _ = tokio::time::timeout(SETTLE_BOUND, release.wait_for(|r| *r)).await;
            // Is the proxy still holding the rest of this answer for us?
            use futures::FutureExt;
            let pending = !connection.is_finished()
                && match body.data().now_or_never() {
                    // Nothing new: open, waiting for a window we never give.
                    None | Some(Some(Ok(_))) => true,
                    // Reset, closed, or the connection is gone.
                    Some(Some(Err(_)) | None) => false,
                };
            let _ = census.send(pending).await;
            drop(send);
        }
        Ok(Err(r)) => settle(r).await,
        Err(_) => settle(Reader::Pending).await,
    }
    connection.abort();
}

const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// How long the slow readers may take to be answered or refused: a proxy
/// deals with 40 requests within its request deadline (istioctl's 30 s at
/// most; the bundled proxy's is 4 s).
const SETTLE_BOUND: Duration = Duration::from_secs(12);

/// The attack, then the normal client: `Err` when the normal client was not answered.
async fn attack(ctx: &Ctx) -> Result<(), String> {
    let opts = ctx.istioctl();
    let request = grpc_frame(&ctx.request(proto::type_url::SYNCZ, &[]).encode_to_vec());
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (settled_tx, mut settled_rx) = tokio::sync::mpsc::channel(READERS);
    let (census_tx, mut census_rx) = tokio::sync::mpsc::channel(READERS);
    let started = Instant::now();
    // At most PACE readers wait for their answer at a time (see PACE).
    let mut tasks = Vec::with_capacity(READERS);
    let mut outcomes = Vec::with_capacity(READERS);
    let mut outstanding = 0;
    loop {
        while outstanding < PACE && tasks.len() < READERS && started.elapsed() < ATTACK_TIME {
            tasks.push(tokio::spawn(slow_reader(
                opts.clone(),
                request.clone(),
                settled_tx.clone(),
                release_rx.clone(),
                census_tx.clone(),
            )));
            outstanding += 1;
        }
        if outstanding == 0 {
            break;
        }
        // Readers still waiting at the end of the attack time count as such.
        let left = ATTACK_TIME.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, settled_rx.recv()).await {
            Ok(Some(r)) => {
                outcomes.push(r);
                outstanding -= 1;
            }
            _ => break,
        }
    }
    let settled_after = started.elapsed();
    let normal = normal_client_answered_within(ctx, BOUND).await;
    if normal.is_ok() {
        // Keep the attack on a little longer while memory is sampled.
        tokio::time::sleep(LINGER).await;
    }

    let _ = release_tx.send(true);
    drop(census_tx);
    let arrived = outcomes.iter().filter(|r| **r == Reader::Arrived).count();
    let mut pending = 0;
    let mut counted = 0;
    let census_until = tokio::time::Instant::now() + CENSUS_BOUND;
    while counted < arrived {
        match tokio::time::timeout_at(census_until, census_rx.recv()).await {
            Ok(Some(p)) => {
                counted += 1;
                pending += usize::from(p);
            }
            _ => break,
        }
    }
    let launched = tasks.len();
    for t in tasks {
        t.abort();
    }
    let count = |f: fn(&Reader) -> bool| outcomes.iter().filter(|r| f(r)).count();
    let summary = format!(
        "of {} slow readers ({PACE} waiting at a time, started for {:.1}s), {} had their answer started, {} were refused, {} closed, {} still waiting after {:.1}s",
        launched,
        ATTACK_TIME.as_secs_f64(),
        count(|r| *r == Reader::Arrived),
        count(|r| matches!(r, Reader::Refused(_))),
        count(|r| matches!(r, Reader::Closed(_))),
        launched - outcomes.len() + count(|r| *r == Reader::Pending),
        settled_after.as_secs_f64(),
    );
    let summary = format!("{summary}; at the end {pending} answers were still pending");
    let mut problems = Vec::new();
    match &normal {
        Ok(took) => ctx.note(format!(
            "{summary}; a normal client was answered in {:.1}s",
            took.as_secs_f64()
        )),
        Err(e) => problems.push(format!("{summary}; then: {e}")),
    }
    if pending > MAX_PENDING {
        problems.push(format!(
            "the proxy still held {pending} answers for clients that read none of them \
             (at most {MAX_PENDING} allowed: evict or close slow readers, or bound how many \
             answers may wait for their client)"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
