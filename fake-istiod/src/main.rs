//! `fake-istiod`: serve scenarios, mint tokens, validate scenario files.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fake_istiod::{FakeIstiod, Scenario, StartOptions, TokenAuthority, TokenSpec};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

/// N emulated istiod replicas answering istioctl's debug requests
/// (syncz, config_dump, connections, debug) like real istiod, driven by scenario files.
#[derive(Parser)]
#[command(name = "fake-istiod", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("fake-istiod")
}

#[derive(Subcommand)]
enum Command {
    /// Start every replica of a scenario (or one, --replica) and serve until
    /// Ctrl-C or SIGTERM.
    ///
    /// Each replica gets its own loopback address (127.0.0.2, .3, ... by default)
    /// with istiod's ports: 15010 plaintext and 15012 TLS. The TLS certificates
    /// are signed by a CA generated at start, written to <state-dir>/root-cert.pem.
    ///
    /// One replica per process or container: `fake-istiod init --state-dir D`
    /// once, then per replica `fake-istiod serve --scenario F --replica NAME
    /// --listen-ip 0.0.0.0 --state-dir D --dns-name istiod --control-address
    /// 0.0.0.0:15099`. Every replica then uses D's CA and token key (read only).
    Serve {
        /// The scenario file (YAML; see fake-istiod/README.md).
        #[arg(long, short)]
        scenario: PathBuf,
        /// Address of the first replica; the next replicas count up from it.
        #[arg(long, default_value = "127.0.0.2")]
        base_address: IpAddr,
        /// Serve only this replica of the scenario (its own proxies, its name
        /// as ControlPlane ID), on --listen-ip. Its CA and token key are read
        /// from --state-dir, which `fake-istiod init` created: every replica
        /// process shares them, and nothing is written there.
        #[arg(long, value_name = "NAME")]
        replica: Option<String>,
        /// With --replica: the address it listens on (0.0.0.0 in a container);
        /// the replica's `address:` in the scenario is ignored.
        #[arg(long, requires = "replica", conflicts_with = "base_address")]
        listen_ip: Option<IpAddr>,
        /// Also name this in the TLS certificate, besides istiod.<ns>.svc,
        /// istiod, localhost, the replica's name and its address: e.g. a
        /// network alias every replica shares, like a headless Service. Repeatable.
        #[arg(long, value_name = "NAME")]
        dns_name: Vec<String>,
        /// Plaintext gRPC port of every replica (0 = any free port).
        #[arg(long, default_value_t = 15010)]
        plaintext_port: u16,
        /// TLS gRPC port of every replica (0 = any free port).
        #[arg(long, default_value_t = 15012)]
        tls_port: u16,
        /// Serve the control API (proto/fake_istiod/control/v1/control.proto) here.
        #[arg(long, default_value = "127.0.0.1:15099")]
        control_address: SocketAddr,
        /// Do not serve the control API.
        #[arg(long)]
        no_control: bool,
        /// The instant the scenario's ages ("5m") count back from, in
        /// milliseconds since the Unix epoch (default: now). Replica processes
        /// of one mesh are given the same value, so every replica reports
        /// the same ages, as one istiod would.
        #[arg(long, value_name = "MILLIS")]
        scenario_epoch_ms: Option<u64>,
        /// Where root-cert.pem and the token signing key are written (with
        /// --replica: read, see `init`).
        #[arg(long, env = "FAKE_ISTIOD_STATE_DIR", default_value_os_t = default_state_dir())]
        state_dir: PathBuf,
    },
    /// Create the CA and the token signing key in a state directory once (an
    /// existing one is reused), for `serve --replica` processes or containers
    /// that share it read-only. `token` and `cert` sign with the same keys.
    Init {
        /// The directory to create (owner-only; the keys are mode 0600).
        #[arg(long, env = "FAKE_ISTIOD_STATE_DIR", default_value_os_t = default_state_dir())]
        state_dir: PathBuf,
    },
    /// Print a bearer token the running fake accepts (a stand-in for a
    /// Kubernetes TokenRequest), signed with <state-dir>/token-signing-key.pem.
    Token {
        /// The ServiceAccount's namespace (istioctl uses the istio namespace).
        #[arg(long, short)]
        namespace: String,
        /// The ServiceAccount (istioctl uses `default`).
        #[arg(long, default_value = "default")]
        service_account: String,
        /// Audience (istiod requires istio-ca).
        #[arg(long, default_value = fake_istiod::auth::ISTIO_CA_AUDIENCE)]
        audience: String,
        /// Lifetime, e.g. 1h, 30m, 90s.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Issue an already expired token.
        #[arg(long)]
        expired: bool,
        /// Sign with a key the fake does not trust.
        #[arg(long)]
        bad_signature: bool,
        /// The signing key (default <state-dir>/token-signing-key.pem).
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, env = "FAKE_ISTIOD_STATE_DIR", default_value_os_t = default_state_dir())]
        state_dir: PathBuf,
    },
    /// Send one istioctl-style request to a replica and print the answer
    /// (ControlPlane ID and, for syncz, each proxy's statuses).
    Ask {
        /// Replica address, e.g. 127.0.0.2:15010 (plaintext) or 127.0.0.2:15012
        /// with --tls; a HOST:PORT is resolved (first address), e.g. a docker
        /// network alias.
        #[arg(long, short)]
        address: String,
        /// With --tls: the name the certificate must carry (default: the
        /// host of --address), e.g. istiod.istio-system.svc.
        #[arg(long)]
        server_name: Option<String>,
        /// syncz, config_dump, connections, debug, or a full type URL.
        #[arg(long = "type", default_value = "syncz")]
        type_url: String,
        /// Resource names (config_dump: <pod>.<ns>; debug: a path or `list`).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// The istio namespace istioctl claims in its node metadata.
        #[arg(long, default_value = "istio-system")]
        istio_namespace: String,
        /// Use TLS, trusting this CA file (e.g. <state-dir>/root-cert.pem).
        #[arg(long)]
        tls: Option<PathBuf>,
        /// Bearer token to send (e.g. from `fake-istiod token`).
        #[arg(long, env = "FAKE_ISTIOD_TOKEN")]
        token: Option<String>,
        /// Mutual TLS like istioctl's --cert-dir: root-cert.pem, cert-chain.pem, key.pem.
        #[arg(long)]
        cert_dir: Option<PathBuf>,
    },
    /// Write a client certificate for a ServiceAccount into a directory, in
    /// istioctl's --cert-dir layout (root-cert.pem, cert-chain.pem, key.pem),
    /// signed by <state-dir>/ca-key.pem: istiod accepts it instead of a token.
    Cert {
        /// The ServiceAccount's namespace.
        #[arg(long, short)]
        namespace: String,
        #[arg(long, default_value = "default")]
        service_account: String,
        /// The directory to write.
        #[arg(long, short)]
        out: PathBuf,
        #[arg(long, env = "FAKE_ISTIOD_STATE_DIR", default_value_os_t = default_state_dir())]
        state_dir: PathBuf,
    },
    /// Check a scenario file; print every problem as file:line: field: message.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `println!` for `serve`: a line stdout does not take (full, closed) is
/// dropped; the replicas go on serving (`println!` panics there).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // Commands that print and exit end quietly when the reader goes
        // away (`ask ... | head`), as shell tools do, instead of panicking in
        // println!. Not `serve`: a closed stdout must not stop the replicas.
        // SAFETY: no other thread exists yet; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: it panics when stderr cannot be written.
            let _ = writeln!(std::io::stderr().lock(), "Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { state_dir } => {
            let ca = fake_istiod::init_state_dir(&state_dir)
                .with_context(|| format!("initialising {}", state_dir.display()))?;
            println!("CA certificate: {}", ca.display());
            for f in [
                fake_istiod::CA_KEY_FILE,
                fake_istiod::SIGNING_KEY_FILE,
                fake_istiod::SIGNING_KEY_FILE_PUB,
            ] {
                println!("{}", state_dir.join(f).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files } => {
            let mut ok = true;
            for f in files {
                match Scenario::load(&f) {
                    Ok(s) => println!(
                        "{}: ok ({} replicas, {} proxies, istiod {})",
                        f.display(),
                        s.replicas.len(),
                        s.proxies.len(),
                        s.istiod.version
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        ok = false;
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Ask {
            address,
            server_name,
            type_url,
            resources,
            istio_namespace,
            tls,
            token,
            cert_dir,
        } => {
            let read = |f: &std::path::Path| {
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))
            };
            let mut ca_pem = match tls {
                Some(f) => Some(read(&f)?),
                None => None,
            };
            let client_cert = match &cert_dir {
                Some(d) => {
                    if ca_pem.is_none() {
                        ca_pem = Some(read(&d.join("root-cert.pem"))?);
                    }
                    Some((read(&d.join("cert-chain.pem"))?, read(&d.join("key.pem"))?))
                }
                None => None,
            };
            let type_url = match type_url.as_str() {
                "syncz" => proto::type_url::SYNCZ.to_string(),
                "config_dump" => proto::type_url::CONFIG_DUMP.to_string(),
                "connections" => proto::type_url::CONNECTIONS.to_string(),
                "debug" => proto::type_url::DEBUG.to_string(),
                other => other.to_string(),
            };
            let names: Vec<&str> = resources.iter().map(|s| s.as_str()).collect();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let (address, host) = match address.parse::<SocketAddr>() {
                Ok(a) => (a, None),
                Err(_) => (
                    rt.block_on(resolve(&address))?,
                    address.rsplit_once(':').map(|(h, _)| h.to_string()),
                ),
            };
            let dial = fake_istiod::probe::Dial {
                ca_pem,
                token,
                client_cert,
                // Without a name the probe checks the certificate for the IP.
                domain: server_name.or(host),
            };
            let resp = rt.block_on(fake_istiod::probe::ask(
                address,
                &dial,
                fake_istiod::probe::istioctl_request(&type_url, &names, &istio_namespace),
            ));
            let resp = match resp {
                Ok(r) => r,
                Err(st) => {
                    eprintln!("rpc error: code = {:?} desc = {}", st.code(), st.message());
                    return Ok(ExitCode::FAILURE);
                }
            };
            println!("type_url: {}", resp.type_url);
            println!(
                "ControlPlane ID: {}",
                fake_istiod::probe::control_plane_id(&resp)
            );
            println!("resources: {}", resp.resources.len());
            if type_url == proto::type_url::SYNCZ {
                for c in fake_istiod::probe::decode_syncz(&resp).context("decoding ClientConfig")? {
                    let id = c.node.map(|n| n.id).unwrap_or_default();
                    #[allow(deprecated)]
                    let statuses: Vec<String> = if c.generic_xds_configs.is_empty() {
                        c.xds_config
                            .iter()
                            .map(|x| format!("{:?}", x.status()))
                            .collect()
                    } else {
                        c.generic_xds_configs
                            .iter()
                            .map(|g| {
                                format!(
                                    "{}={:?}",
                                    proto::type_url::short_name(&g.type_url),
                                    g.config_status()
                                )
                            })
                            .collect()
                    };
                    println!("  {id}  {}", statuses.join(" "));
                }
            } else {
                for r in &resp.resources {
                    println!("  {} ({} bytes)", r.type_url, r.value.len());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cert {
            namespace,
            service_account,
            out,
            state_dir,
        } => {
            let key = state_dir.join(fake_istiod::CA_KEY_FILE);
            let pem = std::fs::read_to_string(&key).with_context(|| {
                format!(
                    "cannot read the CA key {} (run `fake-istiod init` or `fake-istiod serve` first)",
                    key.display()
                )
            })?;
            let root = state_dir.join(fake_istiod::CA_FILE);
            let root_pem = std::fs::read_to_string(&root)
                .with_context(|| format!("cannot read the CA certificate {}", root.display()))?;
            let ca = fake_istiod::tls::Ca::from_key_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{} is not a usable CA key: {e}", key.display()))?;
            let c = ca
                .client_cert(&namespace, &service_account)
                .map_err(|e| anyhow::anyhow!("issuing the certificate: {e}"))?;
            fake_istiod::ClientCert {
                cert_chain_pem: c.cert_pem,
                key_pem: c.key_pem,
                root_cert_pem: root_pem,
            }
            .write_cert_dir(&out)
            .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {}/{{root-cert.pem,cert-chain.pem,key.pem}} for spiffe://cluster.local/ns/{namespace}/sa/{service_account}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            namespace,
            service_account,
            audience,
            ttl,
            expired,
            bad_signature,
            key,
            state_dir,
        } => {
            let key = key.unwrap_or_else(|| state_dir.join(fake_istiod::SIGNING_KEY_FILE));
            let pem = std::fs::read_to_string(&key).with_context(|| {
                format!(
                    "cannot read the signing key {} (run `fake-istiod init` or `fake-istiod serve` first, or pass --key)",
                    key.display()
                )
            })?;
            let authority = TokenAuthority::from_private_key_pem(&pem)
                .with_context(|| format!("{} is not an ES256 PKCS#8 key", key.display()))?;
            let ttl = fake_istiod::timefmt::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
            // exp = now + ttl must stay a valid time (it overflowed: a panic).
            const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86400);
            if ttl > MAX_TTL {
                anyhow::bail!("--ttl {ttl:?} is longer than 10 years");
            }
            let mut spec = TokenSpec::new(namespace, service_account)
                .with_audience(audience)
                .with_ttl(ttl);
            spec.expired = expired;
            spec.bad_signature = bad_signature;
            println!("{}", authority.mint(&spec));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            scenario,
            base_address,
            replica,
            listen_ip,
            dns_name,
            plaintext_port,
            tls_port,
            control_address,
            no_control,
            scenario_epoch_ms,
            state_dir,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                // A log line that cannot be written (stderr closed: whoever
                // started us stopped reading) is dropped; by default the
                // subscriber reports it with eprintln!, which panics there,
                // and the panic reset the caller's stream (CANCEL).
                .log_internal_errors(false)
                .init();
            let s = Scenario::load(&scenario)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(serve(
                s,
                StartOptions {
                    base_address: listen_ip.unwrap_or(base_address),
                    plaintext_port,
                    tls_port,
                    control_addr: (!no_control).then_some(control_address),
                    state_dir: Some(state_dir),
                    signing_key_pem: None,
                    // Replicas in other processes share the state: reading
                    // it only, none can replace the CA the others serve with.
                    state_read_only: replica.is_some(),
                    replica,
                    dns_names: dns_name,
                    scenario_time: scenario_epoch_ms
                        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
                },
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The first address of HOST:PORT, bounded (a resolver that never answers
/// must not hang the command).
async fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    let found = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::lookup_host(address),
    )
    .await
    .with_context(|| format!("resolving {address}: no answer within 10s"))?
    .with_context(|| format!("resolving {address} (expected HOST:PORT)"))?
    .next();
    found.with_context(|| format!("{address} resolves to no address"))
}

async fn serve(scenario: Scenario, opts: StartOptions) -> anyhow::Result<()> {
    let source = scenario.source.clone();
    let fake = FakeIstiod::start(scenario, opts).await?;
    say!("fake-istiod serving {source}");
    for r in fake.replicas() {
        let fault = r
            .fault
            .as_ref()
            .map(|f| format!("  fault: {}", f.name()))
            .unwrap_or_default();
        say!(
            "replica {}  version {}  plaintext {}  tls {}  proxies {}{fault}",
            r.name,
            r.version,
            r.plaintext_addr,
            r.tls_addr,
            r.proxy_count
        );
    }
    say!("CA certificate: {}", fake.ca_file().display());
    match fake.control_addr() {
        Some(a) => say!("control API: {a}"),
        None => say!("control API: off"),
    }
    say!("Ctrl-C to stop");
    // `docker stop` sends SIGTERM, and as PID 1 a process without a handler
    // ignores it: the container would only stop after docker's kill timeout.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    // Not eprintln!: it panics when stderr is closed.
    tracing::info!("shutting down");
    fake.shutdown().await;
    Ok(())
}
