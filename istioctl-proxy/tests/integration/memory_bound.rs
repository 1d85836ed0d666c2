//! The proxy's memory is bounded by its answer: a proxy process answering
//! syncz for a 20,000-proxy mesh (about 10 MB merged) grows by at most twice
//! the answer plus a fixed base, for one client and for ten asking at once;
//! the `buffer-decoded-answers` defect (a decoded copy of every replica's
//! answer kept with the answer, as a decode-and-re-encode proxy holds) grows
//! past the same bound. The proxy runs as its own process (its /proc status
//! is measured: VmHWM, the peak, against VmRSS once it serves).
//! Latency is measured in the `merged_syncz` bench, not here.
use crate::support::*;
use prost::Message;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 5 replicas, 20,000 proxies in all (istiod 1.30 shape).
fn mesh() -> fake_istiod::Scenario {
    let names: String = (0..5).map(|i| format!("  - name: istiod-{i}\n")).collect();
    let yaml = format!(
        "description: memory\nistiod:\n  version: 1.30.0\nauth:\n  debug_endpoint_auth: false\n\
         replicas:\n{names}proxies: []\ngenerate:\n  - count: 20000\n    namespaces: 20\n    replicas: all\n"
    );
    fake_istiod::Scenario::parse(&yaml, "memory").expect("scenario")
}

const PROXIES: usize = 20_000;
/// What a proxy process may use besides its answers: runtime, TLS and HTTP/2
/// buffers, the owner table (config_dump routing), allocator slack. The
/// reference grows by 1.2-1.5× the answer (debug and release); the defect
/// by 6× and more.
const BASE: u64 = 24 * 1024 * 1024;

struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Proxy {
    fn start(fake: &fake_istiod::FakeIstiod, defects: &str) -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let bin = env!("CARGO_BIN_EXE_istioctl-proxy-defective");
        let child = Command::new(bin)
            .args([
                "--plaintext",
                "--istiod-plaintext",
                "--health-listen",
                "off",
                "--log",
                "error",
                "--replica-timeout",
                "20s",
                "--request-timeout",
                "40s",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--istiod",
                &plaintext_replicas(fake).join(","),
            ])
            .env("ISTIOCTL_PROXY_DEFECTS", defects)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starts the proxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < until, "the proxy never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy { child, addr }
    }

    /// A `kB` field of /proc/PID/status, in bytes.
    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the proxy's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Growth of the proxy's peak memory while `clients` ask at once (each on
/// its own connection), twice over, and the answer's encoded size.
async fn growth(defects: &str, clients: usize) -> (u64, u64) {
    let fake = fake(mesh()).await;
    let proxy = Proxy::start(&fake, defects);
    let idle = proxy.status("VmRSS:");
    let istioctls: Vec<_> = (0..clients).map(|_| client(proxy.addr, None)).collect();
    let mut size = 0;
    for _ in 0..2 {
        let answers = futures::future::join_all(istioctls.iter().map(|opts| async {
            let req = istioctl_request(proto::type_url::SYNCZ, &[]);
            let resp = ask_with(opts, req).await.expect("an answer");
            assert_eq!(resp.resources.len(), PROXIES, "complete answer");
            resp.encoded_len() as u64
        }))
        .await;
        size = answers[0];
    }
    let peak = proxy.status("VmHWM:");
    drop(proxy);
    fake.shutdown().await;
    (peak.saturating_sub(idle), size)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_twice_the_answer_and_the_defect_does_not() {
    let mut report = Vec::new();
    let mut bound = 0;
    for (defects, clients, within) in [
        ("", 1, true),
        ("", 10, true),
        ("buffer-decoded-answers", 1, false),
    ] {
        let (grew, size) = growth(defects, clients).await;
        bound = 2 * size + BASE;
        let line = format!(
            "{:<24} {clients:>2} client(s): grew {:.1} MiB for a {:.1} MiB answer (bound {:.1} MiB)",
            if defects.is_empty() {
                "reference"
            } else {
                defects
            },
            mib(grew),
            mib(size),
            mib(bound)
        );
        eprintln!("{line}");
        report.push((line, grew <= bound, within));
    }
    for (line, held, want) in &report {
        assert_eq!(
            held,
            want,
            "{line}: {} (bound: twice the answer + {:.0} MiB)",
            if *want {
                "the proxy's memory is not bounded by its answer"
            } else {
                "the defect stayed within the bound: the check has no teeth"
            },
            mib(BASE)
        );
    }
    assert!(bound > BASE);
}
