//! `istioctl-proxy`: the reference aggregating proxy for `istioctl proxy-status`
//! against an external control plane.
//!
//! istioctl sends one xDS debug request; the proxy fans it out to every istiod
//! replica in parallel (a deadline per replica and one per request), merges the
//! answers (de-duplicated by node id, ControlPlane ID `<external>`), routes
//! config_dump to the replica that owns the proxy, and never answers silently
//! partial. See README.md for flags, rules and deployment.
//!
//! ```no_run
//! # async fn demo() -> Result<(), istioctl_proxy::Error> {
//! let config = istioctl_proxy::ProxyConfig::plaintext_static(
//!     "127.0.0.1:0".parse().unwrap(),
//!     vec!["127.0.0.2:15010".into(), "127.0.0.3:15010".into()],
//! );
//! let proxy = istioctl_proxy::start(config).await?;
//! println!("serving on {}", proxy.local_addr());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

mod ads;
pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
mod defects;
pub mod discovery;
mod error;
pub mod fanout;
pub mod grpc_frames;
mod health;
pub mod limits;
pub mod merge;
mod server;
pub mod upstream;
pub mod validate;
pub mod wire;

pub use config::{
    Discovery, FailurePolicy, IdentityMode, OwnIdentity, ProxyConfig, ServeTransport,
    TokenVerification, UpstreamTransport,
};
#[cfg(feature = "test-defects")]
pub use defects::Defect;
#[cfg(not(feature = "test-defects"))]
pub(crate) use defects::Defect;
pub use error::Error;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Identity, Server, ServerTlsConfig};

/// What a CLIENT may send before the proxy reads it: requests are tiny, so a
/// small receive window bounds what half-sent messages can make the proxy buffer.
const CLIENT_STREAM_WINDOW: u32 = 64 * 1024;
const CLIENT_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// How long `shutdown` waits for open streams before closing them hard.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A proxy serving in the background.
pub struct RunningProxy {
    local_addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    health: Option<JoinHandle<()>>,
    _discovery: discovery::DiscoveryHandle,
    state: Arc<server::State>,
}

impl RunningProxy {
    /// The gRPC address istioctl connects to (`--xds-address`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `/healthz` + `/readyz` address, when served.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// How many upstream channels are open (one per replica, reused).
    pub fn upstream_channels(&self) -> usize {
        self.state.upstream.channel_count()
    }

    /// Stops accepting, ends open streams, waits (bounded) for the server to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let mut grpc = self.grpc;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut grpc).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
            Err(_) => {
                tracing::warn!("open connections did not close in time; closing them");
                grpc.abort();
            }
        }
        if let Some(h) = self.health {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, h).await;
        }
        tracing::info!("istioctl-proxy stopped");
    }

    /// Waits until the gRPC server ends by itself (it only does on failure).
    pub async fn wait(&mut self) -> Result<(), Error> {
        match (&mut self.grpc).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Serve(e.to_string())),
            Err(e) => Err(Error::Serve(e.to_string())),
        }
    }
}

/// Checks the configuration, reads every file it names (clear errors, never a
/// silent fallback), binds the listeners (port 0 allowed) and serves in the
/// background.
pub async fn start(config: ProxyConfig) -> Result<RunningProxy, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    validate(&config)?;
    let verifier = auth::TokenVerifier::new(&config.token_verification)?;
    if matches!(config.identity, IdentityMode::OwnIdentity(_)) && !verifier.checks_signatures() {
        return Err(Error::Config(
            "--identity own-identity needs --token-public-key: the proxy grants its own \
             privileges based on the caller's token, so it must verify its signature"
                .into(),
        ));
    }
    if matches!(config.identity, IdentityMode::Passthrough) && !verifier.checks_signatures() {
        tracing::warn!(
            "passthrough without --token-public-key: callers' tokens are checked for form, \
             expiry and audience here; their signatures are checked by istiod"
        );
    }
    if let IdentityMode::Anonymous { token_file } = &config.identity {
        tracing::warn!(
            listen = %config.listen,
            replicas_called_with = if token_file.is_some() { "the proxy's own token (--token-file)" } else { "no token" },
            "ANONYMOUS MODE: callers are not authenticated; anyone who can reach the listen \
             address gets every replica's answers{}. Only for local development: use TLS with \
             --identity passthrough or own-identity elsewhere",
            if token_file.is_some() { " under the proxy's own identity" } else { "" }
        );
    }
    let fd_limit = limits::raise_fd_limit();
    if let Some(n) = fd_limit
        && (n as usize) < config.limits.max_connections + 64
    {
        tracing::warn!(
            open_files = n,
            max_connections = config.limits.max_connections,
            "the open-file limit is below --max-connections: accepting will back off when it is reached"
        );
    }
    let tls = server_tls(&config.serve)?;
    let mut upstream = upstream::Upstream::new(&config.upstream, config.replica_timeout)?;
    let defects = defects::Defects::new(config.defect_list());
    upstream.max_answer_bytes = config.limits.max_replica_answer_bytes;
    upstream.checks = defects.checks();
    let discovery = discovery::start(&config.discovery, defects.resolves_dns_once()).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| Error::Bind {
            addr: config.listen,
            error,
        })?;
    let local_addr = listener.local_addr().map_err(|error| Error::Bind {
        addr: config.listen,
        error,
    })?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let (health_addr, health) = match config.health_listen {
        None => (None, None),
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| Error::Bind { addr, error })?;
            let bound = l
                .local_addr()
                .map_err(|error| Error::Bind { addr, error })?;
            let app = health::router(discovery.replicas.clone());
            let mut rx = shutdown_rx.clone();
            let task = tokio::spawn(async move {
                let served = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "health server failed");
                }
            });
            (Some(bound), Some(task))
        }
    };

    let plaintext = tls.is_none();
    let mut config = config;
    let correct = limits::Serving {
        max_request_bytes: config.limits.max_request_bytes,
        max_answer_bytes: usize::MAX,
        client_windows: (CLIENT_STREAM_WINDOW, CLIENT_CONNECTION_WINDOW),
        bounded_answers: true,
        die_on_garbage: None,
    };
    let serving = defects.serving(correct, &mut config.limits, !plaintext);
    let state = Arc::new(server::State {
        upstream,
        replicas: discovery.replicas.clone(),
        verifier,
        owners: Default::default(),
        remembered: Mutex::new(Default::default()),
        shutdown: shutdown_rx.clone(),
        answer_slots: limits::AnswerSlots::new(config.limits.max_inflight_answers),
        flights: Default::default(),
        defects,
        config,
    });
    let service = ads::AdsServer::new(
        server::AdsService {
            state: state.clone(),
        },
        serving.max_request_bytes,
        serving.max_answer_bytes,
        serving.bounded_answers,
    );

    let lim = &state.config.limits;
    let (stream_window, conn_window) = serving.client_windows;
    let mut builder = Server::builder()
        .initial_stream_window_size(Some(stream_window))
        .initial_connection_window_size(Some(conn_window))
        .max_concurrent_streams(Some(lim.max_streams_per_connection))
        .http2_max_pending_accept_reset_streams(Some(lim.max_streams_per_connection as usize))
        .http2_max_header_list_size(Some(64 * 1024))
        .http2_keepalive_interval(Some(lim.keepalive_interval))
        .http2_keepalive_timeout(Some(lim.keepalive_timeout));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| Error::Tls {
            what: "certificate or key",
            path: match &state.config.serve {
                ServeTransport::Tls { cert, .. } => cert.clone(),
                ServeTransport::Plaintext => Default::default(),
            },
            reason: error_chain(&e),
        })?;
    }
    let mut rx = shutdown_rx;
    // Our own accept loop: a cap on open connections, idle connections
    // closed, accept errors (EMFILE) backed off instead of spinning.
    let incoming = limits::incoming(listener, &state.config.limits, serving.die_on_garbage);
    let grpc = tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(
        incoming,
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    tracing::info!(
        %local_addr,
        tls = !plaintext,
        replicas = state.replicas.borrow().len(),
        "istioctl-proxy serving"
    );
    Ok(RunningProxy {
        local_addr,
        health_addr,
        shutdown: shutdown_tx,
        grpc,
        health,
        _discovery: discovery,
        state,
    })
}

fn validate(config: &ProxyConfig) -> Result<(), Error> {
    if config.replica_timeout.is_zero() || config.request_timeout.is_zero() {
        return Err(Error::Config(
            "--replica-timeout and --request-timeout must be above zero".into(),
        ));
    }
    if config.replica_timeout > config.request_timeout {
        tracing::warn!(
            replica = ?config.replica_timeout,
            request = ?config.request_timeout,
            "the replica deadline is longer than the request deadline; the request deadline wins"
        );
    }
    // Fail at start, not on the first request, when the proxy's own token is unreadable.
    let token_file = match &config.identity {
        IdentityMode::Anonymous { token_file } => token_file.as_ref(),
        IdentityMode::OwnIdentity(o) => o.token_file.as_ref(),
        IdentityMode::Passthrough => None,
    };
    if let Some(path) = token_file {
        error::read_file("the proxy's own token", path)?;
    }
    if let IdentityMode::OwnIdentity(o) = &config.identity {
        let has_cert = matches!(
            &config.upstream,
            UpstreamTransport::Tls {
                client_identity: Some(_),
                ..
            }
        );
        if o.token_file.is_none() && !has_cert {
            return Err(Error::Config(
                "--identity own-identity needs the proxy's own credentials: --token-file, \
                 or --istiod-client-cert/--istiod-client-key"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Reads the serving certificate and key: errors name the file and the reason.
fn server_tls(serve: &ServeTransport) -> Result<Option<ServerTlsConfig>, Error> {
    match serve {
        ServeTransport::Plaintext => Ok(None),
        ServeTransport::Tls { cert, key } => {
            let cert_pem = error::read_file("TLS certificate", cert)?;
            let key_pem = error::read_file("TLS private key", key)?;
            if !String::from_utf8_lossy(&cert_pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(Error::Tls {
                    what: "certificate",
                    path: cert.clone(),
                    reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
                });
            }
            if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY-----") {
                return Err(Error::Tls {
                    what: "private key",
                    path: key.clone(),
                    reason: "no PEM private key found".into(),
                });
            }
            Ok(Some(
                ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)),
            ))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
