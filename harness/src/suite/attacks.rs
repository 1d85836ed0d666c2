//! Shared by the `robustness` profile's checks: raw gRPC messages on the ADS
//! stream (bytes no well-behaved client would send), raw TCP connections, and
//! a bounded "is a normal client still answered" probe. Loopback only; every
//! loop is bounded in count and time.

use super::context::CheckContext;
use super::memory::{MemoryProbe, PeakSampler, mib};
use super::{Checked, Verdict, verdict};
use crate::client::{self, ClientError, ClientOptions};
use futures::StreamExt;
use std::time::{Duration, Instant};

pub use crate::client::raw::Raw;

/// How long a hostile exchange may take before the check gives up on it.
pub const EXCHANGE_BOUND: Duration = Duration::from_secs(10);
/// A normal istioctl client must be answered within this long during or
/// right after an attack.
pub const NORMAL_CLIENT_BOUND: Duration = Duration::from_secs(10);

/// What a raw exchange came to.
#[derive(Debug)]
pub enum RawOutcome {
    /// A message came back (its length).
    Answered(usize),
    /// The stream ended with this status (`Ok` = closed with no answer).
    Status(tonic::Code, String),
    /// Could not connect or start the call.
    Transport(String),
    /// Nothing within the bound.
    TimedOut,
}

impl std::fmt::Display for RawOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawOutcome::Answered(n) => write!(f, "answered with a {n}-byte message"),
            RawOutcome::Status(tonic::Code::Ok, _) => {
                write!(f, "closed the stream with status OK and no answer")
            }
            RawOutcome::Status(c, m) => {
                let m: String = m.chars().take(200).collect();
                write!(f, "gRPC status {c:?}: {m}")
            }
            RawOutcome::Transport(e) => write!(f, "transport error: {e}"),
            RawOutcome::TimedOut => write!(f, "no answer within {EXCHANGE_BOUND:?}"),
        }
    }
}

const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// Sends raw `messages` on one ADS stream (with istioctl's credentials) and
/// waits (bounded) for the first answer or the stream's end.
pub async fn raw_exchange(opts: &ClientOptions, messages: Vec<Vec<u8>>) -> RawOutcome {
    let fut = async {
        let channel = match client::connect(opts).await {
            Ok(c) => c,
            Err(e) => return RawOutcome::Transport(e.to_string()),
        };
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        if let Err(e) = grpc.ready().await {
            return RawOutcome::Transport(e.to_string());
        }
        let (_keep_open, rx) = tokio::sync::oneshot::channel::<()>();
        let out = futures::stream::iter(messages)
            .chain(futures::stream::once(rx).filter_map(|_| async { None }));
        let mut req = tonic::Request::new(out);
        if let Some(t) = opts.credentials.token()
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            req.metadata_mut().insert("authorization", v);
        }
        let path = http::uri::PathAndQuery::from_static(ADS_PATH);
        let mut inbound = match grpc.streaming(req, path, Raw).await {
            Ok(r) => r.into_inner(),
            Err(s) => return RawOutcome::Status(s.code(), s.message().to_string()),
        };
        match inbound.message().await {
            Ok(Some(m)) => RawOutcome::Answered(m.len()),
            Ok(None) => RawOutcome::Status(tonic::Code::Ok, String::new()),
            Err(s) => RawOutcome::Status(s.code(), s.message().to_string()),
        }
    };
    tokio::time::timeout(EXCHANGE_BOUND, fut)
        .await
        .unwrap_or(RawOutcome::TimedOut)
}

/// A length-delimited protobuf field (wire type 2).
pub fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut m = varint(u64::from(number) << 3 | 2);
    m.extend(varint(bytes.len() as u64));
    m.extend_from_slice(bytes);
    m
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// Whether a normal istioctl client is answered, within the bound; `Err`
/// says how it was not.
pub async fn normal_client_answered(ctx: &CheckContext) -> Result<Duration, String> {
    normal_client_answered_within(ctx, NORMAL_CLIENT_BOUND).await
}

/// [`normal_client_answered`] with another bound.
pub async fn normal_client_answered_within(
    ctx: &CheckContext,
    bound: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut opts = ctx.istioctl();
    opts.timeout = bound;
    match client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
        Ok(_) => Ok(started.elapsed()),
        Err(ClientError::Timeout { .. }) => Err(format!(
            "a normal istioctl client got no answer within {bound:?}"
        )),
        Err(e) => Err(format!(
            "a normal istioctl client failed after {:?}: {e}",
            started.elapsed()
        )),
    }
}

/// Raises this process's soft open-file limit to the hard limit (attacks with
/// thousands of connections need it); returns the limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    istioctl_proxy::limits::raise_fd_limit()
}

/// Sampling period of the proxy's memory during an attack: short enough to
/// catch a peak that lasts a fraction of a second, cheap enough (one `/proc`
/// scan) not to disturb the attack.
const MEMORY_SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The proxy's memory during an attack: its resident size before (the
/// baseline) and the peak while the attack ran, sampled in the background.
pub struct MemoryWatch {
    probe: MemoryProbe,
    baseline: u64,
    sampler: PeakSampler,
}

/// Why the memory part of a check could not run (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryUnmeasured(pub String);

impl MemoryWatch {
    /// Starts watching; `Err` says why memory cannot be read here (a proxy
    /// behind `--proxy-addr` is not the runner's process).
    pub fn start(ctx: &CheckContext) -> Result<MemoryWatch, MemoryUnmeasured> {
        let Some(probe) = ctx.memory else {
            return Err(MemoryUnmeasured(
                "memory not measured: the proxy runs outside the runner (--proxy-addr); \
                 its memory is only read for --proxy-cmd and the bundled proxy"
                    .into(),
            ));
        };
        if probe == MemoryProbe::HarnessProcess {
            trim_heap();
        }
        let Some(baseline) = probe.rss_bytes() else {
            return Err(MemoryUnmeasured(format!(
                "memory not measured: cannot read the resident size of {} from /proc",
                probe.describe()
            )));
        };
        Ok(MemoryWatch {
            probe,
            baseline,
            sampler: PeakSampler::start(probe, MEMORY_SAMPLE_EVERY),
        })
    }

    /// Stops watching: baseline and peak.
    pub async fn finish(self) -> MemoryReading {
        let peak = self.sampler.finish().await.unwrap_or(self.baseline);
        MemoryReading {
            probe: self.probe,
            baseline: self.baseline,
            peak: peak.max(self.baseline),
        }
    }
}

/// Gives the harness's free heap back to the system before an in-process
/// baseline: memory other scenarios freed (side by side, `--jobs`) would
/// otherwise absorb the attack's allocations and hide its growth, which then
/// would not mean what it means alone.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What a [`MemoryWatch`] saw.
#[derive(Debug, Clone, Copy)]
pub struct MemoryReading {
    pub probe: MemoryProbe,
    pub baseline: u64,
    pub peak: u64,
}

impl MemoryReading {
    /// Peak minus baseline.
    pub fn growth(&self) -> u64 {
        self.peak.saturating_sub(self.baseline)
    }

    /// The line for the report, e.g. `peak memory 61 MiB (baseline 40 MiB,
    /// +21 MiB; bound +300 MiB) of the proxy's process tree`.
    pub fn describe(&self, bound: u64) -> String {
        format!(
            "peak memory {} (baseline {}, +{}; bound +{}) of {}",
            mib(self.peak),
            mib(self.baseline),
            mib(self.growth()),
            mib(bound),
            self.probe.describe()
        )
    }

    /// A problem when the growth is above `bound`.
    pub fn check(&self, bound: u64, attack: &str) -> Option<String> {
        (self.growth() > bound).then(|| {
            format!(
                "memory grew by {} during {attack}, more than the +{} allowed",
                mib(self.growth()),
                mib(bound),
            )
        })
    }
}

/// How much the resident memory may grow during an attack, by what is measured.
#[derive(Debug, Clone, Copy)]
pub struct MemoryBound {
    /// The proxy's own process tree (`--proxy-cmd`): the bound each check
    /// states, from the reference proxy's measured growth with a wide margin.
    pub process_tree: u64,
}

/// The bound for the bundled proxy, measured together with the harness
/// process it runs in: that also holds the fake replicas answering the
/// proxy, the attacking clients (8 MiB requests of their own in
/// `oversized-request`), and in tests whatever else runs in the process
/// at the same time (the teeth test runs two suites at once, one of them
/// possibly setting up the 25,000-proxy mesh). Only gross growth tells
/// there, like the 1 GB the unhardened proxy reached under these attacks.
pub const IN_PROCESS_BOUND: u64 = mib_bytes(512);

impl MemoryBound {
    pub fn for_probe(&self, probe: MemoryProbe) -> u64 {
        match probe {
            MemoryProbe::Tree(_) => self.process_tree,
            MemoryProbe::HarnessProcess => IN_PROCESS_BOUND,
        }
    }
}

/// MiB as bytes, for bounds.
pub const fn mib_bytes(n: u64) -> u64 {
    n * 1024 * 1024
}

/// Watches the proxy's memory during `attack`; notes the reading (or why
/// there is none) on the context and adds a problem when it grew by more than
/// the bound. Returns what `attack` returned.
pub async fn with_memory_bound<T>(
    ctx: &CheckContext,
    bound: MemoryBound,
    what: &str,
    problems: &mut Vec<String>,
    attack: impl std::future::Future<Output = T>,
) -> T {
    let watch = MemoryWatch::start(ctx);
    let out = attack.await;
    match watch {
        Ok(w) => {
            let reading = w.finish().await;
            let bound = bound.for_probe(reading.probe);
            ctx.note(reading.describe(bound));
            tracing::info!(
                attack = what,
                peak = reading.peak,
                baseline = reading.baseline,
                "memory under attack"
            );
            problems.extend(reading.check(bound, what));
        }
        Err(MemoryUnmeasured(why)) => ctx.note(why),
    }
    out
}

/// A whole check body run under a memory bound: its outcome, plus a problem
/// when the proxy's memory grew by more than the bound (a skip stays a skip).
pub async fn under_memory_bound(
    ctx: &CheckContext,
    bound: MemoryBound,
    what: &str,
    body: impl std::future::Future<Output = Checked>,
) -> Checked {
    let mut problems = Vec::new();
    match with_memory_bound(ctx, bound, what, &mut problems, body).await {
        Ok(()) => verdict(problems),
        Err(Verdict::Fail(why)) => {
            problems.insert(0, why);
            verdict(problems)
        }
        Err(skip) => Err(skip),
    }
}
