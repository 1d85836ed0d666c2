//! The command line (`clap` derive) and its mapping onto [`ProxyConfig`].

use crate::config::*;
use crate::error::Error;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Aggregating proxy for `istioctl proxy-status` against an external control plane.
///
/// istioctl connects with `--xds-address <this proxy>`; each debug request
/// (syncz, config_dump, connections, debug) is sent to every istiod replica in
/// parallel and the answers are merged under the ControlPlane ID `<external>`.
#[derive(Debug, Clone, Parser)]
#[command(name = "istioctl-proxy", version)]
pub struct Args {
    /// gRPC listen address for istioctl.
    #[arg(long, default_value = "0.0.0.0:9090", env = "ISTIOCTL_PROXY_LISTEN")]
    pub listen: SocketAddr,

    /// HTTP address for /healthz and /readyz ("off" to disable).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub health_listen: String,

    /// How to find the istiod replicas.
    #[arg(long, value_enum, default_value_t = DiscoveryKind::Static)]
    pub discovery: DiscoveryKind,

    /// static: replicas as host:port or name=host:port (comma-separated or repeated).
    /// dns: ONE name:port, e.g. istiod-headless.istio-system.svc:15012.
    #[arg(long, value_delimiter = ',')]
    pub istiod: Vec<String>,

    /// dns: how often the name is re-resolved.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub dns_refresh: Duration,

    /// kubernetes: namespace of the istiod pods.
    #[arg(long, default_value = "istio-system", env = "POD_NAMESPACE")]
    pub istiod_namespace: String,

    /// kubernetes: only pods with this `istio.io/rev` label.
    #[arg(long)]
    pub revision: Option<String>,

    /// kubernetes: the port dialled on each pod IP.
    #[arg(long, default_value_t = ISTIOD_TLS_PORT)]
    pub istiod_port: u16,

    /// Serve plaintext instead of TLS (only for local development: istioctl
    /// sends no token over plaintext).
    #[arg(long)]
    pub plaintext: bool,

    /// PEM certificate chain for the TLS listener.
    #[arg(long, default_value = "/etc/certs/tls.crt")]
    pub cert: PathBuf,

    /// PEM private key for the TLS listener.
    #[arg(long, default_value = "/etc/certs/tls.key")]
    pub key: PathBuf,

    /// PEM CA bundle to verify istiod's serving certificate (TLS to replicas).
    #[arg(long, conflicts_with = "istiod_plaintext")]
    pub istiod_ca: Option<PathBuf>,

    /// Name expected in istiod's certificate (replicas are dialled by IP).
    #[arg(long, default_value = "istiod.istio-system.svc")]
    pub istiod_server_name: String,

    /// Dial replicas in plaintext (istiod's 15010).
    #[arg(long)]
    pub istiod_plaintext: bool,

    /// Client certificate (PEM) presented to istiod (own-identity by certificate).
    #[arg(long, requires = "istiod_client_key")]
    pub istiod_client_cert: Option<PathBuf>,

    /// Client key (PEM) for --istiod-client-cert.
    #[arg(long, requires = "istiod_client_cert")]
    pub istiod_client_key: Option<PathBuf>,

    /// Whose identity istiod sees. Default: passthrough; anonymous with --plaintext.
    #[arg(long, value_enum)]
    pub identity: Option<IdentityKind>,

    /// The proxy's own token for the replicas (own-identity; anonymous: optional).
    /// Re-read on every request, so a projected token rotates.
    #[arg(long)]
    pub token_file: Option<PathBuf>,

    /// own-identity: namespace the proxy's service account lives in.
    #[arg(long, default_value = "istio-system", env = "POD_NAMESPACE")]
    pub own_namespace: String,

    /// own-identity: the proxy's service account name.
    #[arg(long, default_value = "istioctl-proxy")]
    pub own_service_account: String,

    /// own-identity: the mesh root namespace (its callers see every proxy).
    #[arg(long, default_value = "istio-system")]
    pub system_namespace: String,

    /// own-identity: more namespaces whose callers see every proxy.
    #[arg(long, value_delimiter = ',')]
    pub debug_allowed_namespaces: Vec<String>,

    /// PEM public key(s) of the callers' token issuer (the cluster's
    /// service-account signing keys). Required by own-identity.
    #[arg(long)]
    pub token_public_key: Vec<PathBuf>,

    /// Audience callers' tokens must carry.
    #[arg(long, default_value = DEFAULT_TOKEN_AUDIENCE)]
    pub token_audience: String,

    /// Issuer callers' tokens must carry (not checked when unset).
    #[arg(long)]
    pub token_issuer: Option<String>,

    /// What to answer when some replicas fail: an Unavailable error naming them
    /// (fail), or the others' results plus a marker row per failed replica (annotate).
    #[arg(long, value_enum, default_value_t = PolicyKind::Fail)]
    pub on_replica_failure: PolicyKind,

    /// Deadline for one replica's answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub replica_timeout: Duration,

    /// Deadline for a whole request (istioctl gives up after 30s), merge
    /// included; a client must also take its answer within this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Client connections open at once (more wait in the kernel's backlog).
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,

    /// HTTP/2 streams per client connection.
    #[arg(long, default_value_t = 100)]
    pub max_streams_per_connection: u32,

    /// Largest request accepted, in bytes (istioctl's are under 1 KiB).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,

    /// Answers being computed or waiting for their client to read them, at
    /// once; more requests wait (up to --request-timeout), then get ResourceExhausted.
    #[arg(long, default_value_t = 4)]
    pub max_inflight_answers: usize,

    /// Largest answer read from one istiod replica, in bytes (default 512 MiB,
    /// ten times a 100,000-proxy mesh's syncz answer); a larger one fails that
    /// replica, named, and nothing is reserved before the bytes arrive.
    #[arg(long, default_value_t = crate::upstream::DEFAULT_MAX_ANSWER_BYTES)]
    pub max_replica_answer_bytes: usize,

    /// Close a client connection that sent nothing (not even a keepalive ack) for this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// HTTP/2 keepalive ping interval towards clients.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Duration,

    /// Drop a client that does not answer a keepalive ping within this long.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Log filter (tracing EnvFilter syntax), e.g. info or istioctl_proxy=debug.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryKind {
    Static,
    Dns,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentityKind {
    Passthrough,
    OwnIdentity,
    Anonymous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyKind {
    Fail,
    Annotate,
}

fn parse_optional_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") || s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("{s:?} is not an address (ip:port) or \"off\": {e}"))
}

impl Args {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> Result<ProxyConfig, Error> {
        let discovery = match self.discovery {
            DiscoveryKind::Static => Discovery::Static(self.istiod.clone()),
            DiscoveryKind::Dns => {
                let [entry] = self.istiod.as_slice() else {
                    return Err(Error::Config(
                        "--discovery dns needs exactly one --istiod name:port".into(),
                    ));
                };
                let (name, port) = entry.rsplit_once(':').ok_or_else(|| {
                    Error::Config(format!("--istiod {entry:?}: expected name:port"))
                })?;
                let port = port
                    .parse()
                    .map_err(|_| Error::Config(format!("--istiod {entry:?}: bad port")))?;
                Discovery::Dns {
                    name: name.to_string(),
                    port,
                    refresh: self.dns_refresh,
                }
            }
            DiscoveryKind::Kubernetes => {
                if !self.istiod.is_empty() {
                    return Err(Error::Config(
                        "--istiod is not used with --discovery kubernetes (pods are found by label)"
                            .into(),
                    ));
                }
                Discovery::Kubernetes {
                    namespace: self.istiod_namespace.clone(),
                    revision: self.revision.clone(),
                    port: self.istiod_port,
                }
            }
        };
        let serve = if self.plaintext {
            ServeTransport::Plaintext
        } else {
            ServeTransport::Tls {
                cert: self.cert.clone(),
                key: self.key.clone(),
            }
        };
        let upstream = match (&self.istiod_ca, self.istiod_plaintext) {
            (_, true) => UpstreamTransport::Plaintext,
            (Some(ca), false) => UpstreamTransport::Tls {
                ca: ca.clone(),
                server_name: self.istiod_server_name.clone(),
                client_identity: self
                    .istiod_client_cert
                    .clone()
                    .zip(self.istiod_client_key.clone()),
            },
            (None, false) if self.plaintext => UpstreamTransport::Plaintext,
            (None, false) => {
                return Err(Error::Config(
                    "replicas need --istiod-ca (TLS, verified) or --istiod-plaintext".into(),
                ));
            }
        };
        let identity_kind = self.identity.unwrap_or(if self.plaintext {
            IdentityKind::Anonymous
        } else {
            IdentityKind::Passthrough
        });
        let identity = match identity_kind {
            IdentityKind::Anonymous => IdentityMode::Anonymous {
                token_file: self.token_file.clone(),
            },
            IdentityKind::Passthrough => IdentityMode::Passthrough,
            IdentityKind::OwnIdentity => IdentityMode::OwnIdentity(OwnIdentity {
                token_file: self.token_file.clone(),
                namespace: self.own_namespace.clone(),
                service_account: self.own_service_account.clone(),
                system_namespace: self.system_namespace.clone(),
                allowed_namespaces: self.debug_allowed_namespaces.clone(),
            }),
        };
        Ok(ProxyConfig {
            listen: self.listen,
            health_listen: parse_optional_addr(&self.health_listen)
                .map_err(|e| Error::Config(format!("--health-listen {e}")))?,
            discovery,
            serve,
            upstream,
            identity,
            token_verification: TokenVerification {
                public_keys: self.token_public_key.clone(),
                audience: self.token_audience.clone(),
                issuer: self.token_issuer.clone(),
            },
            on_replica_failure: match self.on_replica_failure {
                PolicyKind::Fail => FailurePolicy::Fail,
                PolicyKind::Annotate => FailurePolicy::Annotate,
            },
            replica_timeout: self.replica_timeout,
            request_timeout: self.request_timeout,
            limits: crate::limits::Limits {
                max_connections: self.max_connections,
                max_streams_per_connection: self.max_streams_per_connection,
                max_request_bytes: self.max_request_bytes,
                max_inflight_answers: self.max_inflight_answers,
                max_replica_answer_bytes: self.max_replica_answer_bytes,
                idle_timeout: self.idle_timeout,
                keepalive_interval: self.keepalive_interval,
                keepalive_timeout: self.keepalive_timeout,
            },
            #[cfg(feature = "test-defects")]
            defects: Vec::new(),
        })
    }
}

/// Prints the error a binary exits with, if stderr takes it (never a panic:
/// `eprintln!` panics when stderr cannot be written).
pub fn report_exit_error(e: &anyhow::Error) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "Error: {e:#}");
}

/// The binaries' main: parse, log, start, wait for SIGINT/SIGTERM, shut down.
/// `customize` lets the defective binary add its defects.
pub async fn run(
    args: Args,
    customize: impl FnOnce(&mut ProxyConfig) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("invalid --log filter {:?}", args.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // A log line that cannot be written (stdout full or closed) is
        // dropped: by default the subscriber reports it with eprintln!,
        // which panics when stderr fails too (the process exited 101).
        .log_internal_errors(false)
        .init();
    crate::limits::tune_allocator();
    let mut config = args.to_config()?;
    customize(&mut config)?;
    let mut proxy = crate::start(config).await?;
    tokio::select! {
        r = proxy.wait() => r.context("the gRPC server stopped")?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            proxy.shutdown().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProxyConfig, String> {
        let a = Args::try_parse_from(std::iter::once("istioctl-proxy").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        a.to_config().map_err(|e| e.to_string())
    }

    #[test]
    fn the_done_when_command_line() {
        let c = parse(&[
            "--discovery",
            "static",
            "--istiod",
            "127.0.0.2:15010,127.0.0.3:15010",
            "--plaintext",
        ])
        .unwrap();
        assert!(matches!(c.serve, ServeTransport::Plaintext));
        assert!(matches!(c.upstream, UpstreamTransport::Plaintext));
        assert!(matches!(
            c.identity,
            IdentityMode::Anonymous { token_file: None }
        ));
        assert!(matches!(&c.discovery, Discovery::Static(v) if v.len() == 2));
        assert_eq!(c.on_replica_failure, FailurePolicy::Fail);
        assert!(c.replica_timeout < Duration::from_secs(30));
    }

    #[test]
    fn tls_and_passthrough_by_default() {
        let c = parse(&["--istiod", "a:15012", "--istiod-ca", "/ca.pem"]).unwrap();
        assert!(matches!(c.serve, ServeTransport::Tls { .. }));
        assert!(matches!(c.identity, IdentityMode::Passthrough));
        let e = parse(&["--istiod", "a:15012"]).unwrap_err();
        assert!(e.contains("--istiod-ca"), "{e}");
    }

    #[test]
    fn flags_map_onto_config() {
        let c = parse(&[
            "--plaintext",
            "--discovery",
            "dns",
            "--istiod",
            "istiod-headless.istio-system.svc:15010",
            "--identity",
            "own-identity",
            "--token-file",
            "/t",
            "--on-replica-failure",
            "annotate",
            "--replica-timeout",
            "750ms",
            "--request-timeout",
            "3s",
            "--health-listen",
            "off",
        ])
        .unwrap();
        assert!(
            matches!(&c.discovery, Discovery::Dns { name, port: 15010, .. } if name == "istiod-headless.istio-system.svc")
        );
        assert!(
            matches!(&c.identity, IdentityMode::OwnIdentity(o) if o.service_account == "istioctl-proxy")
        );
        assert_eq!(c.on_replica_failure, FailurePolicy::Annotate);
        assert_eq!(c.replica_timeout, Duration::from_millis(750));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.health_listen, None);
        assert!(parse(&["--discovery", "dns", "--istiod", "a:1,b:2", "--plaintext"]).is_err());
        assert!(
            parse(&[
                "--discovery",
                "kubernetes",
                "--plaintext",
                "--revision",
                "canary"
            ])
            .is_ok()
        );
    }
}
