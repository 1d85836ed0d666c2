//! One scenario's bench: the fake istiod replicas plus the proxy under test,
//! started in one of three ways (bundled in process, a command, an address),
//! and stopped again afterwards.

use super::context::{CheckContext, ProxyEndpoint};
use super::options::{ProxyMode, RunConfig};
use super::process::{Placeholders, ProxyProcess};
use crate::client;
use crate::runner::context::ClientErrorExt;
use crate::topology::cluster::ClusterControlPlane;
use crate::topology::docker::DockerControlPlane;
use crate::topology::local::LocalControlPlane;
use crate::topology::{TopologyError, TopologyKind};
use fake_istiod::scenario::Scenario;
use fake_istiod::{FakeIstiod, StartOptions, TokenSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Adjusts the bundled proxy's configuration (tests use it to inject defects).
pub type Customize = Arc<dyn Fn(&mut istioctl_proxy::ProxyConfig) + Send + Sync>;

/// Connects the cluster topology another way (tests: fake replicas standing
/// in for a cluster's istiod pods).
pub type ConnectCluster = Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<ClusterControlPlane, TopologyError>>
        + Send
        + Sync,
>;

/// Called with each scenario's context once its bench is up.
pub type AfterSetup = Arc<dyn Fn(&CheckContext) + Send + Sync>;

/// Test-only levers of a run; users have none of these.
#[derive(Clone, Default)]
pub struct Hooks {
    pub customize_bundled: Option<Customize>,
    /// With `--topology cluster`: instead of the kubeconfig contexts.
    pub connect_cluster: Option<ConnectCluster>,
    /// With `--proxy-addr`: give every scenario this many replicas (idle ones
    /// added), so the replica addresses the proxy was configured with never change.
    pub pad_replicas_to: Option<usize>,
    /// Called once a scenario's bench is up, before its checks (tests: a
    /// panic in the middle of a run).
    pub after_setup: Option<AfterSetup>,
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

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("customize_bundled", &self.customize_bundled.is_some())
            .field("connect_cluster", &self.connect_cluster.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Setup(String),
    #[error("{what} did not answer within {timeout:?} ({last}){}", output_note(.output))]
    NotReady {
        /// Which proxy: the command as run, or its address.
        what: String,
        timeout: Duration,
        last: String,
        output: String,
    },
    #[error("{what} exited before answering ({status}){}", output_note(.output))]
    Exited {
        what: String,
        status: String,
        output: String,
    },
}

impl ProxyError {
    /// The proxy itself did not come up (as opposed to the bench around it).
    pub fn is_not_ready(&self) -> bool {
        matches!(
            self,
            ProxyError::NotReady { .. } | ProxyError::Exited { .. }
        )
    }
}

fn output_note(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; its output:\n{output}")
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
pub async fn prepare_fixed(config: &RunConfig, replicas: usize) -> Result<FixedSetup, ProxyError> {
    // It receives the CA key and the token-signing key: owner-only.
    fake_istiod::tls::create_private_dir(&config.state_dir).map_err(|e| {
        ProxyError::Setup(format!("cannot create {}: {e}", config.state_dir.display()))
    })?;
    let opts = StartOptions {
        state_dir: Some(config.state_dir.clone()),
        ..StartOptions::ephemeral()
    };
    let version = proto::IstioVersion::new(1, 30, 0);
    let fake = FakeIstiod::start(Scenario::empty(version), opts)
        .await
        .map_err(|e| {
            ProxyError::Setup(format!(
                "cannot prepare {}: {e}",
                config.state_dir.display()
            ))
        })?;
    let token_issuer_key = config.state_dir.join(TOKEN_ISSUER_KEY_FILE);
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

enum Running {
    InProcess(istioctl_proxy::RunningProxy),
    Process(ProxyProcess),
    Container(Box<crate::topology::docker::proxy::ProxyContainer>),
    External,
}

/// The running scenario.
pub struct Bench {
    pub ctx: CheckContext,
    /// The local topology's replicas (also inside `ctx`'s control plane), to
    /// shut them down.
    fake: Option<Arc<FakeIstiod>>,
    /// The docker topology's replica containers and network, to remove them.
    docker: Option<Arc<DockerControlPlane>>,
    running: Running,
    _files: Option<tempfile::TempDir>,
}

/// Files the runner writes for the proxy under test.
struct Files {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    token: PathBuf,
    token_key: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), ProxyError> {
    std::fs::write(path, text)
        .map_err(|e| ProxyError::Setup(format!("cannot write {}: {e}", path.display())))
}

/// A private key or a token: mode 0600.
fn write_private(path: &Path, text: &str) -> Result<(), ProxyError> {
    fake_istiod::tls::write_private(path, text)
        .map_err(|e| ProxyError::Setup(format!("cannot write {}: {e}", path.display())))
}

/// A serving certificate for the proxy (127.0.0.1, localhost) and the other
/// files it may need.
fn files(fake: &FakeIstiod, namespace: &str) -> Result<Files, ProxyError> {
    use std::os::unix::fs::PermissionsExt;
    // Owner-only: it holds the proxy's private key and its token.
    let dir = tempfile::Builder::new()
        .prefix("proxy-conformance-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|e| ProxyError::Setup(format!("cannot create a temporary folder: {e}")))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ProxyError::Setup(format!("cannot generate a certificate: {e}")))?;
    let f = Files {
        cert: dir.path().join("proxy.crt"),
        key: dir.path().join("proxy.key"),
        token: dir.path().join("token"),
        token_key: dir.path().join("token-issuer.pem"),
        dir,
    };
    write(&f.cert, &cert.cert.pem())?;
    write_private(&f.key, &cert.signing_key.serialize_pem())?;
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

impl Bench {
    pub async fn start(
        config: &RunConfig,
        hooks: &Hooks,
        name: &str,
        mut scenario: Scenario,
        snapshots: Arc<crate::runner::snapshots::Snapshots>,
    ) -> Result<Bench, ProxyError> {
        if let Some(n) = hooks.pad_replicas_to {
            pad_replicas(&mut scenario, n);
        }
        let opts = match config.proxy {
            // A running proxy was configured once: fixed replica addresses, and
            // the CA and token key kept in the state folder.
            ProxyMode::Address(_) => StartOptions {
                state_dir: Some(config.state_dir.clone()),
                ..StartOptions::default()
            },
            _ => StartOptions::ephemeral(),
        };
        let fake = FakeIstiod::start(scenario.clone(), opts)
            .await
            .map_err(|e| {
                ProxyError::Setup(format!("cannot start the fake istiod replicas: {e}"))
            })?;
        let namespace = scenario.istiod.namespace.clone();
        let f = files(&fake, &namespace)?;
        if let ProxyMode::Address(_) = config.proxy {
            write(
                &config.state_dir.join(TOKEN_ISSUER_KEY_FILE),
                fake.token_authority().public_pem(),
            )?;
        }
        let plaintext = config.proxy_plaintext;

        let (address, running, output) = match &config.proxy {
            ProxyMode::Bundled => {
                let mut pc =
                    bundled_config(&fake, &namespace, &f.cert, &f.key, &f.token_key, plaintext);
                if let Some(custom) = &hooks.customize_bundled {
                    custom(&mut pc);
                }
                let p = istioctl_proxy::start(pc).await.map_err(|e| {
                    ProxyError::Setup(format!("cannot start the bundled proxy: {e}"))
                })?;
                (p.local_addr().to_string(), Running::InProcess(p), None)
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
                (listen, Running::Process(p), Some(out))
            }
            ProxyMode::Address(a) => (a.clone(), Running::External, None),
            ProxyMode::Image(i) => {
                return Err(ProxyError::Setup(format!(
                    "the proxy image {i} runs on the docker topology (--topology docker)"
                )));
            }
        };

        let memory = match &running {
            Running::InProcess(_) => Some(crate::runner::memory::MemoryProbe::HarnessProcess),
            Running::Process(p) => p.pid().map(crate::runner::memory::MemoryProbe::Tree),
            Running::Container(_) | Running::External => None,
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
                discovery_refresh: config.docker.discovery_refresh,
            },
            families: config.families.clone(),
            snapshots,
            proxy_output: output,
        };
        let mut bench = Bench {
            ctx,
            fake: Some(fake),
            docker: None,
            running,
            _files: Some(f.dir),
        };
        if let Err(e) = bench.wait_ready(config.proxy_ready_timeout).await {
            // Stopped properly (grace, descendants, reaping), not only dropped.
            bench.stop().await;
            return Err(e);
        }
        Ok(bench)
    }

    /// The cluster topology: the proxy deployed in the external cluster (its
    /// Service port-forwarded) or the one at `--proxy-addr`, against the real
    /// istiod pods. One bench for the whole run: the live mesh.
    pub async fn connect_cluster(
        config: &RunConfig,
        hooks: &Hooks,
        snapshots: Arc<crate::runner::snapshots::Snapshots>,
    ) -> Result<Bench, ProxyError> {
        let c = &config.cluster;
        let connected = match &hooks.connect_cluster {
            Some(connect) => connect().await,
            None => ClusterControlPlane::connect(c).await,
        };
        let cp = connected.map_err(|e| {
            ProxyError::Setup(format!(
                "cannot connect to the external control plane (contexts {} and {}, namespace {}): {e}",
                c.external_context, c.remote_context, c.live.namespace
            ))
        })?;
        let address = match (&config.proxy, cp.proxy_addr()) {
            (ProxyMode::Address(a), _) => a.clone(),
            (_, Some(a)) => a.to_string(),
            (_, None) => {
                return Err(ProxyError::Setup(
                    "no proxy to test: give --proxy-addr or --proxy-service".to_string(),
                ));
            }
        };
        let ctx = CheckContext {
            memory: None,
            scenario_name: TopologyKind::Cluster.name().to_string(),
            control_plane: Arc::new(cp),
            proxy: ProxyEndpoint {
                address,
                plaintext: config.proxy_plaintext,
                discovery_refresh: config.docker.discovery_refresh,
            },
            families: config.families.clone(),
            snapshots,
            proxy_output: None,
            notes: Default::default(),
        };
        let mut bench = Bench {
            ctx,
            fake: None,
            docker: None,
            running: Running::External,
            _files: None,
        };
        if let Err(e) = bench.wait_ready(config.proxy_ready_timeout).await {
            bench.stop().await;
            return Err(e);
        }
        Ok(bench)
    }

    /// The docker topology: the scenario's replicas as containers on a
    /// network of their own, and the proxy image as a container on it.
    pub async fn start_docker(
        config: &RunConfig,
        engine: crate::topology::docker::engine::Engine,
        run_id: &str,
        name: &str,
        scenario: Scenario,
        snapshots: Arc<crate::runner::snapshots::Snapshots>,
    ) -> Result<Bench, ProxyError> {
        use crate::topology::docker::proxy::{ProxyContainer, ProxyFiles, ProxySpec};
        let ProxyMode::Image(image) = &config.proxy else {
            return Err(ProxyError::Setup(
                "the docker topology runs the proxy from an image (--proxy-image)".to_string(),
            ));
        };
        let text = crate::topology::docker::scenario_text(config.scenarios.as_deref(), name)
            .map_err(ProxyError::Setup)?;
        let namespace = scenario.istiod.namespace.clone();
        let cp = DockerControlPlane::start(
            engine,
            run_id,
            name,
            scenario,
            text,
            config.docker.replicas.clone(),
        )
        .await
        .map_err(|e| ProxyError::Setup(e.to_string()))?;
        let cp = Arc::new(cp);
        let fail = |cp: Arc<DockerControlPlane>, e: String| async move {
            if let Ok(cp) = Arc::try_unwrap(cp) {
                cp.stop().await;
            }
            ProxyError::Setup(e)
        };
        let cert = match rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "istioctl-proxy".to_string(),
        ]) {
            Ok(c) => c,
            Err(e) => return Err(fail(cp, format!("cannot generate a certificate: {e}")).await),
        };
        let files = ProxyFiles {
            cert_pem: cert.cert.pem(),
            key_pem: cert.signing_key.serialize_pem(),
            token: cp
                .authority()
                .mint(&TokenSpec::new(namespace.as_str(), "istioctl-proxy")),
            token_issuer_key: cp.authority().public_pem().to_string(),
        };
        let spec = ProxySpec {
            image: image.clone(),
            args: config
                .docker
                .proxy_args
                .clone()
                .unwrap_or_else(|| super::options::REFERENCE_PROXY_ARGS.to_string()),
            env: config.docker.proxy_env.clone(),
            discovery_refresh: config.docker.discovery_refresh,
        };
        let proxy = match ProxyContainer::start(&cp, name, &spec, &files).await {
            Ok(p) => p,
            Err(e) => return Err(fail(cp, e.to_string()).await),
        };
        let memory = proxy
            .pid(&cp)
            .await
            .map(crate::runner::memory::MemoryProbe::Tree);
        let ctx = CheckContext {
            memory,
            notes: Default::default(),
            scenario_name: name.to_string(),
            control_plane: cp.clone(),
            proxy: ProxyEndpoint {
                address: proxy.address.to_string(),
                plaintext: config.proxy_plaintext,
                discovery_refresh: config.docker.discovery_refresh,
            },
            families: config.families.clone(),
            snapshots,
            proxy_output: Some(proxy.output.clone()),
        };
        let mut bench = Bench {
            ctx,
            fake: None,
            docker: Some(cp),
            running: Running::Container(Box::new(proxy)),
            _files: None,
        };
        if let Err(e) = bench.wait_ready(config.proxy_ready_timeout).await {
            bench.stop().await;
            return Err(e);
        }
        Ok(bench)
    }

    /// Which proxy this is, for messages.
    fn what(&self) -> String {
        match &self.running {
            Running::InProcess(_) => format!("the bundled proxy on {}", self.ctx.proxy.address),
            Running::Process(p) => format!(
                "the proxy command `{}` (listening on {})",
                p.command, self.ctx.proxy.address
            ),
            Running::Container(c) => format!(
                "the proxy container {} (`{}`, on {})",
                c.container_name,
                c.args.join(" "),
                self.ctx.proxy.address
            ),
            Running::External => format!("the proxy at {}", self.ctx.proxy.address),
        }
    }

    /// Waits (bounded) until the proxy takes a syncz request at all: an answer,
    /// a gRPC status, or a stream that is accepted but not yet answered (a
    /// scenario's hung replica may hold the answer) all count; refused or
    /// reset connections do not.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ProxyError> {
        let deadline = Instant::now() + timeout;
        let mut opts = self.ctx.istioctl();
        opts.timeout = Duration::from_secs(1);
        let mut pause = Duration::from_millis(20);
        loop {
            let last = match client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_answer() || e.is_timeout() => return Ok(()),
                Err(e) => e.to_string(),
            };
            let what = self.what();
            if let Running::Container(c) = &self.running
                && let Some(status) = c.exited().await
            {
                // Let the log readers catch the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(ProxyError::Exited {
                    what,
                    status,
                    output: c.output.tail(40),
                });
            }
            if let Running::Process(p) = &mut self.running
                && let Some(status) = p.exited()
            {
                p.drain_output(Duration::from_secs(2)).await;
                return Err(ProxyError::Exited {
                    what,
                    status,
                    output: p.output.tail(40),
                });
            }
            if Instant::now() >= deadline {
                return Err(ProxyError::NotReady {
                    what,
                    timeout,
                    last,
                    output: self
                        .ctx
                        .proxy_output
                        .as_ref()
                        .map(|o| o.tail(40))
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    pub async fn stop(self) {
        match self.running {
            Running::InProcess(p) => p.shutdown().await,
            Running::Process(p) => p.stop(Duration::from_secs(3)).await,
            Running::Container(c) => c.stop().await,
            Running::External => {}
        }
        // The context holds the other reference to the replicas (and, on a
        // cluster, the port-forwards, which stop when it is dropped).
        drop(self.ctx);
        if let Some(Ok(fake)) = self.fake.map(Arc::try_unwrap) {
            fake.shutdown().await;
        }
        if let Some(Ok(cp)) = self.docker.map(Arc::try_unwrap) {
            cp.stop().await;
        }
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
