//! `--proxy-addr`: a proxy started once by the user, configured with what the
//! runner prints (fixed replica addresses, the state folder's CA and token
//! key), passes every scenario: the setup stays the same across scenarios.
//! Uses the fixed replica ports 15010/15012 on 127.0.0.2 and up.

use crate::support::run;

use harness::config::RunArgs;
use istioctl_proxy::config::{IdentityMode, ServeTransport, UpstreamTransport};
use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_proxy_configured_once_passes_every_scenario() {
    let _alone = run::alone().await;
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut config = run::config(RunArgs {
        proxy_addr: Some("placeholder:1".to_string()),
        state_dir: Some(state.path().to_path_buf()),
        ..Default::default()
    });
    // What the runner prints first (five replicas: the largest scenario).
    let fixed = match harness::topology::local::prepare_fixed(&config.state_dir, 5).await {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(fixed.replicas_tls[0], "127.0.0.2:15012");
    assert_eq!(fixed.replicas_tls.len(), 5);

    // The user's proxy: the reference one, configured only from that.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .unwrap_or_else(|e| panic!("cert: {e}"));
    let (crt, key) = (state.path().join("p.crt"), state.path().join("p.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
    let mut pc = istioctl_proxy::ProxyConfig::plaintext_static(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        fixed.replicas_tls.clone(),
    );
    pc.serve = ServeTransport::Tls { cert: crt, key };
    pc.upstream = UpstreamTransport::Tls {
        ca: fixed.ca_file.clone(),
        server_name: "istiod".to_string(),
        client_identity: None,
    };
    pc.identity = IdentityMode::Passthrough;
    pc.token_verification.public_keys = vec![fixed.token_issuer_key.clone()];
    pc.replica_timeout = harness::topology::local::BUNDLED_REPLICA_TIMEOUT;
    pc.request_timeout = harness::topology::local::BUNDLED_REQUEST_TIMEOUT;
    let proxy = match istioctl_proxy::start(pc).await {
        Ok(p) => p,
        Err(e) => panic!("proxy: {e}"),
    };

    config.proxy = harness::config::ProxyMode::Address(proxy.local_addr().to_string());
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    proxy.shutdown().await;
    assert_eq!(report.mode, "address");
    if let Err(e) = run::passes_where_it_can(&report, harness::topology::TopologyKind::Local) {
        panic!("failures against a proxy configured once:\n{e}");
    }
}
