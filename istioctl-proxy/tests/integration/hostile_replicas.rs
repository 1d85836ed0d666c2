//! Replicas that attack the proxy (issue 22): whatever one replica sends,
//! the others' proxies come through, the bad one is named, and the proxy's
//! memory stays flat.
//!
//! - poisoned rows (the reproducers) are refused, the replica named;
//! - an announced length of 4 GiB followed by silence reserves nothing: the
//!   proxy runs under a 2 GiB address-space limit and names the replica;
//! - an answer above `--max-replica-answer-bytes` is refused, the flag named;
//! - 1,000,000 node ids churned through syncz leave the owner table (and
//!   the process) flat.
//!
//! The hostile replica is a raw HTTP/2 server (it sends bytes no gRPC
//! library would), one behaviour per request number.
use crate::support::*;
use prost::Message;
use prost::bytes::Bytes;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::envoy::envoy::service::status::v3::ClientConfig;
use proto::envoy::google::protobuf::Any;
use proto::{BuildInfo, IstioControlPlaneInstance, type_url};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the hostile replica sends for one request.
enum Reply {
    /// These bytes (already gRPC-framed), then `grpc-status: 0`.
    Framed(Vec<u8>),
    /// These bytes, then silence with the stream left open.
    ThenSilence(Vec<u8>),
}

/// A raw HTTP/2 replica on 127.0.0.1; `reply(n)` answers its n-th request.
async fn hostile(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reply = Arc::new(reply);
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (reply, count) = (reply.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let reply = reply(n);
                    tokio::spawn(async move {
                        let head = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("response head");
                        let Ok(mut send) = respond.send_response(head, false) else {
                            return;
                        };
                        match reply {
                            Reply::Framed(bytes) => {
                                let _ = send.send_data(Bytes::from(bytes), false);
                                let mut trailers = http::HeaderMap::new();
                                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                                let _ = send.send_trailers(trailers);
                            }
                            Reply::ThenSilence(bytes) => {
                                let _ = send.send_data(Bytes::from(bytes), false);
                                // Hold the stream open until the proxy gives up on it.
                                std::future::pending::<()>().await;
                            }
                        }
                    });
                }
            });
        }
    });
    addr
}

fn framed(resp: &DiscoveryResponse) -> Vec<u8> {
    let body = resp.encode_to_vec();
    let mut v = vec![0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend(body);
    v
}

fn row(id: &str) -> Any {
    Any {
        type_url: type_url::CLIENT_CONFIG.into(),
        value: ClientConfig {
            node: Some(Node {
                id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

fn syncz(resources: Vec<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: "1".into(),
        resources,
        type_url: type_url::SYNCZ.into(),
        nonce: "n".into(),
        control_plane: Some(proto::envoy::envoy::config::core::v3::ControlPlane {
            identifier: IstioControlPlaneInstance {
                component: "istiod".into(),
                id: "hostile".into(),
                info: BuildInfo {
                    version: "1.30.0".into(),
                    ..Default::default()
                },
            }
            .to_json(),
        }),
        ..Default::default()
    }
}

/// The reproducer: node `poison-1.hns1`, then one garbage byte
/// where `generic_xds_configs` starts.
fn poison_1() -> Vec<u8> {
    let mut any = vec![0x0a, 0x38];
    any.extend_from_slice(type_url::CLIENT_CONFIG.as_bytes());
    let tail = [
        0x12, 0x14, 0x0a, 0x0f, 0x0a, 0x0d, b'p', b'o', b'i', b's', b'o', b'n', b'-', b'1', b'.',
        b'h', b'n', b's', b'1', 0x1a, 0x01, 0xff,
    ];
    any.extend_from_slice(&tail);
    any
}

/// A syncz answer of one good row and `bad` (an encoded Any), framed.
fn good_and(bad: Vec<u8>) -> Vec<u8> {
    let mut resp = syncz(vec![row("good-1.hns1")]).encode_to_vec();
    resp.push(0x12);
    prost::encoding::encode_varint(bad.len() as u64, &mut resp);
    resp.extend(bad);
    let mut v = vec![0];
    v.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    v.extend(resp);
    v
}

/// The proxy in process with a fake-istiod mesh and the hostile replica.
async fn through_proxy(
    hostile_addr: SocketAddr,
) -> (istioctl_proxy::RunningProxy, fake_istiod::FakeIstiod) {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let mut replicas = plaintext_replicas(&fake);
    replicas.push(format!("istiod-hostile={hostile_addr}"));
    let mut config = istioctl_proxy::ProxyConfig::plaintext_static(
        "127.0.0.1:0".parse().expect("addr"),
        replicas,
    );
    config.replica_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(6);
    config.on_replica_failure = istioctl_proxy::FailurePolicy::Annotate;
    (proxy(config).await, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_rows_are_refused_and_the_replica_named() {
    let nested = {
        let mut any = row("deep.ns").encode_to_vec();
        any.extend(std::iter::repeat_n(0x1b, 100));
        any.extend(std::iter::repeat_n(0x1c, 100));
        any
    };
    let bad_utf8_type_url = {
        let mut any = vec![0x0a, 0x01, 0xff];
        any.extend(row("utf8.ns").encode_to_vec());
        any
    };
    let varint_xds_config = Any {
        type_url: type_url::CLIENT_CONFIG.into(),
        value: vec![0x0a, 0x05, 0x0a, 0x03, b'v', b'.', b'n', 0x10, 0x01],
    }
    .encode_to_vec();
    for (what, bad) in [
        ("the issue's poison-1.hns1", poison_1()),
        ("an invalid type_url before a valid one", bad_utf8_type_url),
        ("a varint where xds_config belongs", varint_xds_config),
        ("an Any nested 100 groups deep", nested),
    ] {
        let answer = good_and(bad);
        let addr = hostile(move |_| Reply::Framed(answer.clone())).await;
        let (p, fake) = through_proxy(addr).await;
        let resp = ask(p.local_addr(), type_url::SYNCZ, &[], None)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Every row decodes (node_ids decodes each as a ClientConfig).
        let ids = node_ids(&resp);
        let marker = ids
            .iter()
            .find(|id| id.starts_with("istiod-hostile (unreachable: invalid answer"))
            .unwrap_or_else(|| panic!("{what}: no marker naming the replica: {ids:?}"));
        assert!(marker.contains("1 of 2 resources"), "{what}: {marker}");
        assert!(!ids.iter().any(|i| i == "good-1.hns1"), "{what}: {ids:?}");
        assert_eq!(
            ids.len(),
            scenario_ids(&open_scenario("three-replicas.yaml")).len() + 1,
            "{what}"
        );
        p.shutdown().await;
        fake.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_above_the_limit_names_the_flag() {
    let big = framed(&syncz(
        (0..40_000).map(|i| row(&format!("p{i}.ns"))).collect(),
    ));
    assert!(big.len() > 1 << 20);
    let addr = hostile(move |_| Reply::Framed(big.clone())).await;
    let (p, fake) = {
        let fake = fake(open_scenario("three-replicas.yaml")).await;
        let mut replicas = plaintext_replicas(&fake);
        replicas.push(format!("istiod-hostile={addr}"));
        let mut config = istioctl_proxy::ProxyConfig::plaintext_static(
            "127.0.0.1:0".parse().expect("addr"),
            replicas,
        );
        config.on_replica_failure = istioctl_proxy::FailurePolicy::Fail;
        config.limits.max_replica_answer_bytes = 1 << 20;
        (proxy(config).await, fake)
    };
    let e = ask(p.local_addr(), type_url::SYNCZ, &[], None)
        .await
        .expect_err("the fail policy names the replica");
    assert!(
        e.message().contains("istiod-hostile")
            && e.message()
                .contains("larger than --max-replica-answer-bytes (1048576 bytes)"),
        "{e}"
    );
    p.shutdown().await;
    fake.shutdown().await;
}

/// The proxy binary as its own process (memory measured from /proc).
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
}

impl ProxyProcess {
    fn start(istiod: &[String], shell_prefix: &str, extra: &[&str]) -> ProxyProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let bin = env!("CARGO_BIN_EXE_istioctl-proxy");
        let args = [
            "--plaintext",
            "--istiod-plaintext",
            "--health-listen",
            "off",
            "--log",
            "error",
            "--on-replica-failure",
            "annotate",
            "--request-timeout",
            "60s",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--istiod",
            &istiod.join(","),
        ];
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
            .arg(bin)
            .args(args)
            .args(extra)
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
        ProxyProcess { child, addr }
    }

    /// A `kB` field of /proc/PID/status, in bytes.
    fn status(&mut self, field: &str) -> u64 {
        if let Ok(Some(exit)) = self.child.try_wait() {
            panic!("the proxy exited: {exit}");
        }
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

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_length_prefix_and_silence_reserve_nothing() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let addr = hostile(|_| Reply::ThenSilence(vec![0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])).await;
    let mut istiod = plaintext_replicas(&fake);
    istiod.push(format!("istiod-hostile={addr}"));
    // 2 GiB of address space: tonic's decoder reserved 4 GiB at the prefix.
    // With the default limit the prefix alone is refused; with the limit
    // raised to 4 GiB the proxy waits for bytes that never come, holding
    // only what arrived, until the replica timeout.
    for (extra, named) in [
        (
            &[][..],
            "invalid answer: answer of 4294967295 bytes is larger than --max-replica-answer-bytes (536870912 bytes)",
        ),
        (
            &["--max-replica-answer-bytes", "4294967295"][..],
            "deadline exceeded",
        ),
    ] {
        let extra = [&["--replica-timeout", "2s"][..], extra].concat();
        let mut proxy = ProxyProcess::start(&istiod, "ulimit -v 2097152;", &extra);
        let idle = proxy.status("VmRSS:");
        for _ in 0..3 {
            let resp = ask(proxy.addr, type_url::SYNCZ, &[], None)
                .await
                .expect("an answer with a marker row");
            let ids = node_ids(&resp);
            let marker = format!("istiod-hostile (unreachable: {named}");
            assert!(
                ids.iter().any(|id| id.starts_with(&marker)),
                "{marker}: {ids:?}"
            );
            assert_eq!(
                ids.len(),
                scenario_ids(&open_scenario("three-replicas.yaml")).len() + 1
            );
        }
        let grew = proxy.status("VmHWM:").saturating_sub(idle);
        eprintln!(
            "4 GiB prefix {extra:?}: peak grew {:.1} MiB over {:.1} MiB idle",
            grew as f64 / MIB as f64,
            idle as f64 / MIB as f64
        );
        assert!(grew < 16 * MIB, "grew {grew} bytes");
    }
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_churned_node_ids_leave_memory_flat() {
    const PER_ANSWER: usize = 50_000;
    const ANSWERS: usize = 20;
    // Every answer a fresh mesh: 1,000,000 node ids in all.
    let addr = hostile(|n| {
        Reply::Framed(framed(&syncz(
            (0..PER_ANSWER)
                .map(|i| row(&format!("churn-{n}-{i}.ns{}", i % 50)))
                .collect(),
        )))
    })
    .await;
    // A debug build checks 50,000 rows on a busy machine: room for it.
    let mut proxy = ProxyProcess::start(
        &[format!("istiod-churn={addr}")],
        "",
        &["--replica-timeout", "50s"],
    );
    let mut after = Vec::new();
    for _ in 0..ANSWERS {
        let resp = ask(proxy.addr, type_url::SYNCZ, &[], None)
            .await
            .expect("an answer");
        assert_eq!(resp.resources.len(), PER_ANSWER);
        after.push(proxy.status("VmRSS:"));
    }
    let warm = after[2];
    let last = *after.last().expect("answers");
    eprintln!(
        "1,000,000 churned ids: RSS after answer 3 {:.1} MiB, after answer {ANSWERS} {:.1} MiB, peak {:.1} MiB",
        warm as f64 / MIB as f64,
        last as f64 / MIB as f64,
        proxy.status("VmHWM:") as f64 / MIB as f64
    );
    // An owner table that never forgets holds about 100 bytes per id: 95 MiB more.
    assert!(
        last < warm + 16 * MIB,
        "RSS grew from {warm} to {last} bytes while ids churned"
    );
}
