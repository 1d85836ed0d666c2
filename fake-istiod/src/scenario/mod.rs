//! Scenarios: the mesh a set of fake istiod replicas serves (replicas, proxies,
//! per-type statuses, faults, auth settings), loaded from YAML with every
//! problem reported as `file:line: field: message`.

mod generate;
mod parse;
mod yaml;

use proto::IstioVersion;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub use generate::Generator;

/// A whole mesh: istiod settings, replicas and the proxies connected to each.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Where it came from (file path or a name), used in messages.
    pub source: String,
    pub description: String,
    pub istiod: IstiodSettings,
    pub auth: AuthSettings,
    pub replicas: Vec<Replica>,
    /// Every proxy (explicit and generated), sorted by id.
    pub proxies: Vec<Proxy>,
}

/// Settings shared by every replica.
#[derive(Debug, Clone, PartialEq)]
pub struct IstiodSettings {
    /// The version of every replica without its own.
    pub version: IstioVersion,
    /// The system namespace (where istiod runs; mesh rootNamespace).
    pub namespace: String,
    /// istio.io/rev of every replica without its own.
    pub revision: String,
}

/// istiod's authentication and debug-endpoint authorization settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// `ENABLE_DEBUG_ENDPOINT_AUTH`: syncz and config_dump need a verified identity.
    /// Default: the istiod version's default.
    pub debug_endpoint_auth: bool,
    /// Callers outside the system namespace only see their own namespace.
    /// Default: the version's rule (1.28.7+, 1.29.3+, 1.30+).
    pub namespace_scoped: bool,
    /// `DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES`: namespaces that see everything.
    pub allowed_namespaces: Vec<String>,
    /// Whether plaintext (15010) callers must also present a token. Default false:
    /// like istiod, plaintext connections are trusted.
    pub plaintext_requires_auth: bool,
    /// Which of the version-dependent settings the scenario set explicitly.
    /// A replica with its own version follows ITS version's defaults for the
    /// others (a 1.12 replica in a 1.30 rollout answers unauthenticated callers).
    pub explicit: ExplicitAuth,
}

/// Which version-dependent auth settings a scenario states (the rest follow
/// each replica's version).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplicitAuth {
    pub debug_endpoint_auth: bool,
    pub namespace_scoped: bool,
}

/// The debug-endpoint rules one replica applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAuth {
    /// `ENABLE_DEBUG_ENDPOINT_AUTH`: every StatusGen type needs a verified identity.
    pub debug_endpoint_auth: bool,
    /// Callers outside the system namespace see only their own namespace.
    pub namespace_scoped: bool,
}

/// One istiod pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// Pod name: also the ControlPlane ID it answers with.
    pub name: String,
    /// Own version (mixed-version rollouts); else the scenario's.
    pub version: Option<IstioVersion>,
    /// Own revision; else the scenario's.
    pub revision: Option<String>,
    /// Fixed loopback address; else the next one from the start options' base.
    pub address: Option<IpAddr>,
    /// Fault active from the start.
    pub fault: Option<Fault>,
}

impl Replica {
    pub fn new(name: impl Into<String>) -> Self {
        Replica {
            name: name.into(),
            version: None,
            revision: None,
            address: None,
            fault: None,
        }
    }
}

/// What kind of proxy is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyKind {
    Sidecar,
    Gateway,
    Ztunnel,
}

impl ProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Gateway => "gateway",
            ProxyKind::Ztunnel => "ztunnel",
        }
    }
    /// istiod's node type prefix (`sidecar~`, `router~`, `ztunnel~`).
    pub fn node_type(self) -> &'static str {
        match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Gateway => "router",
            ProxyKind::Ztunnel => "ztunnel",
        }
    }
    /// The types such a proxy watches when the scenario does not say.
    pub fn default_types(self) -> Vec<&'static str> {
        use proto::type_url::*;
        match self {
            ProxyKind::Sidecar | ProxyKind::Gateway => vec![CLUSTER, LISTENER, ENDPOINT, ROUTE],
            ProxyKind::Ztunnel => vec![ADDRESS, WORKLOAD_AUTHORIZATION],
        }
    }
}

/// Sync status of one watched type, as the scenario states it. How it is
/// reported depends on the istiod version (before 1.23 `Error` shows as STALE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncStatus {
    Synced,
    Stale,
    NotSent,
    Error,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "SYNCED",
            SyncStatus::Stale => "STALE",
            SyncStatus::NotSent => "NOT_SENT",
            SyncStatus::Error => "ERROR",
        }
    }
    pub fn parse(s: &str) -> Option<SyncStatus> {
        match s.to_ascii_uppercase().replace([' ', '-'], "_").as_str() {
            "SYNCED" => Some(SyncStatus::Synced),
            "STALE" => Some(SyncStatus::Stale),
            "NOT_SENT" => Some(SyncStatus::NotSent),
            "ERROR" => Some(SyncStatus::Error),
            _ => None,
        }
    }
}

/// When a type was last pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastUpdated {
    /// This long before the answer is built.
    Ago(Duration),
    At(SystemTime),
}

impl LastUpdated {
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            LastUpdated::Ago(d) => now.checked_sub(d).unwrap_or(std::time::UNIX_EPOCH),
            LastUpdated::At(t) => t,
        }
    }
}

/// One watched type of one proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeStatus {
    /// Full type URL (`type.googleapis.com/envoy.config.cluster.v3.Cluster`).
    pub type_url: String,
    pub status: SyncStatus,
    /// NACK details (with `Error`).
    pub error: Option<String>,
    /// Unset = default (1 minute ago for sent types, none for NOT_SENT).
    pub last_updated: Option<LastUpdated>,
}

impl TypeStatus {
    pub fn synced(type_url: &str) -> Self {
        TypeStatus {
            type_url: type_url.to_string(),
            status: SyncStatus::Synced,
            error: None,
            last_updated: None,
        }
    }
    /// The same status with its update time fixed at `now`: a real istiod
    /// reports the same `last_updated` until the next push, so every answer
    /// (and every replica's copy) must carry the same instant.
    pub fn pinned(mut self, now: SystemTime) -> Self {
        self.last_updated = self.last_updated_at(now).map(LastUpdated::At);
        self
    }

    /// The time reported in `last_updated` (1.23+), if any.
    pub fn last_updated_at(&self, now: SystemTime) -> Option<SystemTime> {
        match (self.last_updated, self.status) {
            (Some(l), _) => Some(l.resolve(now)),
            (None, SyncStatus::NotSent) => None,
            (None, _) => Some(LastUpdated::Ago(Duration::from_secs(60)).resolve(now)),
        }
    }
}

/// One connected proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    /// `pod.namespace`
    pub id: String,
    /// Owning replica (pod name).
    pub replica: String,
    /// `CLUSTER_ID` metadata.
    pub cluster: String,
    pub namespace: String,
    /// The proxy's `ISTIO_VERSION`.
    pub version: IstioVersion,
    pub kind: ProxyKind,
    /// Watched types, sorted by type URL.
    pub types: Vec<TypeStatus>,
    /// Pod IP (for node ids and config dumps).
    pub ip: IpAddr,
    /// How many connections istiod holds for it: 2 or more is a reconnecting
    /// proxy whose old connection is not closed yet, listed once per
    /// connection in its replica's syncz answer (`debugSyncz` iterates
    /// `Clients()`, `1.30.0:pilot/pkg/xds/statusgen.go`); the older
    /// connections report every update 10 minutes earlier.
    pub connections: u32,
}

impl Proxy {
    /// A proxy watching its kind's default types, all SYNCED.
    pub fn new(id: &str, replica: &str, version: IstioVersion, kind: ProxyKind) -> Self {
        let namespace = id.rsplit_once('.').map(|(_, ns)| ns).unwrap_or("default");
        let mut types: Vec<TypeStatus> = kind
            .default_types()
            .into_iter()
            .map(TypeStatus::synced)
            .collect();
        types.sort_by(|a, b| a.type_url.cmp(&b.type_url));
        Proxy {
            id: id.to_string(),
            replica: replica.to_string(),
            cluster: DEFAULT_CLUSTER.to_string(),
            namespace: namespace.to_string(),
            version,
            kind,
            types,
            ip: ip_for(id),
            connections: 1,
        }
    }

    /// The report of a connection `by` older: every update that much earlier.
    pub fn older_by(&self, by: Duration, now: SystemTime) -> Proxy {
        let mut c = self.clone();
        c.connections = 1;
        for t in &mut c.types {
            let at = t.last_updated_at(now).unwrap_or(now);
            t.last_updated = Some(LastUpdated::At(at.checked_sub(by).unwrap_or(at)));
        }
        c
    }

    /// The pod name (id without the namespace).
    /// The proxy with every relative update time fixed at `now` (see
    /// [`TypeStatus::pinned`]).
    pub fn pinned(mut self, now: SystemTime) -> Self {
        self.types = self.types.into_iter().map(|t| t.pinned(now)).collect();
        self
    }

    pub fn pod_name(&self) -> &str {
        self.id.rsplit_once('.').map(|(p, _)| p).unwrap_or(&self.id)
    }

    /// The status of a type, if watched.
    pub fn type_status(&self, type_url: &str) -> Option<&TypeStatus> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    /// Sets (or adds) one type's status, keeping types sorted.
    pub fn set_type_status(&mut self, status: TypeStatus) {
        match self
            .types
            .iter_mut()
            .find(|t| t.type_url == status.type_url)
        {
            Some(t) => *t = status,
            None => {
                self.types.push(status);
                self.types.sort_by(|a, b| a.type_url.cmp(&b.type_url));
            }
        }
    }
}

/// `CLUSTER_ID` when the scenario does not say.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";

/// A stable pod IP in 10.0.0.0/8 derived from the id.
pub fn ip_for(id: &str) -> IpAddr {
    let mut h: u32 = 2166136261;
    for b in id.bytes() {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    IpAddr::from([10, (h >> 16) as u8, (h >> 8) as u8, (h as u8).max(1)])
}

/// A scripted misbehaviour of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing listening on the replica's ports.
    Down,
    /// Accept the TCP connection, then reset it.
    Reset,
    /// Accept and read requests, never answer.
    Hang,
    /// Answer correctly after this long.
    Delay(Duration),
    /// Answer every request with this gRPC status.
    GrpcError { code: i32, message: String },
    /// Resources of a wrong type and a ControlPlane identifier that is not JSON.
    Garbage,
    /// Close the stream in the middle of the answer.
    Truncated,
    /// Also report a proxy owned by another replica, with an older update time.
    Duplicate { proxy_id: String },
    /// Alternate between up and down, this long each.
    Flap { period: Duration },
    /// Valid rows plus one istioctl cannot decode (or a config_dump section
    /// that does not decode): see [`crate::poison`].
    Poison(crate::poison::Poison),
}

impl Fault {
    /// Parses the scenario syntax of a fault: `down`, `{delay_ms: 500}`,
    /// `{grpc_error: {code: Unavailable, message: ...}}`, `{duplicate: pod.ns}`, ...
    pub fn parse(text: &str) -> Result<Fault, String> {
        parse::fault_from_yaml(text)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fault::Down => "down",
            Fault::Reset => "reset",
            Fault::Hang => "hang",
            Fault::Delay(_) => "delay",
            Fault::GrpcError { .. } => "grpc_error",
            Fault::Garbage => "garbage",
            Fault::Truncated => "truncated",
            Fault::Duplicate { .. } => "duplicate",
            Fault::Flap { .. } => "flap",
            Fault::Poison(_) => "poison",
        }
    }
}

/// gRPC code numbers by their canonical names (`Unavailable` → 14).
pub fn grpc_code_from_name(name: &str) -> Option<i32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let norm: String = name
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_ascii_uppercase() && !name.contains('_')).then_some('_');
            sep.into_iter()
                .chain(std::iter::once(c.to_ascii_uppercase()))
        })
        .collect();
    NAMES
        .iter()
        .position(|n| *n == norm || n.replace('_', "") == name.to_ascii_uppercase())
        .map(|i| i as i32)
}

/// Largest scenario file (bytes): the shipped ones are a few KiB; a mesh of
/// tens of thousands of proxies is written with `generate:`, not listed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Deepest nesting of mappings and lists: the format needs 5 (e.g.
/// `replicas[0].fault.grpc_error.code`); a 10,000-deep document overflowed
/// the stack when its tree was dropped.
pub const MAX_DEPTH: usize = 32;

/// Most values (scalars, mappings, lists) in a scenario file: ~60,000 listed
/// proxies; the tree of 2M tiny values (4 MiB) took 390 MB.
pub const MAX_NODES: usize = 500_000;

/// Most proxies in one scenario, listed and generated together (about 2 KiB
/// each in memory: the cap bounds a scenario at ~2 GB).
pub const MAX_PROXIES: usize = 1_000_000;

/// Most replicas (each binds two ports on its own loopback address).
pub const MAX_REPLICAS: usize = 256;

/// Longest `delay_ms` and `flap_period_ms` (one hour): longer is no test any
/// more, and far-future times overflowed the clock arithmetic.
pub const MAX_FAULT_MS: u64 = 3_600_000;

/// Most problems reported for one file (the rest are counted).
pub const MAX_PROBLEMS: usize = 100;

/// Reads a scenario file: a regular file of at most [`MAX_FILE_BYTES`], UTF-8.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a
    // writer (it is refused below); it changes nothing for regular files.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!("is {what}; a scenario must be a regular file"));
    }
    let too_big = |n: u64| {
        format!(
            "the file has {n} bytes; a scenario may have at most {MAX_FILE_BYTES} (use `generate:` for large meshes)"
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    // Bounded also if the file grows while it is read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// One problem found while loading a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line (0 = unknown).
    pub line: usize,
    /// Dotted path of the field, e.g. `proxies[2].replica`.
    pub field: String,
    pub message: String,
}

/// Everything wrong with a scenario. Display: one `file:line: field: message` per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioError {
    /// One line per problem; whatever the file held is shown safely (see [`shown`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}: {}: {}",
                self.source_name.escape_debug(),
                p.line,
                shown(&p.field),
                shown_message(&p.message)
            )?;
        }
        Ok(())
    }
}

/// The longest value shown in full; longer ones are cut, with their length.
const SHOWN_MAX: usize = 200;

/// A value from a scenario as an error shows it: control characters
/// escaped (ESC, NUL, newlines: nothing reaches the terminal raw), and cut
/// after [`SHOWN_MAX`] characters with its length.
pub fn shown(s: &str) -> String {
    let n = s.chars().count();
    let mut out: String = s
        .chars()
        .take(SHOWN_MAX)
        .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
            if c.is_control() {
                Box::new(c.escape_default())
            } else {
                Box::new(std::iter::once(c))
            }
        })
        .collect();
    if n > SHOWN_MAX {
        out.push_str(&format!("… ({n} characters)"));
    }
    out
}

/// A whole message: control characters escaped, every word longer than
/// [`SHOWN_MAX`] cut with its length, and the message itself cut at 1,000
/// characters (a value quoted several times is shown short each time).
fn shown_message(message: &str) -> String {
    const MESSAGE_MAX: usize = 1_000;
    let words: Vec<String> = message.split(' ').map(shown).collect();
    let joined = words.join(" ");
    let n = joined.chars().count();
    if n <= MESSAGE_MAX {
        return joined;
    }
    let mut cut: String = joined.chars().take(MESSAGE_MAX).collect();
    cut.push_str(&format!("… ({n} characters)"));
    cut
}

impl Scenario {
    /// Reads and validates a scenario file.
    ///
    /// Only regular files of at most [`MAX_FILE_BYTES`] are read: a FIFO would
    /// block `open` until a writer comes, a device such as `/dev/zero` never ends.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = read_bounded(path).map_err(|message| ScenarioError {
            source_name: name.clone(),
            problems: vec![Problem {
                line: 0,
                field: "(file)".into(),
                message,
            }],
        })?;
        Scenario::parse(&text, &name)
    }

    /// The directory of the scenarios shipped with the project (`scenarios/`).
    pub fn shipped_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
    }

    /// Loads a scenario shipped with the project, e.g. `Scenario::shipped("blog-walkthrough.yaml")`.
    pub fn shipped(file_name: &str) -> Result<Scenario, ScenarioError> {
        Scenario::load(Scenario::shipped_dir().join(file_name))
    }

    /// Parses and validates scenario YAML; `source_name` names it in messages.
    pub fn parse(text: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
        parse::parse(text, source_name)
    }

    /// A scenario with no replicas and no proxies, for building in code.
    pub fn empty(version: IstioVersion) -> Scenario {
        let auth = AuthSettings::defaults_for(&version);
        Scenario {
            source: "(built in code)".into(),
            description: String::new(),
            istiod: IstiodSettings {
                version,
                namespace: proto::node::DEFAULT_ISTIO_NAMESPACE.into(),
                revision: "default".into(),
            },
            auth,
            replicas: Vec::new(),
            proxies: Vec::new(),
        }
    }

    /// The version a replica runs.
    pub fn replica_version(&self, replica: &Replica) -> IstioVersion {
        replica
            .version
            .clone()
            .unwrap_or_else(|| self.istiod.version.clone())
    }

    /// Proxies per replica name.
    pub fn proxies_by_replica(&self) -> BTreeMap<&str, Vec<&Proxy>> {
        let mut m: BTreeMap<&str, Vec<&Proxy>> = BTreeMap::new();
        for r in &self.replicas {
            m.insert(r.name.as_str(), Vec::new());
        }
        for p in &self.proxies {
            m.entry(p.replica.as_str()).or_default().push(p);
        }
        m
    }
}

impl AuthSettings {
    /// The settings an istiod of `version` has by default.
    pub fn defaults_for(version: &IstioVersion) -> Self {
        AuthSettings {
            debug_endpoint_auth: version.debug_endpoint_auth_default(),
            namespace_scoped: version.namespace_scoped_debug(),
            allowed_namespaces: Vec::new(),
            plaintext_requires_auth: false,
            explicit: ExplicitAuth::default(),
        }
    }

    /// The rules a replica applies: the scenario-wide values for a replica at
    /// the scenario's version (or when the scenario set them explicitly), else
    /// the defaults of the replica's own version (`IstioVersion::debug_endpoint_auth_default`,
    /// `IstioVersion::namespace_scoped_debug`).
    pub fn for_replica(&self, own_version: Option<&IstioVersion>) -> ReplicaAuth {
        let (auth_default, scoped_default) = match own_version {
            Some(v) => (v.debug_endpoint_auth_default(), v.namespace_scoped_debug()),
            None => (self.debug_endpoint_auth, self.namespace_scoped),
        };
        ReplicaAuth {
            debug_endpoint_auth: if self.explicit.debug_endpoint_auth {
                self.debug_endpoint_auth
            } else {
                auth_default
            },
            namespace_scoped: if self.explicit.namespace_scoped {
                self.namespace_scoped
            } else {
                scoped_default
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_code_names() {
        assert_eq!(grpc_code_from_name("Unavailable"), Some(14));
        assert_eq!(grpc_code_from_name("UNAVAILABLE"), Some(14));
        assert_eq!(grpc_code_from_name("PermissionDenied"), Some(7));
        assert_eq!(grpc_code_from_name("PERMISSION_DENIED"), Some(7));
        assert_eq!(grpc_code_from_name("nope"), None);
    }
}
