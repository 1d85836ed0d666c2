//! Tier 4: the real Kubernetes API servers of the real-istio topology (etcd +
//! kube-apiserver, built by `ci/real-istio-build.sh`). SKIPPED, loudly, where
//! the binaries are not built; `PROXY_CONFORMANCE_REAL_ISTIO_TESTS=1` (CI)
//! makes their absence a failure.

use harness::topology::real_istio::apiserver::{ApiServer, kubeconfig};
use harness::topology::real_istio::binaries::Binaries;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use std::net::Ipv4Addr;
use std::time::Duration;

fn binaries() -> Option<Binaries> {
    binaries_for(&["etcd", "kube-apiserver"])
}

fn binaries_for(needed: &[&str]) -> Option<Binaries> {
    match Binaries::find(needed) {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("PROXY_CONFORMANCE_REAL_ISTIO_TESTS").is_some() => {
            panic!("{e}")
        }
        Err(e) => {
            eprintln!("SKIPPED real-istio API server test: {e}");
            None
        }
    }
}

/// Creates the namespace and a service account in it (no controller makes
/// `default` here).
async fn create_account(client: &kube::Client, namespace: &str, name: &str) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(namespace.into());
    ns.create(&PostParams::default(), &n)
        .await
        .expect("namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(name.into());
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("service account");
}

/// Two API servers, one kubeconfig; a token minted on the remote cluster for
/// `external-istiod/istiod` with istiod's audience is reviewed as that
/// service account there (what istiod does with every debug caller's token).
#[tokio::test]
async fn two_api_servers_mint_and_review_service_account_tokens() {
    let Some(bins) = binaries() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let external = ApiServer::start(
        &bins,
        "external",
        Ipv4Addr::new(127, 0, 10, 1),
        &dir.path().join("external"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let remote = ApiServer::start(
        &bins,
        "remote",
        Ipv4Addr::new(127, 0, 10, 2),
        &dir.path().join("remote"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let config = kubeconfig(&[&external, &remote]);
    assert!(config.contains("current-context: external"), "{config}");
    assert!(config.contains("- name: remote\n  context:"), "{config}");

    let client = remote.client().unwrap_or_else(|e| panic!("{e}"));
    create_account(&client, "external-istiod", "istiod").await;

    let token = cluster::kubeops::token_request(
        &client,
        "external-istiod",
        "istiod",
        "istio-ca",
        Duration::from_secs(600),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.clone()),
            audiences: Some(vec!["istio-ca".into()]),
        },
        ..Default::default()
    };
    let got = reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("token review");
    let status = got.status.expect("status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.and_then(|u| u.username).as_deref(),
        Some("system:serviceaccount:external-istiod:istiod")
    );
    // The external cluster's issuer key is its own: it does not accept the token.
    let other: Api<TokenReview> = Api::all(external.client().unwrap_or_else(|e| panic!("{e}")));
    let got = other
        .create(&PostParams::default(), &review)
        .await
        .expect("token review");
    assert_ne!(got.status.and_then(|s| s.authenticated), Some(true));

    external.stop().await;
    remote.stop().await;
}

/// A real istiod replica, configured as the external control plane's, on the
/// remote API server; the real istioctl and `proxy-conformance ps` (as that
/// istioctl's version) ask it directly and print the same bytes, table and
/// `-o json` (nonces aside: istiod makes a new one per answer).
#[tokio::test]
async fn real_istioctl_and_ps_print_the_same_for_a_real_istiod() {
    use harness::topology::real_istio::istiod::{Istiod, IstiodSpec};
    use harness::topology::real_istio::sidecar::{Sidecar, SidecarSpec};
    let Some(bins) = binaries_for(&["etcd", "kube-apiserver", "pilot-discovery", "istioctl"])
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let remote = ApiServer::start(
        &bins,
        "remote",
        Ipv4Addr::new(127, 0, 10, 3),
        &dir.path().join("remote"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig_file = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig_file, kubeconfig(&[&remote])).expect("kubeconfig");
    let kubeconfig = kubeconfig_file;
    let client = remote.client().unwrap_or_else(|e| panic!("{e}"));
    // Istio's CRDs (copied beside the binaries by the build), the namespace,
    // and istioctl's service account.
    let crds_file = bins.dir.join("../istio-crds.yaml");
    let crds = std::fs::read_to_string(&crds_file)
        .unwrap_or_else(|e| panic!("{}: {e}", crds_file.display()));
    let docs = cluster::manifests::parse_yaml_docs("istio-crds.yaml", &crds)
        .unwrap_or_else(|e| panic!("{e}"));
    cluster::kubeops::apply_documents(&client, &docs, None, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    create_account(&client, "external-istiod", "default").await;

    let spec = IstiodSpec {
        name: "istiod-real-0".into(),
        namespace: "external-istiod".into(),
        ip: Ipv4Addr::new(127, 0, 11, 1),
        cluster_id: "remote".into(),
        kubeconfig: kubeconfig.clone(),
        request_limit: None,
    };
    let istiod = Istiod::start(&bins, &spec, &dir.path().join("istiod-0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The mesh: light sidecars (pilot-agent's node and metadata, the pod's
    // token) in `sample`, connected and ACKing, verified against the mesh root.
    let root = mesh_root(&client).await;
    create_account(&client, "sample", "sleep").await;
    let pods = [
        ("sleep-7b9f8c5d4-x2x7q", "sleep"),
        ("helloworld-v1-6d6d8f7b9-k4k2l", "helloworld"),
        ("helloworld-v1-6d6d8f7b9-p9p8o", "helloworld"),
    ];
    let mut sidecars = Vec::new();
    for (i, (pod, app)) in pods.into_iter().enumerate() {
        let token = cluster::kubeops::token_request(
            &client,
            "sample",
            "sleep",
            "istio-ca",
            Duration::from_secs(600),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let spec = SidecarSpec {
            pod: pod.into(),
            namespace: "sample".into(),
            service_account: "sleep".into(),
            ip: Ipv4Addr::new(10, 244, 0, 10 + i as u8),
            cluster_id: "remote".into(),
            istio_version: "1.32.0-dev".into(),
            app: app.into(),
            node_type: "sidecar".into(),
        };
        let mut sidecar = Sidecar::connect(
            istiod.tls_addr(),
            &root,
            "istiod.external-istiod.svc",
            &token,
            &spec,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        sidecar
            .synced(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}\nistiod:\n{}", istiod.output(30)));
        sidecars.push(sidecar);
    }

    let token = cluster::kubeops::token_request(
        &client,
        "external-istiod",
        "default",
        "istio-ca",
        Duration::from_secs(600),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).expect("token file");
    let xds = istiod.tls_addr().to_string();

    // istioctl mints its own token on the current context (remote), as the blog runs it.
    let istioctl = |extra: &[&str]| {
        let out = std::process::Command::new(bins.path("istioctl"))
            .args(["proxy-status", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--xds-address", &xds, "-i", "external-istiod"])
            .args(extra)
            .output()
            .expect("istioctl runs");
        assert!(
            out.status.success(),
            "istioctl {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ps = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
            .args([
                "ps",
                "--xds-address",
                &xds,
                "-i",
                "external-istiod",
                "--istioctl-version",
                "1.32",
                "--token-file",
            ])
            .arg(&token_file)
            .args(extra)
            .output()
            .expect("proxy-conformance runs");
        assert!(
            out.status.success(),
            "ps {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The nonce is new with every answer (`<push version>/<uuid>`), and
    // istiod lists the ClientConfigs in map order, which nothing fixes (the
    // conformance check compares them keyed by node id too): both normalised.
    let normalised = |json: String| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        if let Some(o) = v.as_object_mut() {
            o.remove("nonce");
            if let Some(serde_json::Value::Array(rows)) = o.get_mut("resources") {
                rows.sort_by_key(|r| r["node"]["id"].as_str().unwrap_or_default().to_string());
            }
        }
        v
    };
    let table = istioctl(&[]);
    assert_eq!(table, ps(&[]), "default table");
    assert_eq!(
        table.lines().count(),
        4,
        "a header and the three sidecars:\n{table}"
    );
    assert!(table.contains("sleep-7b9f8c5d4-x2x7q.sample"), "{table}");
    // `-v 1` prints ages (`SYNCED (3s)`): the two are asked back to back,
    // again (bounded) when a second ticked between them.
    let mut verbose = (String::new(), String::new());
    for _ in 0..5 {
        verbose = (istioctl(&["-v", "1"]), ps(&["-v", "1"]));
        if verbose.0 == verbose.1 {
            break;
        }
    }
    assert_eq!(verbose.0, verbose.1, "-v 1");
    assert!(verbose.0.contains("SYNCED"), "{}", verbose.0);
    let real = normalised(istioctl(&["-o", "json"]));
    assert_eq!(real, normalised(ps(&["-o", "json"])), "-o json");
    // What istiod says of itself: the pod name as ID, the stamped version.
    let identifier = real["controlPlane"]["identifier"]
        .as_str()
        .unwrap_or_default();
    assert!(
        identifier.contains("\"ID\":\"istiod-real-0\""),
        "{identifier}"
    );
    assert!(
        identifier.contains("\"version\":\"1.32.0-dev\""),
        "{identifier}"
    );

    drop(sidecars);
    istiod.stop().await;
    remote.stop().await;
}

/// The mesh's root certificate: istiod's self-signed CA, which the first
/// replica writes to `istio-ca-secret` in its namespace.
async fn mesh_root(client: &kube::Client) -> String {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "external-istiod");
    let secret = secrets
        .get("istio-ca-secret")
        .await
        .expect("istio-ca-secret");
    let pem = secret
        .data
        .and_then(|d| d.get("ca-cert.pem").cloned())
        .expect("ca-cert.pem in istio-ca-secret");
    String::from_utf8(pem.0).expect("PEM")
}

/// The checks a live mesh of real istiod replicas cannot run, and why: no
/// scripted mesh, no scripted faults, no forged tokens (the issuer's key is
/// the API server's), no network faults.
const SKIPPED_ON_REAL_ISTIO: &[&str] = &[
    "table-snapshot",
    "empty-mesh",
    "replica-down",
    "replica-hang",
    "replica-slow",
    "replica-error",
    "replica-garbage",
    "duplicate-proxy",
    "large-mesh",
    "replica-churn",
    "replica-poison",
    "replica-poison-config-dump",
    "bad-token",
    "slow-readers",
];

/// Runs the whole catalog on `--topology real-istio` with the bundled proxy
/// (with these defects).
async fn run_on_real_istio(defects: Vec<istioctl_proxy::Defect>) -> harness::report::RunReport {
    use crate::support::run;
    use harness::config::RunArgs;
    use harness::topology::{Hooks, TopologyKind};
    let hooks = Hooks {
        customize_bundled: Some(std::sync::Arc::new(move |c| c.defects = defects.clone())),
        ..Default::default()
    };
    let config = run::config(RunArgs {
        topology: Some(TopologyKind::RealIstio),
        ..Default::default()
    });
    harness::runner::run(&config, &hooks, |_| {})
        .await
        .unwrap_or_else(|e| panic!("the run could not start: {e}"))
}

/// The reference proxy passes every check the real-istio topology can run,
/// and the rest are skipped for what the topology lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_proxy_passes_on_real_istio() {
    use crate::support::run;
    use harness::suite::Outcome;
    use std::collections::BTreeSet;
    if binaries_for(&["etcd", "kube-apiserver", "pilot-discovery"]).is_none() {
        return;
    }
    let _alone = run::alone().await;
    let report = run_on_real_istio(vec![]).await;
    let skipped: BTreeSet<&str> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skip(why) => {
                assert!(
                    why.contains("the real-istio topology"),
                    "{}: skipped for another reason: {why}",
                    r.id
                );
                Some(r.id.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        SKIPPED_ON_REAL_ISTIO
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        "\n{}",
        run::explain(&report)
    );
    assert!(
        run::failed(&report).is_empty(),
        "failures on real istiod:\n{}",
        run::explain(&report)
    );
}

/// The suite has teeth on real istiod too: each broken variant fails the
/// checks that target its defect, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_proxies_fail_on_real_istio() {
    use crate::support::run;
    use istioctl_proxy::Defect;
    use std::collections::BTreeSet;
    if binaries_for(&["etcd", "kube-apiserver", "pilot-discovery"]).is_none() {
        return;
    }
    let _alone = run::alone().await;
    for (defect, expected) in [
        (
            Defect::DropLastReplicaSilently,
            &[
                "syncz-union",
                "istioctl-ack",
                "real-istioctl",
                "concurrent-clients",
                "replica-partition",
                "replica-killed",
                "replica-restart",
                "dns-discovery",
            ][..],
        ),
        (
            Defect::KeepReplicaControlPlaneId,
            &["external-identity", "real-istioctl"][..],
        ),
        (
            Defect::ConfigDumpFirstReplicaOnly,
            &["config-dump-owner", "real-istioctl"][..],
        ),
        // A frozen replica fails one ask; forgotten, it is not seen again
        // (nor by the checks after it on the same live mesh, which start
        // from the full mesh).
        (
            Defect::ForgetFailedReplicas,
            &[
                "replica-partition",
                "replica-killed",
                "replica-restart",
                "dns-discovery",
            ][..],
        ),
    ] {
        let report = run_on_real_istio(vec![defect]).await;
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            run::failed(&report),
            expected,
            "{defect:?}:\n{}",
            run::explain(&report)
        );
    }
}

/// Processes whose command line mentions `needle` (ours: every process of a
/// topology names its folder).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// `real-istio up` leaves the topology running in the background and prints
/// the istioctl command; `walkthrough` prints the real istioctl's table
/// through the proxy; `down` stops every process and removes its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_walkthrough_down_leaves_nothing_behind() {
    if binaries_for(&["etcd", "kube-apiserver", "pilot-discovery", "istioctl"]).is_none() {
        return;
    }
    // Not beside another whole suite run: on 2 cores their loads add up.
    let _alone = crate::support::run::alone().await;
    let state = tempfile::tempdir().expect("temp dir");
    let dir = state.path().to_str().expect("utf-8 path").to_string();
    let bin = env!("CARGO_BIN_EXE_proxy-conformance");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(["real-istio"])
            .args(args)
            .args(["--state-dir", &dir])
            .output()
            .expect("proxy-conformance runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "real-istio {args:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // Whatever happens below (a failed assertion), `down` runs.
    struct DownOnDrop<'a>(&'a str, &'a str);
    impl Drop for DownOnDrop<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new(self.0)
                .args(["real-istio", "down", "--state-dir", self.1])
                .output();
        }
    }
    let _down = DownOnDrop(bin, &dir);
    let up = run(&["up"]);
    assert!(up.contains("ISTIOCTL_XDS_ADDRESS="), "{up}");
    assert!(up.contains("--context remote"), "{up}");
    assert!(
        !processes_mentioning(&dir).is_empty(),
        "nothing runs after up"
    );
    let table = run(&["walkthrough"]);
    // The blog's three pods; with real sidecars built, one light sidecar per
    // replica besides.
    let real = Binaries::find(&["pilot-agent", "envoy"]).is_ok();
    assert_eq!(
        table.lines().filter(|l| l.contains("<external>")).count(),
        if real { 6 } else { 3 },
        "{table}"
    );
    assert!(table.contains("sleep-7b9f8c5d4-"), "{table}");
    run(&["down"]);
    let left = processes_mentioning(&dir);
    assert!(left.is_empty(), "left running after down: {left:?}");
    assert!(
        !state.path().join("world").exists(),
        "the topology's files are left"
    );
}

/// Ctrl-C in the middle of `run --topology real-istio` stops every process of
/// the topology (API servers, etcd, istiod, the proxy command) and removes
/// its folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_leaves_no_real_istio_process_behind() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    if binaries_for(&["etcd", "kube-apiserver", "pilot-discovery"]).is_none() {
        return;
    }
    let _alone = crate::support::run::alone().await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let pid_file = scratch.path().join("proxy.pid");
    // A "proxy" that never answers: the run waits for it while we interrupt.
    let cmd = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let mut runner = std::process::Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .args([
            "run",
            "--topology",
            "real-istio",
            "--run-check",
            "syncz-union",
        ])
        .args(["--proxy-ready-timeout", "120s", "--proxy-cmd", &cmd])
        .args([
            "--report",
            &scratch.path().join("r.yaml").display().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(scratch.path().join("stderr")).expect("stderr file"))
        .spawn()
        .expect("proxy-conformance starts");
    let stdout = runner.stdout.take().expect("stdout");
    // The topology's folder, from the line that reports it up.
    let mut world_dir = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if let Some(k) = line.split("kubeconfig ").nth(1) {
            world_dir = std::path::Path::new(k.trim())
                .parent()
                .map(|p| p.to_path_buf());
            break;
        }
    }
    let world_dir = world_dir.unwrap_or_else(|| {
        let _ = runner.wait();
        panic!(
            "the run did not report the topology up; its stderr:\n{}",
            std::fs::read_to_string(scratch.path().join("stderr")).unwrap_or_default()
        )
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&pid_file).map_or(true, |s| s.trim().is_empty()) {
        assert!(Instant::now() < deadline, "the proxy command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let needle = world_dir.display().to_string();
    assert!(
        !processes_mentioning(&needle).is_empty(),
        "the topology runs"
    );
    // SAFETY: SIGINT to a process this test started.
    unsafe {
        libc::kill(runner.id() as i32, libc::SIGINT);
    }
    let status = runner.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&needle);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!world_dir.exists(), "{} is left", world_dir.display());
}
