//! Merged syncz: latency and the proxy's memory, R replicas × P proxies in
//! all, side by side in one run:
//! - all-direct: every replica asked at once by the client (what istioctl
//!   would need without a proxy; the floor on this machine, since the
//!   replicas share its cores);
//! - proxy: the reference proxy (parallel fan-out, merge on the wire);
//! - seq-ff: the blog sample's strategy (sequential, fail-fast: the
//!   `sequential-fail-fast` defect);
//! - before: the proxy before issue 22 in the same turns, so that one run
//!   states the cost of checking every row as istioctl decodes it:
//!   `BENCH_BEFORE_BIN` (an old build), else the `forward-unchecked` defect
//!   (rows checked for framing only, as before);
//!
//! and the proxy's peak resident memory (VmHWM of the proxy's own process,
//! a fresh one per size) against the merged answer's size. The proxy runs as
//! a separate process (the `istioctl-proxy` binary, or `BENCH_PROXY_BIN`;
//! `BENCH_DEFECTIVE_BIN` for the seq-ff and defect runs), so its memory is
//! not mixed with the fake replicas' or the client's. After the grid:
//! 50 concurrent clients (each on its own connection) for the largest mesh,
//! and the `buffer-decoded-answers` defect for comparison.
//!
//! `cargo bench -p istioctl-proxy --features test-defects --bench merged_syncz`
//! (`BENCH_QUICK=1` for a smaller grid, `BENCH_R=1,5` and `BENCH_P=1000,10000` for
//! others, `BENCH_NO_DEFECT=1` without the defect run, `BENCH_NO_MEMORY=1` without the
//! memory runs). `BENCH_PROXY_BIN=/path/to/old/istioctl-proxy`
//! measures another build of the proxy with the same bench (before/after).

use fake_istiod::{FakeIstiod, Scenario, StartOptions};
use futures::StreamExt;
use istioctl_proxy::wire::RawResponse;
use prost::Message;
use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proto::node::IstioctlNode;
use proto::type_url;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// Concurrent clients in the memory run.
const CLIENTS: usize = 50;

fn scenario(replicas: usize, total: usize) -> Scenario {
    let names: String = (0..replicas)
        .map(|i| format!("  - name: istiod-{i:02}\n"))
        .collect();
    let yaml = format!(
        "description: bench\nistiod:\n  version: 1.30.0\nauth:\n  debug_endpoint_auth: false\nreplicas:\n{names}proxies: []\ngenerate:\n  - count: {total}\n    namespaces: 20\n    replicas: all\n"
    );
    match Scenario::parse(&yaml, "bench") {
        Ok(s) => s,
        Err(e) => panic!("bench scenario: {e}"),
    }
}

fn request() -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url::SYNCZ.into(),
        node: Some(IstioctlNode::new("10.1.2.3".parse().unwrap(), "istio-system").to_node()),
        ..Default::default()
    }
}

/// One syncz exchange as istioctl does it, the answer decoded as `M`.
async fn syncz<M: Message + Default + Send + 'static>(channel: Channel) -> M {
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    client.ready().await.expect("ready");
    let outbound =
        futures::stream::once(async move { request() }).chain(futures::stream::pending());
    let codec = tonic_prost::ProstCodec::<DiscoveryRequest, M>::default();
    let path = http::uri::PathAndQuery::from_static(ADS_PATH);
    let mut inbound = client
        .streaming(tonic::Request::new(outbound), path, codec)
        .await
        .expect("stream opens")
        .into_inner();
    inbound
        .message()
        .await
        .expect("answer")
        .expect("one response")
}

async fn connect(addr: SocketAddr) -> Channel {
    // Large windows, like grpc-go's dynamic window in istioctl.
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .connect()
        .await
        .expect("connects")
}

/// One timed syncz call through a proxy: (time, answer size).
async fn through(ch: &Channel, expect: usize) -> (Duration, usize) {
    let t = Instant::now();
    let resp: DiscoveryResponse = syncz(ch.clone()).await;
    let took = t.elapsed();
    assert_eq!(resp.resources.len(), expect, "complete answer");
    (took, resp.encoded_len())
}

/// One timed round of every replica asked directly and at once.
async fn all_direct(channels: &[Channel], per_replica: usize) -> Duration {
    let t = Instant::now();
    let answers: Vec<DiscoveryResponse> =
        futures::future::join_all(channels.iter().map(|c| syncz(c.clone()))).await;
    let took = t.elapsed();
    for a in answers {
        assert_eq!(a.resources.len(), per_replica);
    }
    took
}

fn median_of(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The "before" proxy: an old build (`BENCH_BEFORE_BIN`, no defects) or the
/// defective binary with `forward-unchecked`.
fn before() -> (String, &'static str) {
    match std::env::var("BENCH_BEFORE_BIN") {
        Ok(bin) => (bin, ""),
        Err(_) => (proxy_bin(true), "forward-unchecked"),
    }
}

/// A proxy in its own process.
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn proxy_bin(defective: bool) -> String {
    let (var, built) = if defective {
        (
            "BENCH_DEFECTIVE_BIN",
            env!("CARGO_BIN_EXE_istioctl-proxy-defective"),
        )
    } else {
        ("BENCH_PROXY_BIN", env!("CARGO_BIN_EXE_istioctl-proxy"))
    };
    std::env::var(var).unwrap_or_else(|_| built.to_string())
}

impl ProxyProcess {
    async fn start(fake: &FakeIstiod, defects: &str) -> Self {
        Self::start_bin(fake, &proxy_bin(!defects.is_empty()), defects).await
    }

    async fn start_bin(fake: &FakeIstiod, bin: &str, defects: &str) -> Self {
        let replicas: Vec<String> = fake
            .replicas()
            .iter()
            .map(|r| format!("{}={}", r.name, r.plaintext_addr))
            .collect();
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "--plaintext",
                "--istiod-plaintext",
                "--health-listen",
                "off",
                "--replica-timeout",
                "60s",
                "--request-timeout",
                "120s",
                "--log",
                "error",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--istiod",
                &replicas.join(","),
            ])
            .env("ISTIOCTL_PROXY_DEFECTS", defects)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts the proxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < until, "the proxy never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ProxyProcess { child, addr }
    }

    /// A field of /proc/PID/status, in bytes.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the proxy's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .expect("a kB field")
    }

    fn rss(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn peak(&self) -> u64 {
        self.status_kib("VmHWM:")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // SIGTERM first (a profiler wrapping the proxy writes its data on
        // exit), SIGKILL after a bound.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// Peak memory of a fresh proxy for `clients` concurrent syncz requests
/// (each client on its own connection), after one warm-up request:
/// (idle RSS, peak RSS, answer size).
async fn memory_run(
    fake: &FakeIstiod,
    defects: &str,
    clients: usize,
    total: usize,
) -> (u64, u64, usize) {
    let proxy = ProxyProcess::start(fake, defects).await;
    let idle = proxy.rss();
    let mut channels = Vec::new();
    for _ in 0..clients {
        channels.push(connect(proxy.addr).await);
    }
    let answers = futures::future::join_all(channels.iter().map(|c| async {
        let raw: RawResponse = syncz(c.clone()).await;
        assert_eq!(raw.resources.len(), total, "complete answer");
        raw.encoded_len()
    }))
    .await;
    (idle, proxy.peak(), answers[0])
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    // BENCH_R / BENCH_P: comma-separated replica counts / mesh sizes instead.
    let list = |var: &str, default: &[usize]| -> Vec<usize> {
        match std::env::var(var) {
            Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
            Err(_) => default.to_vec(),
        }
    };
    let rs = &list("BENCH_R", if quick { &[1, 5] } else { &[1, 5, 20] })[..];
    let ps = &list(
        "BENCH_P",
        if quick {
            &[1_000, 10_000]
        } else {
            &[1_000, 10_000, 100_000]
        },
    )[..];
    println!(
        "merged syncz, istiod 1.30 shape, loopback, release build; proxy: {}",
        proxy_bin(false)
    );
    let (before_bin, before_defects) = before();
    println!("before: {before_bin} {before_defects}");
    println!(
        "medians; RSS = the proxy process's peak (VmHWM) over one warm-up and the timed requests; \
         growth = peak - idle RSS; ratios to the merged answer's size"
    );
    println!(
        "{:>3} {:>8} {:>9} | {:>10} {:>9} {:>9} {:>9} {:>8} | {:>12} {:>12} | {:>8} {:>9} {:>10} {:>10}",
        "R",
        "proxies",
        "answer MB",
        "all-dir ms",
        "before ms",
        "proxy ms",
        "seq-ff ms",
        "cost %",
        "proxy/alldir",
        "seq-ff/proxy",
        "RSS MB",
        "growth MB",
        "RSS/answer",
        "grow/answ"
    );
    for &r in rs {
        for &total in ps {
            let per_replica = total / r;
            let n = if total >= 50_000 { 9 } else { 21 };
            let fake = FakeIstiod::start(scenario(r, total), StartOptions::ephemeral())
                .await
                .expect("fake-istiod starts");
            // The three are measured in turns (all-direct, proxy, seq-ff,
            // all-direct, ...), so that load from elsewhere on this small
            // machine hits them alike; one warm-up round first.
            let mut direct_channels = Vec::new();
            for rep in fake.replicas() {
                direct_channels.push(connect(rep.plaintext_addr).await);
            }
            let proxy = ProxyProcess::start(&fake, "").await;
            let seq_proxy = ProxyProcess::start(&fake, "sequential-fail-fast").await;
            let before_proxy = ProxyProcess::start_bin(&fake, &before_bin, before_defects).await;
            let idle = proxy.rss();
            let (pch, sch) = (connect(proxy.addr).await, connect(seq_proxy.addr).await);
            let bch = connect(before_proxy.addr).await;
            let (mut d, mut p, mut q, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut size = 0;
            for round in 0..=n {
                let dt = all_direct(&direct_channels, per_replica).await;
                let (bt, _) = through(&bch, total).await;
                let (pt, s) = through(&pch, total).await;
                let (qt, _) = through(&sch, total).await;
                size = s;
                if round > 0 {
                    d.push(dt);
                    p.push(pt);
                    q.push(qt);
                    b.push(bt);
                }
            }
            let peak = proxy.peak();
            drop(proxy);
            drop(seq_proxy);
            drop(before_proxy);
            fake.shutdown().await;
            let (all_direct, par, seq) = (median_of(d), median_of(p), median_of(q));
            let old = median_of(b);
            let size_b = size as f64;
            println!(
                "{:>3} {:>8} {:>9.2} | {:>10.2} {:>9.2} {:>9.2} {:>9.2} {:>8.1} | {:>12.2} {:>12.2} | {:>8.1} {:>9.1} {:>10.2} {:>10.2}",
                r,
                total,
                size_b / 1e6,
                ms(all_direct),
                ms(old),
                ms(par),
                ms(seq),
                (par.as_secs_f64() / old.as_secs_f64() - 1.0) * 100.0,
                par.as_secs_f64() / all_direct.as_secs_f64(),
                seq.as_secs_f64() / par.as_secs_f64(),
                mb(peak),
                mb(peak.saturating_sub(idle)),
                peak as f64 / size_b,
                peak.saturating_sub(idle) as f64 / size_b,
            );
        }
    }

    // Memory with many clients at once, and the defect that keeps a
    // decoded copy of every answer (the memory check's teeth).
    if std::env::var_os("BENCH_NO_MEMORY").is_some() {
        return;
    }
    let r = *rs.last().unwrap_or(&1);
    let total = *ps.last().unwrap_or(&1_000);
    let fake = FakeIstiod::start(scenario(r, total), StartOptions::ephemeral())
        .await
        .expect("fake-istiod starts");
    println!("\npeak memory of a fresh proxy process, R={r}, {total} proxies");
    println!(
        "{:>34} | {:>9} {:>8} {:>9} {:>10} {:>10}",
        "run", "answer MB", "RSS MB", "growth MB", "RSS/answer", "grow/answ"
    );
    let mut runs = vec![
        ("proxy, 1 client", "", 1),
        ("proxy, 50 concurrent clients", "", CLIENTS),
    ];
    // BENCH_NO_DEFECT=1 for a build that does not have the defect (before).
    if std::env::var_os("BENCH_NO_DEFECT").is_none() {
        runs.push((
            "buffer-decoded-answers, 1 client",
            "buffer-decoded-answers",
            1,
        ));
    }
    for (label, defects, clients) in runs {
        let started = Instant::now();
        let (idle, peak, size) = memory_run(&fake, defects, clients, total).await;
        let size_b = size as f64;
        println!(
            "{:>34} | {:>9.2} {:>8.1} {:>9.1} {:>10.2} {:>10.2}   ({:.1} s)",
            label,
            size_b / 1e6,
            mb(peak),
            mb(peak.saturating_sub(idle)),
            peak as f64 / size_b,
            peak.saturating_sub(idle) as f64 / size_b,
            started.elapsed().as_secs_f64()
        );
    }
    fake.shutdown().await;
}
