//! Merged syncz latency: R replicas x P proxies each, through the proxy
//! (parallel fan-out), against the physical floor (the slowest single replica
//! asked directly) and the sample's strategy (sequential fail-fast, the
//! `SequentialFailFast` defect: a test-only build option).
//!
//! `cargo bench -p istioctl-proxy --features test-defects --bench merged_syncz`
//! (`BENCH_QUICK=1` for a smaller grid). Prints medians and ratios.

use fake_istiod::{FakeIstiod, Scenario, StartOptions};
use futures::StreamExt;
use istioctl_proxy::{Defect, ProxyConfig, RunningProxy};
use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proto::node::IstioctlNode;
use proto::type_url;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

fn scenario(replicas: usize, per_replica: usize) -> Scenario {
    let names: String = (0..replicas)
        .map(|i| format!("  - name: istiod-{i:02}\n"))
        .collect();
    let yaml = format!(
        "description: bench\nistiod:\n  version: 1.30.0\nauth:\n  debug_endpoint_auth: false\nreplicas:\n{names}proxies: []\ngenerate:\n  - count: {}\n    namespaces: 20\n    replicas: all\n",
        replicas * per_replica
    );
    match Scenario::parse(&yaml, "bench") {
        Ok(s) => s,
        Err(e) => panic!("bench scenario: {e}"),
    }
}

async fn syncz(channel: Channel) -> DiscoveryResponse {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let req = DiscoveryRequest {
        type_url: type_url::SYNCZ.into(),
        node: Some(IstioctlNode::new("10.1.2.3".parse().unwrap(), "istio-system").to_node()),
        ..Default::default()
    };
    let outbound = futures::stream::once(async move { req }).chain(futures::stream::pending());
    let mut inbound = client
        .stream_aggregated_resources(outbound)
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

/// Median of `n` timed syncz calls over one reused channel (istioctl opens a
/// new one each time, but connection setup is not what is measured here).
async fn median(addr: SocketAddr, n: usize, expect: usize) -> Duration {
    let ch = connect(addr).await;
    let _warm = syncz(ch.clone()).await;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = syncz(ch.clone()).await;
        times.push(t.elapsed());
        assert_eq!(resp.resources.len(), expect, "complete answer");
    }
    times.sort();
    times[n / 2]
}

/// Median time until every replica, asked directly and at once, has answered.
async fn all_direct_median(fake: &FakeIstiod, n: usize, per_replica: usize) -> Duration {
    let mut channels = Vec::new();
    for r in fake.replicas() {
        channels.push(connect(r.plaintext_addr).await);
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let answers = futures::future::join_all(channels.iter().map(|c| syncz(c.clone()))).await;
        times.push(t.elapsed());
        for a in answers {
            assert_eq!(a.resources.len(), per_replica);
        }
    }
    times.sort();
    times[n / 2]
}

async fn start_proxy(fake: &FakeIstiod, defects: Vec<Defect>) -> RunningProxy {
    let replicas = fake
        .replicas()
        .iter()
        .map(|r| format!("{}={}", r.name, r.plaintext_addr))
        .collect();
    let mut c = ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), replicas);
    c.replica_timeout = Duration::from_secs(60);
    c.request_timeout = Duration::from_secs(120);
    c.defects = defects;
    istioctl_proxy::start(c).await.expect("proxy starts")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let rs: &[usize] = if quick { &[1, 5] } else { &[1, 5, 20] };
    let ps: &[usize] = if quick {
        &[100, 1000]
    } else {
        &[100, 1000, 5000]
    };
    println!("merged syncz latency (median), istiod 1.30 shape, loopback, release build");
    println!(
        "{:>3} {:>6} {:>8} | {:>9} {:>10} {:>9} {:>10} | {:>11} {:>12} {:>12}",
        "R",
        "P",
        "proxies",
        "floor ms",
        "all-dir ms",
        "proxy ms",
        "seq-ff ms",
        "proxy/floor",
        "proxy/alldir",
        "seq-ff/proxy"
    );
    for &r in rs {
        for &p in ps {
            let total = r * p;
            let n = if total >= 50_000 { 5 } else { 11 };
            let fake = FakeIstiod::start(scenario(r, p), StartOptions::ephemeral())
                .await
                .expect("fake-istiod starts");
            // Floor: each replica asked directly; the slowest one bounds any merge.
            let mut floor = Duration::ZERO;
            for rep in fake.replicas() {
                floor = floor.max(median(rep.plaintext_addr, n, p).await);
            }
            // All replicas asked directly and concurrently: they share this
            // machine's cores, so this is the floor for R replicas here.
            let all_direct = all_direct_median(&fake, n, p).await;
            let proxy = start_proxy(&fake, vec![]).await;
            let par = median(proxy.local_addr(), n, total).await;
            proxy.shutdown().await;
            let seq_proxy = start_proxy(&fake, vec![Defect::SequentialFailFast]).await;
            let seq = median(seq_proxy.local_addr(), n, total).await;
            seq_proxy.shutdown().await;
            fake.shutdown().await;
            println!(
                "{:>3} {:>6} {:>8} | {:>9.2} {:>10.2} {:>9.2} {:>10.2} | {:>11.2} {:>12.2} {:>12.2}",
                r,
                p,
                total,
                ms(floor),
                ms(all_direct),
                ms(par),
                ms(seq),
                par.as_secs_f64() / floor.as_secs_f64(),
                par.as_secs_f64() / all_direct.as_secs_f64(),
                seq.as_secs_f64() / par.as_secs_f64()
            );
        }
    }
}
