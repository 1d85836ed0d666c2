//! One replica per process (what a container runs): two `fake-istiod serve
//! --replica` processes of one scenario sharing one state directory each serve
//! only their own proxies under their own ID, accept the same tokens and
//! verify against the same CA, and take faults through their own control API.

use crate::support::{BIN, Child, scenarios};
use fake_istiod::probe::{Dial, ask, control_plane_id, decode_syncz, istioctl_request};
use fake_istiod::{CA_FILE, CA_KEY_FILE, SIGNING_KEY_FILE, Scenario};
use proto::control as pb;
use proto::control::fake_istiod_control_client::FakeIstiodControlClient;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
/// What a container would get as its network alias (`--dns-name`).
const ALIAS: &str = "istiod-alias";
const NAMESPACE: &str = "istio-system";

fn scenario_file() -> PathBuf {
    scenarios().join("three-replicas.yaml")
}

struct Replica {
    name: String,
    tls: SocketAddr,
    control: SocketAddr,
    _child: Child,
}

fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .skip_while(|w| *w != key)
        .nth(1)?
        .parse()
        .ok()
}

/// Polls until something accepts on `addr` (bounded).
async fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `serve --replica NAME` on `ip` with any free ports; its addresses are read
/// from the banner it prints once listening.
async fn serve(state: &Path, name: &str, ip: &str) -> Replica {
    let mut child = Child(
        Command::new(BIN)
            .args(["serve", "--scenario"])
            .arg(scenario_file())
            .args(["--replica", name, "--listen-ip", ip])
            .args(["--plaintext-port", "0", "--tls-port", "0"])
            .args(["--dns-name", ALIAS, "--control-address"])
            .arg(format!("{ip}:0"))
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting fake-istiod"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    // Both pipes are closed once the banner is read: the replica must keep
    // answering although its log lines can no longer be written (they
    // panicked the request handler, resetting a refused caller's stream).
    let mut stderr = child.0.stderr.take().expect("stderr");
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("Ctrl-C");
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
        // It exited before listening: its error is on stderr.
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        Err(err)
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), banner)
        .await
        .unwrap_or_else(|_| panic!("{name} printed no banner within 20s"))
        .expect("reader task")
        .unwrap_or_else(|err| panic!("{name} exited: {err}"));
    let replicas: Vec<&String> = lines.iter().filter(|l| l.starts_with("replica ")).collect();
    assert_eq!(replicas.len(), 1, "one replica per process: {lines:?}");
    assert!(
        replicas[0].starts_with(&format!("replica {name} ")),
        "{lines:?}"
    );
    let plaintext = field(replicas[0], "plaintext").expect("plaintext address");
    let tls = field(replicas[0], "tls").expect("tls address");
    assert_eq!(plaintext.ip().to_string(), ip);
    let control = lines
        .iter()
        .find_map(|l| l.strip_prefix("control API: ")?.parse().ok())
        .unwrap_or_else(|| panic!("no control API line: {lines:?}"));
    wait_for_port(plaintext).await;
    wait_for_port(tls).await;
    Replica {
        name: name.to_string(),
        tls,
        control,
        _child: child,
    }
}

fn run_ok(args: &[&str], state: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("running fake-istiod");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state_files(state: &Path) -> Vec<(String, Vec<u8>)> {
    [CA_FILE, CA_KEY_FILE, SIGNING_KEY_FILE]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(state.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (f.to_string(), bytes)
        })
        .collect()
}

async fn syncz(addr: SocketAddr, dial: &Dial) -> Result<(String, Vec<String>), tonic::Status> {
    let resp = ask(
        addr,
        dial,
        istioctl_request(proto::type_url::SYNCZ, &[], NAMESPACE),
    )
    .await?;
    let mut ids: Vec<String> = decode_syncz(&resp)
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .into_iter()
        .map(|c| c.node.map(|n| n.id).unwrap_or_default())
        .collect();
    ids.sort();
    Ok((control_plane_id(&resp), ids))
}

#[tokio::test]
async fn two_replica_processes_share_one_ca_and_token_issuer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let init = run_ok(&["init"], &state);
    assert!(init.contains(CA_FILE), "{init}");
    let before = state_files(&state);

    let scenario = Scenario::load(scenario_file()).expect("scenario");
    let [a, b] = [&scenario.replicas[0].name, &scenario.replicas[1].name];
    let started = Instant::now();
    let replicas = [
        serve(&state, a, "127.0.93.2").await,
        serve(&state, b, "127.0.93.3").await,
    ];
    eprintln!(
        "two replica processes listening after {:?}",
        started.elapsed()
    );

    let ca_pem = std::fs::read_to_string(state.join(CA_FILE)).expect("CA");
    let token = run_ok(&["token", "-n", NAMESPACE], &state)
        .trim()
        .to_string();
    let bad_token = run_ok(&["token", "-n", NAMESPACE, "--bad-signature"], &state)
        .trim()
        .to_string();
    for r in &replicas {
        let mut want: Vec<String> = scenario
            .proxies
            .iter()
            .filter(|p| p.replica == r.name)
            .map(|p| p.id.clone())
            .collect();
        want.sort();
        assert!(!want.is_empty());
        // Every name a client may dial it by verifies against the shared CA.
        for server_name in [
            format!("istiod.{NAMESPACE}.svc"),
            r.name.clone(),
            ALIAS.into(),
        ] {
            let dial = Dial {
                ca_pem: Some(ca_pem.clone()),
                token: Some(token.clone()),
                domain: Some(server_name.clone()),
                ..Default::default()
            };
            let (id, ids) = syncz(r.tls, &dial)
                .await
                .unwrap_or_else(|e| panic!("{} as {server_name}: {e}", r.name));
            assert_eq!(id, r.name, "its own ControlPlane ID");
            assert_eq!(ids, want, "exactly {}'s own proxies", r.name);
        }
        // The token is checked, not ignored: a badly signed one is refused.
        let forged = Dial {
            ca_pem: Some(ca_pem.clone()),
            token: Some(bad_token.clone()),
            domain: Some(format!("istiod.{NAMESPACE}.svc")),
            ..Default::default()
        };
        let err = syncz(r.tls, &forged).await.expect_err("a forged token");
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    }

    // Each control API drives its own replica only.
    let mut ctl = FakeIstiodControlClient::connect(format!("http://{}", replicas[0].control))
        .await
        .expect("control API");
    let list = ctl
        .list_replicas(pb::ListReplicasRequest {})
        .await
        .expect("ListReplicas")
        .into_inner();
    let names: Vec<&str> = list.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [a.as_str()]);
    let fault = |replica: &str| pb::SetFaultRequest {
        replica: replica.to_string(),
        fault: Some(pb::Fault {
            kind: Some(pb::fault::Kind::GrpcError(pb::GrpcError {
                code: 14,
                message: "gone".into(),
            })),
        }),
    };
    let err = ctl
        .set_fault(fault(b))
        .await
        .expect_err("b is not served here");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    ctl.set_fault(fault(a)).await.expect("SetFault");
    let dial = Dial {
        ca_pem: Some(ca_pem.clone()),
        token: Some(token.clone()),
        domain: Some(ALIAS.into()),
        ..Default::default()
    };
    let err = syncz(replicas[0].tls, &dial).await.expect_err("a's fault");
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::Unavailable, "gone")
    );
    let (id, _) = syncz(replicas[1].tls, &dial).await.expect("b unaffected");
    assert_eq!(&id, b);

    assert_eq!(
        state_files(&state),
        before,
        "replicas wrote to the shared state"
    );
    drop(replicas);
}

fn serve_err(args: &[&str], state: &Path) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--scenario")
        .arg(scenario_file())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("running fake-istiod");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_replica_flags_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    // No state yet: replicas never create one (each would make its own CA).
    let err = serve_err(&["--replica", "istiod-7d4f9c6b8-abcde"], &state);
    assert!(
        err.contains(&format!(
            "cannot read {}: No such file or directory",
            state.join(CA_KEY_FILE).display()
        )) && err.contains("fake-istiod init --state-dir"),
        "{err}"
    );
    assert!(!state.exists(), "a replica created the state directory");

    run_ok(&["init"], &state);
    let err = serve_err(&["--replica", "istiod-nope"], &state);
    assert_eq!(
        err,
        format!(
            "Error: {}: no replica named \"istiod-nope\" (replicas: istiod-7d4f9c6b8-abcde, istiod-7d4f9c6b8-fghij, istiod-7d4f9c6b8-klmno)\n",
            scenario_file().display()
        )
    );
    let err = serve_err(
        &[
            "--replica",
            "istiod-7d4f9c6b8-abcde",
            "--dns-name",
            "not a name",
        ],
        &state,
    );
    assert!(
        err.contains("DNS name \"not a name\": only letters, digits, '-' and '.' are allowed"),
        "{err}"
    );
    let err = serve_err(&["--listen-ip", "0.0.0.0"], &state);
    assert!(err.contains("--replica"), "{err}");
}
