//! Everything the proxy can be told: [`ProxyConfig`] and its parts. The CLI
//! (`cli.rs`) maps flags onto it; the conformance runner builds it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default per-replica deadline: well under istioctl's 30 s `--timeout`.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline for a whole request (all replicas, merge included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// istiod's TLS xDS port, dialled on pods found by `kubernetes` discovery.
pub const ISTIOD_TLS_PORT: u16 = 15012;
/// The audience of the tokens istioctl sends (TokenRequest for `istio-ca`).
pub const DEFAULT_TOKEN_AUDIENCE: &str = "istio-ca";

/// The whole configuration of one proxy instance.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where istioctl connects (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `/healthz` and `/readyz` over HTTP; `None` = not served.
    pub health_listen: Option<SocketAddr>,
    /// How the istiod replicas are found.
    pub discovery: Discovery,
    /// The listener's transport: TLS (default) or plaintext.
    pub serve: ServeTransport,
    /// How replicas are dialled.
    pub upstream: UpstreamTransport,
    /// Whose identity replicas are called with.
    pub identity: IdentityMode,
    /// How callers' bearer tokens are verified.
    pub token_verification: TokenVerification,
    /// What a request answers when some replicas fail.
    pub on_replica_failure: FailurePolicy,
    /// Deadline for one replica's answer.
    pub replica_timeout: Duration,
    /// Deadline for a whole request.
    pub request_timeout: Duration,
    /// Caps against hostile or broken clients.
    pub limits: crate::limits::Limits,
    /// Deliberate defects (conformance "teeth" tests only).
    #[cfg(feature = "test-defects")]
    pub defects: Vec<crate::Defect>,
}

impl ProxyConfig {
    /// A plaintext proxy on `listen` over a static list of plaintext replicas,
    /// with no caller authentication: the local-development shape (and the
    /// shape the loopback tests start from).
    pub fn plaintext_static(listen: SocketAddr, replicas: Vec<String>) -> Self {
        ProxyConfig {
            listen,
            health_listen: None,
            discovery: Discovery::Static(replicas),
            serve: ServeTransport::Plaintext,
            upstream: UpstreamTransport::Plaintext,
            identity: IdentityMode::Anonymous { token_file: None },
            token_verification: TokenVerification::default(),
            on_replica_failure: FailurePolicy::Fail,
            replica_timeout: DEFAULT_REPLICA_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            limits: crate::limits::Limits::default(),
            #[cfg(feature = "test-defects")]
            defects: Vec::new(),
        }
    }

    /// The deliberate defects switched on (none without `test-defects`).
    pub(crate) fn defect_list(&self) -> &[crate::Defect] {
        #[cfg(feature = "test-defects")]
        {
            &self.defects
        }
        #[cfg(not(feature = "test-defects"))]
        {
            &[]
        }
    }
}

/// How the istiod replicas are found. Every mode is re-evaluated while running:
/// replicas added or removed are picked up without a restart.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A fixed list of `host:port` (or `name=host:port`) entries.
    Static(Vec<String>),
    /// A name with many A/AAAA records (a headless Service), re-resolved every `refresh`.
    Dns {
        name: String,
        port: u16,
        refresh: Duration,
    },
    /// Pods `app=istiod` (+ `istio.io/rev`) in a namespace, Running and Ready,
    /// kept current by a watch; dialled on `pod IP:port`.
    Kubernetes {
        namespace: String,
        revision: Option<String>,
        port: u16,
    },
    /// Replica sets pushed by the embedding program (library use, tests):
    /// every value sent replaces the set.
    Dynamic(tokio::sync::watch::Receiver<crate::discovery::ReplicaSet>),
}

/// The listener's transport.
#[derive(Debug, Clone)]
pub enum ServeTransport {
    /// TLS (rustls) with a certificate chain and key from PEM files.
    Tls { cert: PathBuf, key: PathBuf },
    /// Plaintext: only when explicitly asked (`--plaintext`).
    Plaintext,
}

/// How replicas are dialled.
#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    /// istiod's plaintext port (15010).
    Plaintext,
    /// TLS to istiod (15012), verifying its certificate against `ca`.
    Tls {
        /// PEM bundle of the CA that signed istiod's serving certificate.
        ca: PathBuf,
        /// Name checked in istiod's certificate (pods are dialled by IP).
        server_name: String,
        /// Client certificate and key (PEM) for the `own-identity` mode.
        client_identity: Option<(PathBuf, PathBuf)>,
    },
}

/// Whose identity the replicas see.
#[derive(Debug, Clone)]
pub enum IdentityMode {
    /// No caller authentication; replicas are called without a token (or with
    /// `token_file`, if given). For plaintext local development only.
    Anonymous { token_file: Option<PathBuf> },
    /// Verify the caller's bearer token (missing or invalid → Unauthenticated),
    /// then forward it to the replicas: they see the caller.
    Passthrough,
    /// Verify the caller's bearer token, call the replicas with the proxy's
    /// own token (or the upstream client certificate), and apply the caller's
    /// namespace visibility here.
    OwnIdentity(OwnIdentity),
}

/// Settings of the `own-identity` mode.
#[derive(Debug, Clone)]
pub struct OwnIdentity {
    /// The proxy's token for the replicas, re-read on every request (rotation).
    /// `None`: rely on the upstream client certificate.
    pub token_file: Option<PathBuf>,
    /// Namespace the proxy claims in the node metadata (must match its identity).
    pub namespace: String,
    /// Service account the proxy claims in the node metadata.
    pub service_account: String,
    /// The mesh root namespace: callers from it see every proxy.
    pub system_namespace: String,
    /// Other namespaces whose callers see every proxy
    /// (istiod's `DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES`).
    pub allowed_namespaces: Vec<String>,
}

/// How callers' bearer tokens (Kubernetes service-account JWTs) are checked.
#[derive(Debug, Clone)]
pub struct TokenVerification {
    /// PEM public keys of the token issuer (the cluster's service-account signing
    /// keys). Without any, `passthrough` checks the token's form, expiry and
    /// audience and leaves the signature to istiod; `own-identity` refuses to start.
    pub public_keys: Vec<PathBuf>,
    /// Required `aud` (istioctl asks for `istio-ca`).
    pub audience: String,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
}

impl Default for TokenVerification {
    fn default() -> Self {
        TokenVerification {
            public_keys: Vec::new(),
            audience: DEFAULT_TOKEN_AUDIENCE.to_string(),
            issuer: None,
        }
    }
}

/// What a fan-out request answers when some replicas fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// `Unavailable`, naming every failed replica and why.
    #[default]
    Fail,
    /// The other replicas' results plus one marker row per failed replica.
    Annotate,
}
