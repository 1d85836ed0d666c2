//! Scale bench (not a test): prints resident memory for 100,000 proxies over 20
//! replicas in one process, and the time to answer syncz for 1k and 10k proxies
//! on one replica (end to end over loopback gRPC, and the build alone).
//!
//! Run: `cargo bench -p fake-istiod --bench scale`

use fake_istiod::probe::{Dial, ask, istioctl_request};
use fake_istiod::{FakeIstiod, Scenario, StartOptions};
use proto::type_url;
use std::time::{Duration, Instant, SystemTime};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn mesh(count: usize, replicas: usize, version: &str) -> Scenario {
    let names: String = (0..replicas)
        .map(|i| format!("  - name: istiod-6b9c8d7f5-r{i:04}\n"))
        .collect();
    let yaml = format!(
        "istiod: {{ version: {version} }}\nauth: {{ debug_endpoint_auth: false }}\nreplicas:\n{names}generate:\n  - {{ count: {count}, namespaces: 50 }}\n"
    );
    Scenario::parse(&yaml, "bench.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn time_syncz(fake: &FakeIstiod, runs: usize) -> (Duration, usize, usize) {
    let r = &fake.replicas()[0];
    let mut times = Vec::new();
    let mut n = 0;
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let resp = ask(
            r.plaintext_addr,
            &Dial::default(),
            istioctl_request(type_url::SYNCZ, &[], "istio-system"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed());
        n = resp.resources.len();
        bytes = resp.resources.iter().map(|a| a.value.len()).sum();
    }
    (median(times), n, bytes)
}

#[tokio::main]
async fn main() {
    let base = rss_kib();
    println!("fake-istiod scale bench (resident memory from /proc/self/status)");
    println!("baseline RSS: {:.1} MiB", base as f64 / 1024.0);

    // 100k proxies over 20 replicas in one process.
    let t = Instant::now();
    let big = mesh(100_000, 20, "1.30.0");
    let parsed = t.elapsed();
    let t = Instant::now();
    let fake = FakeIstiod::start(big, StartOptions::ephemeral())
        .await
        .unwrap();
    let started = t.elapsed();
    let rss = rss_kib();
    println!(
        "100,000 proxies / 20 replicas: generated in {parsed:.2?}, started in {started:.2?}, RSS {:.1} MiB (+{:.1} MiB, {:.0} bytes/proxy)",
        rss as f64 / 1024.0,
        (rss - base) as f64 / 1024.0,
        (rss - base) as f64 * 1024.0 / 100_000.0
    );
    let (d, n, bytes) = time_syncz(&fake, 5).await;
    println!(
        "  syncz on one replica of it ({n} proxies, {} KiB): median {d:.2?}",
        bytes / 1024
    );
    fake.shutdown().await;

    // 1k and 10k proxies on one replica.
    let mut per_proxy = Vec::new();
    for count in [1_000usize, 10_000] {
        for version in ["1.12.1", "1.30.0"] {
            let s = mesh(count, 1, version);
            let proxies = s.proxies.clone();
            let v: proto::IstioVersion = version.parse().unwrap();
            let t = Instant::now();
            let built = fake_istiod::syncz::resources(proxies.iter(), &v, SystemTime::now());
            let build = t.elapsed();
            drop(built);
            let fake = FakeIstiod::start(s, StartOptions::ephemeral())
                .await
                .unwrap();
            let (d, n, bytes) = time_syncz(&fake, 7).await;
            assert_eq!(n, count);
            println!(
                "syncz {count:>6} proxies, istiod {version}: end to end median {d:>9.2?} (build alone {build:>9.2?}), {} KiB, {:.1} µs/proxy",
                bytes / 1024,
                d.as_secs_f64() * 1e6 / count as f64
            );
            if version == "1.30.0" {
                per_proxy.push(d.as_secs_f64() / count as f64);
            }
            fake.shutdown().await;
        }
    }
    if let [small, large] = per_proxy[..] {
        println!(
            "ratio of per-proxy cost 10k/1k (1.30.0): {:.2} (1.00 = linear)",
            large / small
        );
    }
}
