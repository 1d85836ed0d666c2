//! The `local` topology: fake-istiod replicas on loopback addresses in this
//! process, each open scenario on its own block (127.0.K.x, see [`loopback`](super::loopback)),
//! so scenarios run side by side; a proxy at a fixed address (`--proxy-addr`)
//! has one scenario at a time on 127.0.0.x. It has every capability: the mesh is scripted, the
//! fakes fail on request, proxies move, and the bench holds the token issuer's
//! key.

use super::bench::{
    ProxyError, Session, Shared, StartedProxy, Teardown, private_tempdir, serving_cert, write,
    write_private,
};
use super::loopback::LoopbackBlocks;
use super::process::{Placeholders, ProxyProcess};
use super::{Capability, ControlPlane, ReplicaTrust, ScriptedMesh, TopologyError};
use super::{Customize, Hooks, OpenError, ProxyMode, ProxyUnderTest, Replica, Topology};
use crate::suite::context::{CheckContext, ProxyEndpoint};
use crate::suite::memory::MemoryProbe;
use fake_istiod::scenario::{Fault, Scenario};
use fake_istiod::{FakeIstiod, StartOptions, TokenSpec};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a restarted fake replica is down.
pub const RESTART_OUTAGE: Duration = Duration::from_millis(300);

/// The local topology: each scenario's fake replicas in this process, the
/// proxy under test bundled, a command, or at an address.
pub struct LocalTopology {
    proxy: ProxyUnderTest,
    /// Persistent CA and token key for a proxy at a fixed address.
    state_dir: PathBuf,
    /// `--scenarios`; `None`: the embedded ones.
    scenarios: Option<PathBuf>,
    customize_bundled: Option<Customize>,
    pad_replicas_to: Option<usize>,
    /// Each open scenario's own loopback block.
    blocks: LoopbackBlocks,
    /// Held by a scenario whose replicas have fixed addresses (`address:`)
    /// while it is open: two of those are never open at once.
    fixed_addresses: Arc<tokio::sync::Mutex<()>>,
}

impl LocalTopology {
    pub fn new(
        proxy: ProxyUnderTest,
        state_dir: PathBuf,
        scenarios: Option<PathBuf>,
        hooks: &Hooks,
    ) -> Self {
        LocalTopology {
            proxy,
            state_dir,
            scenarios,
            customize_bundled: hooks.customize_bundled.clone(),
            pad_replicas_to: hooks.pad_replicas_to,
            blocks: LoopbackBlocks::default(),
            fixed_addresses: Default::default(),
        }
    }

    /// Starts the scenario's replicas and the proxy under test, and waits
    /// until the proxy takes requests.
    pub async fn start(&self, name: &str, mut scenario: Scenario) -> Result<Session, ProxyError> {
        let proxy = &self.proxy;
        if let Some(n) = self.pad_replicas_to {
            pad_replicas(&mut scenario, n);
        }
        let mut teardown: Vec<Box<dyn Teardown>> = Vec::new();
        let opts = match proxy.mode {
            // A running proxy was configured once: fixed replica addresses, and
            // the CA and token key kept in the state folder.
            ProxyMode::Address(_) => StartOptions {
                state_dir: Some(self.state_dir.clone()),
                ..StartOptions::default()
            },
            // This scenario's own loopback block.
            _ => {
                let block = self.blocks.claim().ok_or_else(|| {
                    ProxyError::Setup(
                        "no free loopback block (127.0.K.x) for another scenario".to_string(),
                    )
                })?;
                let opts = StartOptions {
                    base_address: block.base_address(),
                    ..StartOptions::ephemeral()
                };
                teardown.push(Box::new(block));
                opts
            }
        };
        if scenario.replicas.iter().any(|r| r.address.is_some()) {
            let held = self.fixed_addresses.clone().lock_owned().await;
            teardown.push(Box::new(FixedAddresses(held)));
        }
        let fake = FakeIstiod::start(scenario.clone(), opts)
            .await
            .map_err(|e| {
                ProxyError::Setup(format!("cannot start the fake istiod replicas: {e}"))
            })?;
        let namespace = scenario.istiod.namespace.clone();
        let f = files(&fake, &namespace)?;
        if let ProxyMode::Address(_) = proxy.mode {
            write(
                &self.state_dir.join(TOKEN_ISSUER_KEY_FILE),
                fake.token_authority().public_pem(),
            )?;
        }
        let plaintext = proxy.plaintext;

        let mut started_memory = None;
        let (address, started, output): (String, Option<Box<dyn StartedProxy>>, _) =
            match &proxy.mode {
                ProxyMode::Bundled => {
                    let mut pc =
                        bundled_config(&fake, &namespace, &f.cert, &f.key, &f.token_key, plaintext);
                    if let Some(custom) = &self.customize_bundled {
                        custom(&mut pc);
                    }
                    let p = istioctl_proxy::start(pc).await.map_err(|e| {
                        ProxyError::Setup(format!("cannot start the bundled proxy: {e}"))
                    })?;
                    (p.local_addr().to_string(), Some(Box::new(p)), None)
                }
                ProxyMode::Command(template) => {
                    let listen = free_port()?;
                    let join = |tls: bool| {
                        fake.replicas()
                            .iter()
                            .map(|r| if tls { r.tls_addr } else { r.plaintext_addr }.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let mut v = Placeholders::new();
                    v.insert("listen", listen.clone());
                    v.insert("istiod", join(true));
                    v.insert("istiod_plaintext", join(false));
                    v.insert("namespace", namespace.clone());
                    v.insert("ca", fake.ca_file().display().to_string());
                    v.insert("cert", f.cert.display().to_string());
                    v.insert("key", f.key.display().to_string());
                    v.insert("token_file", f.token.display().to_string());
                    v.insert("token_issuer_key", f.token_key.display().to_string());
                    v.insert("scenario", name.to_string());
                    let p = ProxyProcess::spawn(template, &v)
                        .map_err(|e| ProxyError::Setup(e.to_string()))?;
                    let out = p.output.clone();
                    let memory = p.pid().map(MemoryProbe::Tree);
                    started_memory = memory;
                    (listen, Some(Box::new(p)), Some(out))
                }
                ProxyMode::Address(a) => (a.clone(), None, None),
                ProxyMode::Image(i) => {
                    return Err(ProxyError::Setup(format!(
                        "the proxy image {i} runs on the docker topology (--topology docker)"
                    )));
                }
            };

        let memory = match proxy.mode {
            ProxyMode::Bundled => Some(MemoryProbe::HarnessProcess),
            _ => started_memory,
        };
        let fake = Arc::new(fake);
        let ctx = CheckContext {
            memory,
            notes: Default::default(),
            scenario_name: name.to_string(),
            control_plane: Arc::new(LocalControlPlane::new(fake.clone(), scenario)),
            proxy: ProxyEndpoint {
                address,
                plaintext,
                discovery_refresh: proxy.discovery_refresh,
            },
            families: proxy.families.clone(),
            snapshots: proxy.snapshots.clone(),
            proxy_output: output,
        };
        // The replicas first, then their addresses are given back.
        teardown.insert(
            0,
            Box::new(Shared(fake, |f: FakeIstiod| Box::pin(f.shutdown()))),
        );
        Session::new(ctx, started, teardown, Some(f.dir))
            .ready(proxy.ready_timeout)
            .await
    }
}

/// Held while a scenario with fixed replica addresses is open.
struct FixedAddresses(tokio::sync::OwnedMutexGuard<()>);

impl Teardown for FixedAddresses {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { drop(self.0) })
    }
}

impl Topology for LocalTopology {
    fn name(&self) -> &'static str {
        "local"
    }

    fn sequential(&self) -> Option<String> {
        matches!(self.proxy.mode, ProxyMode::Address(_)).then(|| {
            "a proxy at --proxy-addr is configured once, for one set of replica addresses"
                .to_string()
        })
    }

    fn capabilities(&self) -> &'static [Capability] {
        &Capability::LOCAL
    }

    fn mode(&self) -> String {
        self.proxy.mode.name().to_string()
    }

    /// A running proxy is configured once: every scenario gets the same
    /// replica addresses (as many as the largest scenario has), CA and
    /// token key, which it must be configured with before the run.
    fn prepare<'a>(
        &'a mut self,
        scenarios: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<String>, ProxyError>> {
        Box::pin(async move {
            if !matches!(self.proxy.mode, ProxyMode::Address(_)) {
                return Ok(vec![]);
            }
            let dir = self.scenarios.as_deref();
            let most = scenarios
                .iter()
                .filter_map(|name| super::scenarios::load(dir, name).ok())
                .map(|s| s.replicas.len())
                .max()
                .unwrap_or(0);
            self.pad_replicas_to = Some(most);
            let f = prepare_fixed(&self.state_dir, most).await?;
            Ok(vec![
                "The proxy at the given address must be configured with (the same for every scenario):".to_string(),
                format!("  replicas (TLS):       {}", f.replicas_tls.join(",")),
                format!("  replicas (plaintext): {}", f.replicas_plaintext.join(",")),
                format!(
                    "  replicas' CA:         {} (certificates name istiod, istiod.<namespace>.svc and the IP)",
                    f.ca_file.display()
                ),
                format!("  token issuer key:     {}", f.token_issuer_key.display()),
            ])
        })
    }

    fn open<'a>(&'a self, scenario: &'a str) -> BoxFuture<'a, Result<Session, OpenError>> {
        Box::pin(async move {
            let s = super::scenarios::load(self.scenarios.as_deref(), scenario)
                .map_err(OpenError::Scenario)?;
            Ok(self.start(scenario, s).await?)
        })
    }
}

/// Adds idle replicas (no proxies) until the scenario has `n`.
pub fn pad_replicas(scenario: &mut Scenario, n: usize) {
    let mut k = 0;
    while scenario.replicas.len() < n {
        k += 1;
        let name = format!("istiod-idle-{k}");
        if scenario.replicas.iter().all(|r| r.name != name) {
            scenario
                .replicas
                .push(fake_istiod::scenario::Replica::new(name));
        }
    }
}

/// With --proxy-addr: the public key that verifies callers' tokens, in the state folder.
pub const TOKEN_ISSUER_KEY_FILE: &str = "token-issuer.pem";

/// What a proxy started by the user (`--proxy-addr`) must be configured with.
#[derive(Debug, Clone)]
pub struct FixedSetup {
    /// Replica addresses, TLS ports (plaintext: the same IPs on 15010).
    pub replicas_tls: Vec<String>,
    pub replicas_plaintext: Vec<String>,
    /// CA that signs every replica's serving certificate.
    pub ca_file: PathBuf,
    /// Public key that verifies callers' tokens.
    pub token_issuer_key: PathBuf,
}

/// Creates (or reuses) the state folder's CA and token key, so they exist
/// before the user's proxy is configured with them, and lists the fixed
/// replica addresses every scenario will use (`replicas` of them).
pub async fn prepare_fixed(state_dir: &Path, replicas: usize) -> Result<FixedSetup, ProxyError> {
    // It receives the CA key and the token-signing key: owner-only.
    fake_istiod::tls::create_private_dir(state_dir)
        .map_err(|e| ProxyError::Setup(format!("cannot create {}: {e}", state_dir.display())))?;
    let opts = StartOptions {
        state_dir: Some(state_dir.to_path_buf()),
        ..StartOptions::ephemeral()
    };
    let version = proto::IstioVersion::new(1, 30, 0);
    let fake = FakeIstiod::start(Scenario::empty(version), opts)
        .await
        .map_err(|e| ProxyError::Setup(format!("cannot prepare {}: {e}", state_dir.display())))?;
    let token_issuer_key = state_dir.join(TOKEN_ISSUER_KEY_FILE);
    write(&token_issuer_key, fake.token_authority().public_pem())?;
    let ca_file = fake.ca_file().to_path_buf();
    fake.shutdown().await;
    let defaults = StartOptions::default();
    let ip = |i: usize| match defaults.base_address {
        std::net::IpAddr::V4(v4) => std::net::IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from(v4).wrapping_add(i as u32),
        )),
        other => other,
    };
    let addrs = |port: u16| {
        (0..replicas)
            .map(|i| std::net::SocketAddr::new(ip(i), port).to_string())
            .collect()
    };
    Ok(FixedSetup {
        replicas_tls: addrs(defaults.tls_port),
        replicas_plaintext: addrs(defaults.plaintext_port),
        ca_file,
        token_issuer_key,
    })
}

/// Deadlines the bundled proxy runs with in the suite: short, so the hang and
/// down checks finish fast (users' defaults are longer).
pub const BUNDLED_REPLICA_TIMEOUT: Duration = Duration::from_secs(2);
pub const BUNDLED_REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// Files the runner writes for the proxy under test.
struct Files {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    token: PathBuf,
    token_key: PathBuf,
}

/// A serving certificate for the proxy (127.0.0.1, localhost) and the other
/// files it may need.
fn files(fake: &FakeIstiod, namespace: &str) -> Result<Files, ProxyError> {
    // Owner-only: it holds the proxy's private key and its token.
    let dir = private_tempdir()?;
    let (cert_pem, key_pem) = serving_cert(&["localhost", "127.0.0.1"])?;
    let f = Files {
        cert: dir.path().join("proxy.crt"),
        key: dir.path().join("proxy.key"),
        token: dir.path().join("token"),
        token_key: dir.path().join("token-issuer.pem"),
        dir,
    };
    write(&f.cert, &cert_pem)?;
    write_private(&f.key, &key_pem)?;
    write_private(
        &f.token,
        &fake.mint_token(&TokenSpec::new(namespace, "istioctl-proxy")),
    )?;
    write(&f.token_key, fake.token_authority().public_pem())?;
    Ok(f)
}

/// A free port on 127.0.0.1 for a proxy command to listen on.
fn free_port() -> Result<String, ProxyError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ProxyError::Setup(format!("no free port on 127.0.0.1: {e}")))?;
    let addr = l
        .local_addr()
        .map_err(|e| ProxyError::Setup(format!("no free port on 127.0.0.1: {e}")))?;
    Ok(addr.to_string())
}

/// The bundled reference proxy's configuration for this bench.
pub fn bundled_config(
    fake: &FakeIstiod,
    namespace: &str,
    cert: &Path,
    key: &Path,
    token_key: &Path,
    plaintext: bool,
) -> istioctl_proxy::ProxyConfig {
    use istioctl_proxy::config::*;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let replicas: Vec<String> = fake
        .replicas()
        .iter()
        .map(|r| format!("{}={}", r.name, r.tls_addr))
        .collect();
    let mut c = ProxyConfig::plaintext_static(listen, replicas);
    if !plaintext {
        c.serve = ServeTransport::Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
    }
    c.upstream = UpstreamTransport::Tls {
        ca: fake.ca_file().to_path_buf(),
        // istiod's serving certificate names its Service, as in a real cluster.
        server_name: format!("istiod.{namespace}.svc"),
        client_identity: None,
    };
    c.identity = IdentityMode::Passthrough;
    c.token_verification.public_keys = vec![token_key.to_path_buf()];
    c.replica_timeout = BUNDLED_REPLICA_TIMEOUT;
    c.request_timeout = BUNDLED_REQUEST_TIMEOUT;
    c
}

/// One scenario's fake replicas.
pub struct LocalControlPlane {
    fake: Arc<FakeIstiod>,
    scenario: Scenario,
}

impl LocalControlPlane {
    /// Wraps replicas started with `scenario`. The runner keeps a clone of
    /// `fake` to shut the replicas down once the checks are done.
    pub fn new(fake: Arc<FakeIstiod>, scenario: Scenario) -> Self {
        LocalControlPlane { fake, scenario }
    }

    /// The fake replicas themselves (for tests of the bench).
    pub fn fake(&self) -> &FakeIstiod {
        &self.fake
    }
}

fn failed(e: fake_istiod::Error) -> TopologyError {
    TopologyError::Failed(e.to_string())
}

/// How long a replica whose fault was cleared may take to listen again.
const BACK_BOUND: Duration = Duration::from_secs(5);

impl LocalControlPlane {
    /// Clears the replica's fault and waits (bounded) until it accepts
    /// connections again: a fault that closed its listeners (down, reset,
    /// flap) is over only once they are open again, whoever asks first.
    async fn clear(&self, replica: &str) -> Result<(), TopologyError> {
        self.fake.clear_fault(replica).await.map_err(failed)?;
        let Some(r) = self.fake.replicas().into_iter().find(|r| r.name == replica) else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + BACK_BOUND;
        for addr in [r.plaintext_addr, r.tls_addr] {
            let mut pause = Duration::from_millis(2);
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(TopologyError::Failed(format!(
                        "replica {replica} did not listen on {addr} again within {BACK_BOUND:?} of its fault being cleared"
                    )));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl ControlPlane for LocalControlPlane {
    fn topology(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> &'static [Capability] {
        &Capability::LOCAL
    }

    fn replicas(&self) -> Vec<Replica> {
        self.fake
            .replicas()
            .into_iter()
            .map(|r| Replica {
                name: r.name,
                version: r.version,
                tls_addr: r.tls_addr,
                plaintext_addr: Some(r.plaintext_addr),
                reported_version: None,
            })
            .collect()
    }

    fn istio_namespace(&self) -> &str {
        &self.scenario.istiod.namespace
    }

    fn replica_trust(&self) -> ReplicaTrust {
        // The fakes' certificates carry their IP addresses.
        ReplicaTrust {
            ca_pem: self.fake.ca_pem(),
            server_name: None,
        }
    }

    fn token(&self, spec: &TokenSpec) -> Result<String, TopologyError> {
        Ok(self.fake.mint_token(spec))
    }

    fn scripted(&self) -> Option<&dyn ScriptedMesh> {
        Some(self)
    }

    /// The fake stops serving (connections refused, open ones cut), stays
    /// down for [`RESTART_OUTAGE`], and serves again on the same address: a
    /// restarted process.
    fn restart<'a>(&'a self, replica: &'a str) -> Option<BoxFuture<'a, Result<(), TopologyError>>> {
        Some(Box::pin(async move {
            self.fake
                .set_fault(replica, Fault::Down)
                .await
                .map_err(failed)?;
            // The outage itself (not a wait for anything): clients asking
            // meanwhile find the replica down, as they would a restarting pod.
            tokio::time::sleep(RESTART_OUTAGE).await;
            self.clear(replica).await
        }))
    }
}

impl ScriptedMesh for LocalControlPlane {
    fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    fn scenario_time(&self) -> SystemTime {
        self.fake.scenario_time()
    }

    fn set_fault<'a>(
        &'a self,
        replica: &'a str,
        fault: Option<Fault>,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(async move {
            match fault {
                Some(f) => self.fake.set_fault(replica, f).await.map_err(failed),
                None => self.clear(replica).await,
            }
        })
    }

    fn move_proxy<'a>(
        &'a self,
        proxy_id: &'a str,
        to_replica: &'a str,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(async move {
            self.fake
                .move_proxy(proxy_id, to_replica)
                .await
                .map_err(failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Found: the key and token written for `--proxy-cmd` were 0644.
    #[tokio::test]
    async fn key_and_token_for_the_proxy_are_owner_only() {
        // No replicas: nothing binds a port.
        let fake = FakeIstiod::start(
            Scenario::empty(proto::IstioVersion::new(1, 30, 0)),
            StartOptions::ephemeral(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let f = files(&fake, "istio-system").unwrap_or_else(|e| panic!("{e}"));
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        assert_eq!(mode(&f.key), 0o600, "proxy.key");
        assert_eq!(mode(&f.token), 0o600, "token");
        assert_eq!(mode(f.dir.path()), 0o700, "the folder");
        fake.shutdown().await;
    }
}
