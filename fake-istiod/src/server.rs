//! [`FakeIstiod`]: a running set of replicas, each on its own loopback address
//! with a plaintext (15010) and a TLS (15012) port.

use crate::ads::Ads;
use crate::asked::{Asked, Recorder};
use crate::auth::{TokenAuthority, TokenSpec};
use crate::conn::{Conn, accept_loop};
use crate::mesh::{FaultState, MeshState, SharedMesh};
use crate::scenario::{Fault, Proxy, Replica, Scenario, TypeStatus};
use crate::tls::Ca;
use proto::IstioVersion;
use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};

/// File name of the token signing key in the state directory.
pub const SIGNING_KEY_FILE: &str = "token-signing-key.pem";
/// File name of the CA certificate in the state directory.
pub const CA_FILE: &str = "root-cert.pem";
/// File name of the CA's private key in the state directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the token signing key's public half (what a proxy verifies callers' tokens with).
pub const SIGNING_KEY_FILE_PUB: &str = "token-signing-key.pub.pem";

/// Errors of the running fake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("no replica named {0:?}")]
    UnknownReplica(String),
    /// `StartOptions::replica` names no replica of the scenario.
    #[error("{scenario}: no replica named {name:?} (replicas: {known})")]
    NotInScenario {
        name: String,
        scenario: String,
        known: String,
    },
    /// A file of a shared (read-only) state directory is missing or unreadable.
    #[error(
        "cannot read {}: {source} (create the shared state once with `fake-istiod init --state-dir {}`)",
        path.display(),
        path.parent().unwrap_or(Path::new(".")).display()
    )]
    SharedState { path: PathBuf, source: io::Error },
    #[error("no proxy with id {0:?}")]
    UnknownProxy(String),
    #[error("{0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("state directory: {0}")]
    Io(#[from] io::Error),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("signing key: {0}")]
    Key(#[from] crate::auth::KeyError),
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Address of the first replica; the next ones count up (127.0.0.2, .3, ...).
    pub base_address: IpAddr,
    /// Plaintext port of every replica (istiod: 15010; 0 = any).
    pub plaintext_port: u16,
    /// TLS port of every replica (istiod: 15012; 0 = any).
    pub tls_port: u16,
    /// Serve the gRPC control API here (None: no control server).
    pub control_addr: Option<SocketAddr>,
    /// Where the CA (and signing key) files go; None = a temporary directory.
    pub state_dir: Option<PathBuf>,
    /// PKCS#8 PEM of the token signing key (ES256, P-256); None = reuse
    /// `token-signing-key.pem` in `state_dir` if present, else generate one.
    pub signing_key_pem: Option<String>,
    /// Serve only this replica of the scenario, on `base_address` (its
    /// `address:` in the scenario is ignored): one replica per process or
    /// container. The mesh is still the whole scenario's, so control-API calls
    /// naming other replicas (a proxy moved away, a duplicate) keep their meaning.
    pub replica: Option<String>,
    /// Extra DNS names for every serving certificate, e.g. a container's name
    /// or a network alias all replicas share (a headless Service's name).
    pub dns_names: Vec<String>,
    /// Use the CA and token key already in `state_dir` and write nothing
    /// there: replicas in other processes share them (e.g. one read-only
    /// mount, created once by [`init_state_dir`]). Needs `state_dir`.
    pub state_read_only: bool,
    /// The instant the scenario's ages count back from (default: when it is
    /// loaded). Replicas of one mesh in several processes or containers are
    /// given the same one, as one istiod process has one clock.
    pub scenario_time: Option<SystemTime>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            base_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            plaintext_port: 15010,
            tls_port: 15012,
            control_addr: None,
            state_dir: None,
            signing_key_pem: None,
            replica: None,
            dns_names: Vec::new(),
            state_read_only: false,
            scenario_time: None,
        }
    }
}

impl StartOptions {
    /// 127.0.0.2.. with port 0 everywhere, for parallel tests.
    pub fn ephemeral() -> Self {
        StartOptions {
            plaintext_port: 0,
            tls_port: 0,
            ..Default::default()
        }
    }
    /// Also serve the control API on 127.0.0.1 with any port.
    pub fn with_control(mut self) -> Self {
        self.control_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }
}

/// A client certificate and key, and the CA, as istioctl's `--cert-dir` wants them.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert_chain_pem: String,
    pub key_pem: String,
    pub root_cert_pem: String,
}

impl ClientCert {
    /// Writes `cert-chain.pem`, `key.pem` and `root-cert.pem` into `dir`.
    pub fn write_cert_dir(&self, dir: &Path) -> io::Result<()> {
        crate::tls::create_private_dir(dir)?;
        std::fs::write(dir.join("cert-chain.pem"), &self.cert_chain_pem)?;
        crate::tls::write_private(&dir.join("key.pem"), &self.key_pem)?;
        std::fs::write(dir.join("root-cert.pem"), &self.root_cert_pem)
    }
}

/// A replica as listed to users.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaInfo {
    pub name: String,
    pub version: IstioVersion,
    pub revision: String,
    pub plaintext_addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub fault: Option<Fault>,
    pub proxy_count: usize,
}

struct ReplicaRuntime {
    name: String,
    plaintext_addr: SocketAddr,
    tls_addr: SocketAddr,
    fault: watch::Sender<FaultState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

pub(crate) struct Inner {
    pub(crate) mesh: SharedMesh,
    replicas: Mutex<Vec<ReplicaRuntime>>,
    /// Serialises load_scenario against itself.
    reload: tokio::sync::Mutex<()>,
    authority: Arc<TokenAuthority>,
    ca: Ca,
    ca_pem: String,
    ca_file: PathBuf,
    opts: StartOptions,
    started: SystemTime,
    /// What each replica was asked.
    asked: Recorder,
}

/// A running set of emulated istiod replicas.
pub struct FakeIstiod {
    inner: Arc<Inner>,
    control: Option<(SocketAddr, watch::Sender<bool>, JoinHandle<()>)>,
    _tempdir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for FakeIstiod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIstiod")
            .field("replicas", &self.replicas())
            .field("ca_file", &self.inner.ca_file)
            .finish()
    }
}

fn nth_address(base: IpAddr, n: usize) -> IpAddr {
    match base {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(n as u32))),
        v6 => v6,
    }
}

/// The CA and token issuer of a fake: replicas sharing them accept the same
/// tokens and client certificates and verify against the same root.
struct State {
    ca: Ca,
    ca_pem: String,
    ca_file: PathBuf,
    authority: TokenAuthority,
}

/// Creates (or reuses, when `reuse` and present) the CA and the token key in
/// `dir`, owner-only, and writes the CA certificate and the token key's public half.
fn write_state(dir: &Path, signing_key_pem: Option<&str>, reuse: bool) -> Result<State, Error> {
    crate::tls::create_private_dir(dir)?;
    let ca_key_file = dir.join(CA_KEY_FILE);
    let ca = if reuse && ca_key_file.exists() {
        Ca::from_key_pem(&std::fs::read_to_string(&ca_key_file)?)
    } else {
        Ca::generate()
    }
    .map_err(|e| Error::Tls(e.to_string()))?;
    let ca_pem = ca.pem();
    let ca_file = dir.join(CA_FILE);
    std::fs::write(&ca_file, &ca_pem)?;
    // A throw-away test CA: its key is kept so `fake-istiod cert` can issue client certificates.
    // Owner-only: whoever reads it can issue certificates the replicas trust.
    crate::tls::write_private(&ca_key_file, &ca.key_pem())?;
    let key_file = dir.join(SIGNING_KEY_FILE);
    let authority = match signing_key_pem {
        Some(pem) => TokenAuthority::from_private_key_pem(pem)?,
        None if reuse && key_file.exists() => {
            TokenAuthority::from_private_key_pem(&std::fs::read_to_string(&key_file)?)?
        }
        None => TokenAuthority::generate()?,
    };
    // A throw-away test key: written so that `fake-istiod token` can sign with it.
    // Owner-only: whoever reads it can mint tokens the replicas accept.
    crate::tls::write_private(&key_file, authority.private_pem())?;
    std::fs::write(dir.join(SIGNING_KEY_FILE_PUB), authority.public_pem())?;
    Ok(State {
        ca,
        ca_pem,
        ca_file,
        authority,
    })
}

/// Reads a state written before, writing nothing: the directory may be a
/// read-only mount shared by every replica's container.
fn read_state(dir: &Path) -> Result<State, Error> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| Error::SharedState { path, source })
    };
    let ca = Ca::from_key_pem(&read(CA_KEY_FILE)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", dir.join(CA_KEY_FILE).display())))?;
    // The certificate clients were given, not a new one made from the key
    // (same name and key, so either verifies; this one is what they hold).
    let ca_pem = read(CA_FILE)?;
    let authority = TokenAuthority::from_private_key_pem(&read(SIGNING_KEY_FILE)?)?;
    Ok(State {
        ca,
        ca_pem,
        ca_file: dir.join(CA_FILE),
        authority,
    })
}

/// Creates the CA and the token key once in `dir` (reusing them if present),
/// for replicas in other processes or containers to share read-only
/// ([`StartOptions::state_read_only`]). Returns the CA certificate's path.
pub fn init_state_dir(dir: &Path) -> Result<PathBuf, Error> {
    Ok(write_state(dir, None, true)?.ca_file)
}

fn check_replica(scenario: &Scenario, name: &str) -> Result<(), Error> {
    if scenario.replicas.iter().any(|r| r.name == name) {
        return Ok(());
    }
    let known: Vec<&str> = scenario.replicas.iter().map(|r| r.name.as_str()).collect();
    Err(Error::NotInScenario {
        name: name.to_string(),
        scenario: scenario.source.clone(),
        known: if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        },
    })
}

/// A name a certificate can carry (RFC 1123 labels, `*.` allowed first):
/// checked up front, so a typo is named instead of failing in rcgen.
fn check_dns_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::Invalid(format!("DNS name {name:?}: {why}")));
    if name.is_empty() || name.len() > 253 {
        return bad("must have 1 to 253 characters");
    }
    let rest = name.strip_prefix("*.").unwrap_or(name);
    for label in rest.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every label needs 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

impl FakeIstiod {
    /// Starts every replica of `scenario` (only [`StartOptions::replica`] if set).
    pub async fn start(scenario: Scenario, opts: StartOptions) -> Result<FakeIstiod, Error> {
        for name in &opts.dns_names {
            check_dns_name(name)?;
        }
        if let Some(name) = &opts.replica {
            check_replica(&scenario, name)?;
        }
        let (tempdir, state) = match &opts.state_dir {
            Some(d) if opts.state_read_only => (None, read_state(d)?),
            Some(d) => (None, write_state(d, opts.signing_key_pem.as_deref(), true)?),
            None if opts.state_read_only => {
                return Err(Error::Invalid(
                    "a read-only state needs a state directory".into(),
                ));
            }
            None => {
                // Owner-only: it holds the CA key and the token-signing key.
                let t = tempfile::Builder::new()
                    .prefix("fake-istiod-")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir()?;
                let state = write_state(t.path(), opts.signing_key_pem.as_deref(), false)?;
                (Some(t), state)
            }
        };
        let State {
            ca,
            ca_pem,
            ca_file,
            authority,
        } = state;
        let inner = Arc::new(Inner {
            mesh: Arc::new(RwLock::new(match opts.scenario_time {
                Some(at) => MeshState::from_scenario_at(&scenario, at),
                None => MeshState::from_scenario(&scenario),
            })),
            replicas: Mutex::new(Vec::new()),
            reload: tokio::sync::Mutex::new(()),
            authority: Arc::new(authority),
            ca,
            ca_pem,
            ca_file,
            opts: opts.clone(),
            started: SystemTime::now(),
            asked: Recorder::default(),
        });
        start_replicas(&inner, &scenario).await?;
        let control = match opts.control_addr {
            Some(addr) => Some(crate::control::serve(inner.clone(), addr).await?),
            None => None,
        };
        Ok(FakeIstiod {
            inner,
            control,
            _tempdir: tempdir,
        })
    }

    /// The replicas with their addresses, in scenario order.
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        self.inner.replica_infos()
    }

    /// One replica by name.
    pub fn replica(&self, name: &str) -> Option<ReplicaInfo> {
        self.replicas().into_iter().find(|r| r.name == name)
    }

    /// PEM of the CA that signed the TLS ports' certificates.
    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }
    pub fn ca_file(&self) -> &Path {
        &self.inner.ca_file
    }

    /// A bearer token as Kubernetes would issue it (see [`TokenSpec`] helpers
    /// for expired, wrong-audience and bad-signature tokens).
    pub fn mint_token(&self, spec: &TokenSpec) -> String {
        self.inner.authority.mint(spec)
    }

    /// A client certificate for `namespace`/`service_account` (SPIFFE URI SAN),
    /// signed by the CA: istiod accepts it instead of a token on the TLS port.
    pub fn issue_client_cert(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<ClientCert, Error> {
        let c = self
            .inner
            .ca
            .client_cert(namespace, service_account)
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(ClientCert {
            cert_chain_pem: c.cert_pem,
            key_pem: c.key_pem,
            root_cert_pem: self.inner.ca_pem.clone(),
        })
    }

    /// The key tokens are checked against.
    pub fn token_authority(&self) -> &TokenAuthority {
        &self.inner.authority
    }

    /// When the current scenario was loaded. Its relative update times ("5m")
    /// were fixed against this instant, so rendering ages with it as "now"
    /// shows exactly the ages the scenario states.
    pub fn scenario_time(&self) -> SystemTime {
        self.inner
            .mesh
            .read()
            .map(|m| m.loaded_at)
            .unwrap_or_else(|_| SystemTime::now())
    }

    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(|(a, _, _)| *a)
    }

    pub async fn set_fault(&self, replica: &str, fault: Fault) -> Result<(), Error> {
        self.inner.set_fault(replica, Some(fault))
    }
    pub async fn clear_fault(&self, replica: &str) -> Result<(), Error> {
        self.inner.set_fault(replica, None)
    }
    /// Adds a proxy or replaces the one with the same id.
    pub async fn upsert_proxy(&self, proxy: Proxy) -> Result<(), Error> {
        self.inner.upsert_proxy(proxy)
    }
    pub async fn remove_proxy(&self, id: &str) -> Result<(), Error> {
        self.inner.remove_proxy(id)
    }
    /// Moves a proxy to another replica (a reconnect).
    pub async fn move_proxy(&self, id: &str, to_replica: &str) -> Result<(), Error> {
        self.inner.move_proxy(id, to_replica)
    }
    /// Sets one type's status on one proxy.
    pub async fn set_status(&self, proxy_id: &str, status: TypeStatus) -> Result<(), Error> {
        self.inner.set_status(proxy_id, status)
    }
    /// Replaces the whole mesh; replica listeners are re-created.
    pub async fn load_scenario(&self, scenario: Scenario) -> Result<(), Error> {
        self.inner.load_scenario(scenario).await
    }

    /// What `replica` was asked, oldest first: the last
    /// [`KEPT_PER_REPLICA`](crate::asked::KEPT_PER_REPLICA) requests since
    /// the last [`Self::clear_asked`] (empty for a replica never asked).
    /// An answered or refused request is recorded before its caller
    /// receives the answer or the error.
    pub fn asked(&self, replica: &str) -> Vec<Asked> {
        self.inner.asked.asked(replica)
    }

    /// How many requests `replica` received since the last clear, including
    /// those no longer kept.
    pub fn asked_count(&self, replica: &str) -> u64 {
        self.inner.asked.count(replica)
    }

    /// [`Self::asked`] of every replica that was asked something, by name.
    pub fn asked_all(&self) -> BTreeMap<String, Vec<Asked>> {
        self.inner.asked.all()
    }

    /// Forgets what every replica was asked.
    pub fn clear_asked(&self) {
        self.inner.asked.clear()
    }

    /// Tells every listener and the control server to stop, without waiting
    /// (for `Drop` of a test handle; [`Self::shutdown`] also waits).
    pub(crate) fn stop_now(&self) {
        if let Some((_, tx, _)) = &self.control {
            let _ = tx.send(true);
        }
        if let Ok(rts) = self.inner.replicas.lock() {
            for rt in rts.iter() {
                let _ = rt.shutdown.send(true);
            }
        }
    }

    /// Stops every listener and the control server, and waits for them.
    pub async fn shutdown(mut self) {
        if let Some((_, tx, task)) = self.control.take() {
            let _ = tx.send(true);
            let _ = task.await;
        }
        stop_replicas(&self.inner).await;
    }
}

impl Inner {
    pub(crate) fn replica_infos(&self) -> Vec<ReplicaInfo> {
        let Ok(mesh) = self.mesh.read() else {
            return Vec::new();
        };
        let Ok(rts) = self.replicas.lock() else {
            return Vec::new();
        };
        rts.iter()
            .filter_map(|rt| {
                let id = mesh.replicas.get(&rt.name)?;
                Some(ReplicaInfo {
                    name: rt.name.clone(),
                    version: id.version.clone(),
                    revision: id.revision.clone(),
                    plaintext_addr: rt.plaintext_addr,
                    tls_addr: rt.tls_addr,
                    fault: rt.fault.borrow().fault.clone(),
                    proxy_count: mesh.count_of(&rt.name),
                })
            })
            .collect()
    }

    pub(crate) fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub(crate) fn set_fault(&self, replica: &str, fault: Option<Fault>) -> Result<(), Error> {
        if let Some(Fault::Duplicate { proxy_id }) = &fault {
            let mesh = self
                .mesh
                .read()
                .map_err(|_| Error::Invalid("state poisoned".into()))?;
            if !mesh.proxies.contains_key(proxy_id) {
                return Err(Error::UnknownProxy(proxy_id.clone()));
            }
        }
        let rts = self
            .replicas
            .lock()
            .map_err(|_| Error::Invalid("state poisoned".into()))?;
        let rt = rts
            .iter()
            .find(|r| r.name == replica)
            .ok_or_else(|| Error::UnknownReplica(replica.to_string()))?;
        rt.fault.send_replace(FaultState::new(fault));
        Ok(())
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, MeshState>, Error> {
        self.mesh
            .write()
            .map_err(|_| Error::Invalid("state poisoned".into()))
    }

    pub(crate) fn upsert_proxy(&self, mut proxy: Proxy) -> Result<(), Error> {
        let mut mesh = self.write()?;
        if !mesh.replicas.contains_key(&proxy.replica) {
            return Err(Error::UnknownReplica(proxy.replica.clone()));
        }
        match proxy.id.rsplit_once('.') {
            Some((pod, ns)) if !pod.is_empty() && !ns.is_empty() => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "proxy id {:?} is not <pod>.<namespace>",
                    proxy.id
                )));
            }
        }
        proxy.types.sort_by(|a, b| a.type_url.cmp(&b.type_url));
        let proxy = proxy.pinned(SystemTime::now());
        mesh.proxies.insert(proxy.id.clone(), Arc::new(proxy));
        mesh.bump_push();
        Ok(())
    }

    pub(crate) fn remove_proxy(&self, id: &str) -> Result<(), Error> {
        let mut mesh = self.write()?;
        mesh.proxies
            .remove(id)
            .ok_or_else(|| Error::UnknownProxy(id.to_string()))?;
        mesh.bump_push();
        Ok(())
    }

    pub(crate) fn move_proxy(&self, id: &str, to: &str) -> Result<(), Error> {
        let mut mesh = self.write()?;
        if !mesh.replicas.contains_key(to) {
            return Err(Error::UnknownReplica(to.to_string()));
        }
        let p = mesh
            .proxies
            .get_mut(id)
            .ok_or_else(|| Error::UnknownProxy(id.to_string()))?;
        Arc::make_mut(p).replica = to.to_string();
        mesh.bump_push();
        Ok(())
    }

    pub(crate) fn set_status(&self, id: &str, status: TypeStatus) -> Result<(), Error> {
        let mut mesh = self.write()?;
        let p = mesh
            .proxies
            .get_mut(id)
            .ok_or_else(|| Error::UnknownProxy(id.to_string()))?;
        Arc::make_mut(p).set_type_status(status.pinned(SystemTime::now()));
        mesh.bump_push();
        Ok(())
    }

    pub(crate) async fn load_scenario(self: &Arc<Self>, scenario: Scenario) -> Result<(), Error> {
        let _guard = self.reload.lock().await;
        // Checked before the running replica is stopped: a scenario without
        // it leaves the process serving what it served.
        if let Some(name) = &self.opts.replica {
            check_replica(&scenario, name)?;
        }
        stop_replicas(self).await;
        {
            let mut mesh = self.write()?;
            *mesh = MeshState::from_scenario(&scenario);
        }
        start_replicas(self, &scenario).await
    }
}

async fn stop_replicas(inner: &Inner) {
    let rts: Vec<ReplicaRuntime> = match inner.replicas.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(_) => return,
    };
    for rt in &rts {
        let _ = rt.shutdown.send(true);
    }
    // Connections are cut when the accept loops end; the bound only guards
    // against a stuck task.
    for rt in rts {
        for mut t in rt.tasks {
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

async fn start_replicas(inner: &Arc<Inner>, scenario: &Scenario) -> Result<(), Error> {
    let mut started = Vec::new();
    for (i, r) in scenario.replicas.iter().enumerate() {
        let ip = match &inner.opts.replica {
            Some(only) if *only != r.name => continue,
            // One replica per process: the address it was told (0.0.0.0 in a container).
            Some(_) => inner.opts.base_address,
            None => r
                .address
                .unwrap_or_else(|| nth_address(inner.opts.base_address, i)),
        };
        match start_replica(inner, r, ip).await {
            Ok(rt) => started.push(rt),
            Err(e) => {
                for rt in &started {
                    let _ = rt.shutdown.send(true);
                }
                return Err(e);
            }
        }
    }
    if let Ok(mut g) = inner.replicas.lock() {
        *g = started;
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

async fn start_replica(
    inner: &Arc<Inner>,
    r: &Replica,
    ip: IpAddr,
) -> Result<ReplicaRuntime, Error> {
    let plain = bind(SocketAddr::new(ip, inner.opts.plaintext_port)).await?;
    let tls = bind(SocketAddr::new(ip, inner.opts.tls_port)).await?;
    let plaintext_addr = plain.local_addr()?;
    let tls_addr = tls.local_addr()?;
    let namespace = inner
        .mesh
        .read()
        .map(|m| m.istiod.namespace.clone())
        .unwrap_or_default();
    // Its own name too: in a container it is reached by name (docker DNS, a
    // pod's hostname), its address not known in advance.
    let mut names = vec![r.name.clone()];
    names.extend(inner.opts.dns_names.iter().cloned());
    let cert = inner
        .ca
        .serving_cert(&namespace, ip, &names)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let (fault_tx, fault_rx) = watch::channel(FaultState::new(r.fault.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let pushes = Arc::new(AtomicU64::new(0));
    let asked = inner.asked.replica(&r.name);
    let mut tasks = Vec::new();
    for (listener, addr, is_tls) in [(plain, plaintext_addr, false), (tls, tls_addr, true)] {
        let (conn_tx, conn_rx) = mpsc::channel::<io::Result<Conn>>(64);
        let ads = Ads {
            replica: r.name.clone(),
            tls: is_tls,
            mesh: inner.mesh.clone(),
            fault: fault_rx.clone(),
            authority: inner.authority.clone(),
            pushes: pushes.clone(),
            started: inner.started,
            asked: asked.clone(),
        };
        let mut builder = Server::builder();
        if is_tls {
            // Client certificates are optional (tokens are the other way in).
            let cfg = ServerTlsConfig::new()
                .identity(TlsIdentity::from_pem(&cert.cert_pem, &cert.key_pem))
                .client_ca_root(tonic::transport::Certificate::from_pem(&inner.ca_pem))
                .client_auth_optional(true);
            builder = builder
                .tls_config(cfg)
                .map_err(|e| Error::Tls(e.to_string()))?;
        }
        let svc = AggregatedDiscoveryServiceServer::new(ads)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(usize::MAX);
        let mut sd = shutdown_rx.clone();
        let name = r.name.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
            let signal = async move {
                let _ = sd.wait_for(|v| *v).await;
            };
            if let Err(e) = builder
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, signal)
                .await
            {
                tracing::warn!(replica = %name, error = %e, "replica server stopped");
            }
        }));
        tasks.push(tokio::spawn(accept_loop(
            Some(listener),
            addr,
            fault_rx.clone(),
            conn_tx,
            shutdown_rx.clone(),
        )));
    }
    tracing::info!(replica = %r.name, %plaintext_addr, %tls_addr, "replica listening");
    Ok(ReplicaRuntime {
        name: r.name.clone(),
        plaintext_addr,
        tls_addr,
        fault: fault_tx,
        shutdown: shutdown_tx,
        tasks,
    })
}
