//! The options of `proxy-conformance run`: flags, the same options from a YAML
//! file (`--config`), and their merge (an explicitly given flag wins).

use crate::report::Implementation;
use crate::suite::snapshots::Snapshots;
use crate::suite::{Feature, Profile};
use crate::topology::cluster::ClusterTopology;
use crate::topology::docker::DockerTopology;
pub use crate::topology::docker::{DockerRunOptions, REFERENCE_PROXY_ARGS};
use crate::topology::local::LocalTopology;
use crate::topology::real_istio::RealIstioTopology;
use crate::topology::{Hooks, ProxyUnderTest, Topology};
pub use crate::topology::{ProxyMode, TopologyKind};
use proto::IstioctlFamily;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `proxy-conformance run`.
#[derive(Debug, Default, Clone, clap::Args)]
#[command(after_long_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Read options from this YAML file (keys as the long flags, e.g. `proxy-cmd:`,
    /// `skip-check: [tls]`); flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the control plane lives: `local` (fake istiod replicas on
    /// 127.0.0.x, one scenario after the other), `docker` (fake istiod
    /// replicas as containers on a docker network per scenario, the proxy under
    /// test as a container: see --proxy-image), `cluster` (the real
    /// external control plane that `proxy-conformance cluster up` built; see
    /// the `--cluster-*` options) or `real-istio` (real istiod replicas,
    /// kube-apiserver and etcd as processes here, built by
    /// `bash ci/real-istio-build.sh`; see the `--real-istio-*` options). Checks that need what the topology cannot do
    /// (a scripted mesh, replica faults, forged tokens, network faults) are
    /// skipped with the reason. Default: local, or docker with --proxy-image.
    #[arg(long, value_enum)]
    pub topology: Option<crate::topology::TopologyKind>,

    /// With --topology docker: the proxy image under test (built locally; it
    /// is never pulled). Default: istioctl-proxy:local, the reference proxy
    /// (`bash istioctl-proxy/build-image.sh istioctl-proxy:local`).
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["proxy_cmd", "proxy_addr"])]
    pub proxy_image: Option<String>,

    /// With --topology docker: the proxy container's arguments, split at
    /// spaces, with the --proxy-cmd placeholders (replica addresses become
    /// container names; files are inside the container) plus {istiod_dns}, the
    /// name every replica shares (istiod-headless:15012, as a headless Service),
    /// and {discovery_refresh}. Default (the reference proxy): --listen {listen}
    /// --discovery dns --istiod {istiod_dns} --dns-refresh {discovery_refresh} ...
    #[arg(long, value_name = "ARGS")]
    pub proxy_args: Option<String>,

    /// With --topology docker: an environment variable for the proxy
    /// container (KEY=VALUE; repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub proxy_env: Vec<String>,

    /// With --topology docker: how often the proxy under test re-resolves its
    /// replicas (the interval it declares; {discovery_refresh}). The
    /// dns-discovery check allows this plus one request for a replica to
    /// appear or go. Default: 1s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub proxy_discovery_refresh: Option<Duration>,

    /// With --topology docker: the fake-istiod image the replicas run.
    /// Default: fake-istiod:local (`bash fake-istiod/build-image.sh fake-istiod:local`).
    #[arg(long, value_name = "IMAGE")]
    pub replica_image: Option<String>,

    /// With --topology real-istio: how many istiod replicas to run. Default: 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
    pub real_istio_replicas: Option<u16>,

    /// With --topology real-istio: light sidecars (ADS clients with
    /// pilot-agent's node metadata, ACKing as Envoy does) beyond the blog's
    /// three pods, spread over the replicas: a larger mesh. Default: 0.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=5000))]
    pub real_istio_sidecars: Option<u16>,

    /// With --topology cluster: the kubeconfig context of the external cluster
    /// (istiod and the proxy under test). Default: kind-external (`cluster up`'s).
    #[arg(long, value_name = "CONTEXT")]
    pub external_context: Option<String>,

    /// With --topology cluster: the kubeconfig context of the remote cluster
    /// (the mesh; tokens come from its TokenRequest API). Default: kind-remote.
    #[arg(long, value_name = "CONTEXT")]
    pub remote_context: Option<String>,

    /// With --topology cluster: istiod's namespace in the external cluster (also
    /// istioctl's --istioNamespace). Default: external-istiod.
    #[arg(long, value_name = "NAMESPACE")]
    pub cluster_namespace: Option<String>,

    /// With --topology cluster and no --proxy-addr: the proxy under test's
    /// Service and port in that namespace, port-forwarded for the run.
    /// Default: istioctl-proxy:9090 (what `cluster up` deploys).
    #[arg(long, value_name = "NAME:PORT")]
    pub proxy_service: Option<String>,

    /// Start the proxy under test with this command, once per scenario. Placeholders
    /// (also set as environment variables PROXY_CONFORMANCE_<NAME>): {listen} the
    /// address to serve on, {istiod} comma-separated replica addresses (host:port,
    /// TLS), {istiod_plaintext} the same on the plaintext ports, {namespace} the istio
    /// namespace, {ca} the CA file that signed the replicas' certificates, {cert} and
    /// {key} a serving certificate for {listen}, {token_file} a token for the proxy's
    /// own identity. Without --proxy-cmd and --proxy-addr: the bundled reference proxy.
    #[arg(long, value_name = "CMD", conflicts_with = "proxy_addr")]
    pub proxy_cmd: Option<String>,

    /// Test a proxy that is already running at this address. The runner prints the
    /// replica addresses to configure it with; they stay the same for every scenario.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy_addr: Option<String>,

    /// With --proxy-addr: where the replicas' CA and the token issuer key are kept,
    /// so they stay the same across scenarios and runs (configure your proxy
    /// with the files printed at the start). Default: .proxy-conformance
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Talk to the proxy in plaintext instead of TLS (the `tls` check is then skipped).
    #[arg(long)]
    pub proxy_plaintext: bool,

    /// How long to wait for a started proxy to answer its first request.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub proxy_ready_timeout: Option<Duration>,

    /// Scenarios open side by side, each with its own replicas, loopback
    /// addresses and proxy (the bundled one, or one --proxy-cmd process
    /// each); 1 runs them one after the other. Checks that measure memory or
    /// load the machine on purpose still run alone. A proxy at --proxy-addr
    /// (one set of replica addresses) and the docker and cluster topologies
    /// take one scenario at a time. Default: 16, enough to overlap the checks
    /// that wait on hung and slow replicas.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,

    /// Only checks of these profiles (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub profile: Vec<Profile>,

    /// Only these checks (ids, see `proxy-conformance checks`).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub run_check: Vec<String>,

    /// Skip these checks (reported as skipped).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub skip_check: Vec<String>,

    /// Optional features the proxy supports; checks that need others are skipped.
    /// Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub supported_features: Vec<Feature>,

    /// Render tables as these istioctl versions print them (1.12, 1.14, 1.19, 1.22,
    /// 1.23, 1.27, 1.30; any version maps to its family). Default: all families.
    #[arg(long, value_name = "VERSION", value_delimiter = ',')]
    pub istioctl_version: Vec<IstioctlFamily>,

    /// Where to write the YAML report.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Read scenarios from this folder instead of the embedded copies.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,

    /// Read expected tables from this folder instead of the embedded copies.
    #[arg(long, value_name = "DIR")]
    pub snapshots: Option<PathBuf>,

    /// Implementation details for the report.
    #[arg(long, value_name = "NAME")]
    pub implementation_organization: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub implementation_project: Option<String>,
    #[arg(long, value_name = "URL")]
    pub implementation_url: Option<String>,
    #[arg(long, value_name = "VERSION")]
    pub implementation_version: Option<String>,
    #[arg(long, value_name = "CONTACT", value_delimiter = ',')]
    pub implementation_contact: Vec<String>,
}

const RUN_EXAMPLES: &str = "\
Examples:
  proxy-conformance run
      the bundled reference proxy on local fake istiod replicas
  proxy-conformance run --proxy-cmd './my-proxy --port {listen} --istiod {istiod} --cert {cert} --key {key}'
      your proxy, started once per scenario
  proxy-conformance run --proxy-addr 127.0.0.1:9090 --profile core
      a proxy you started yourself (point it at the replica addresses printed first)
  proxy-conformance run --topology docker --proxy-image my-proxy:dev --proxy-args '--port 9090 --istiod {istiod_dns}'
      your proxy image, with the replicas as containers (adds network faults)
  proxy-conformance run --config conformance.yaml --junit junit.xml";

/// Scenarios open at once unless `--jobs` says otherwise: enough that the
/// scenarios whose checks wait on purpose (hung, slow and failing replicas,
/// an unknown config_dump) all wait at the same time.
pub const DEFAULT_JOBS: u16 = 16;

/// The same options as a YAML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OptionsFile {
    pub topology: Option<crate::topology::TopologyKind>,
    pub proxy_image: Option<String>,
    pub proxy_args: Option<String>,
    #[serde(default)]
    pub proxy_env: Vec<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub proxy_discovery_refresh: Option<Duration>,
    pub replica_image: Option<String>,
    pub external_context: Option<String>,
    pub remote_context: Option<String>,
    pub cluster_namespace: Option<String>,
    pub proxy_service: Option<String>,
    pub proxy_cmd: Option<String>,
    pub proxy_addr: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub proxy_plaintext: Option<bool>,
    #[serde(default, with = "humantime_serde_opt")]
    pub proxy_ready_timeout: Option<Duration>,
    pub jobs: Option<u16>,
    #[serde(default)]
    pub profile: Vec<Profile>,
    #[serde(default)]
    pub run_check: Vec<String>,
    #[serde(default)]
    pub skip_check: Vec<String>,
    #[serde(default)]
    pub supported_features: Vec<Feature>,
    #[serde(default)]
    pub istioctl_version: Vec<String>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub scenarios: Option<PathBuf>,
    pub snapshots: Option<PathBuf>,
    pub implementation: Option<Implementation>,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))),
        }
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown profile {s:?} (core, resilience, security)"
                ))
            })
    }
}

/// The resolved options of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub topology: crate::topology::TopologyKind,
    /// Where the clusters are, for `--topology cluster`.
    pub cluster: crate::topology::cluster::ClusterOptions,
    /// The containers of `--topology docker`.
    pub docker: DockerRunOptions,
    /// The processes of `--topology real-istio`.
    pub real_istio: crate::topology::real_istio::WorldOptions,
    pub proxy: ProxyMode,
    /// Persistent CA and token key for --proxy-addr.
    pub state_dir: PathBuf,
    pub proxy_plaintext: bool,
    pub proxy_ready_timeout: Duration,
    /// Scenarios open at once (`--jobs`, at least 1).
    pub jobs: usize,
    pub profiles: Vec<Profile>,
    pub run_checks: Vec<String>,
    pub skip_checks: Vec<String>,
    pub supported_features: Vec<Feature>,
    pub families: Vec<IstioctlFamily>,
    pub report: PathBuf,
    pub junit: Option<PathBuf>,
    pub scenarios: Option<PathBuf>,
    pub snapshots: Option<PathBuf>,
    pub implementation: Implementation,
}

/// A problem with the options, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("cannot read options file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: istioctl-version: {message}")]
    Version { path: PathBuf, message: String },
    #[error("unknown check id {id:?} in {origin}; known checks: {known}")]
    UnknownCheck {
        id: String,
        origin: &'static str,
        known: String,
    },
    #[error("proxy-cmd and proxy-addr both given (one comes from the options file): choose one")]
    BothProxyModes,
    #[error("--proxy-service {0:?}: expected NAME:PORT, e.g. istioctl-proxy:9090")]
    ProxyService(String),
    #[error("--proxy-env {0:?}: expected KEY=VALUE")]
    ProxyEnv(String),
    #[error(
        "--topology docker runs the proxy under test as a container (--proxy-image, default the reference image); --proxy-cmd and --proxy-addr are for --topology local"
    )]
    ProcessOnDocker,
    #[error("{0} needs --topology docker")]
    DockerOnly(&'static str),
    #[error("{0} needs --topology real-istio")]
    RealIstioOnly(&'static str),
    #[error(
        "--topology cluster tests the proxy deployed in the cluster (--proxy-service) or one at --proxy-addr; --proxy-cmd starts a local process, which cannot reach the cluster's istiod pods"
    )]
    CommandOnCluster,
}

impl OptionsFile {
    pub fn load(path: &Path) -> Result<OptionsFile, OptionsError> {
        let text = std::fs::read_to_string(path).map_err(|error| OptionsError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<OptionsFile, OptionsError> {
        if text.trim().is_empty() {
            return Ok(OptionsFile::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| {
            // serde_yaml_ng's message already says "line L column C"; lead with it.
            let message = match e.location() {
                Some(loc) => format!(
                    "line {}: {}",
                    loc.line(),
                    e.to_string().split(" at line ").next().unwrap_or_default()
                ),
                None => e.to_string(),
            };
            OptionsError::Parse {
                path: path.to_path_buf(),
                message,
            }
        })
    }
}

/// Either the flag (when given) or the file's value.
fn pick_vec<T: Clone>(flag: &[T], file: Vec<T>) -> Vec<T> {
    if flag.is_empty() { file } else { flag.to_vec() }
}

impl RunConfig {
    /// The topology this run uses, set up from these options: the one place
    /// that maps `--topology` to a [`Topology`].
    pub fn topology(&self, hooks: &Hooks, snapshots: Arc<Snapshots>) -> Box<dyn Topology> {
        let proxy = ProxyUnderTest {
            mode: self.proxy.clone(),
            plaintext: self.proxy_plaintext,
            ready_timeout: self.proxy_ready_timeout,
            discovery_refresh: self.docker.discovery_refresh,
            families: self.families.clone(),
            snapshots,
        };
        match self.topology {
            TopologyKind::Local => Box::new(LocalTopology::new(
                proxy,
                self.state_dir.clone(),
                self.scenarios.clone(),
                hooks,
            )),
            TopologyKind::Docker => Box::new(DockerTopology::new(
                proxy,
                self.docker.clone(),
                self.scenarios.clone(),
            )),
            TopologyKind::Cluster => {
                Box::new(ClusterTopology::new(proxy, self.cluster.clone(), hooks))
            }
            TopologyKind::RealIstio => Box::new(RealIstioTopology::new(
                proxy,
                self.real_istio.clone(),
                hooks,
            )),
        }
    }

    /// Merges flags over the options file (if any) over the defaults, and
    /// validates check ids against `known_checks`.
    pub fn resolve(args: &RunArgs, known_checks: &[&str]) -> Result<RunConfig, OptionsError> {
        let file = match &args.config {
            Some(p) => OptionsFile::load(p)?,
            None => OptionsFile::default(),
        };
        let config_path = args.config.clone().unwrap_or_default();

        let proxy_image = args.proxy_image.clone().or(file.proxy_image);
        let proxy = match (
            args.proxy_cmd.clone(),
            args.proxy_addr.clone(),
            file.proxy_cmd,
            file.proxy_addr,
        ) {
            (Some(c), None, _, _) => ProxyMode::Command(c),
            (None, Some(a), _, _) => ProxyMode::Address(a),
            (None, None, Some(_), Some(_)) => return Err(OptionsError::BothProxyModes),
            (None, None, Some(c), None) => ProxyMode::Command(c),
            (None, None, None, Some(a)) => ProxyMode::Address(a),
            (None, None, None, None) => match &proxy_image {
                Some(image) => ProxyMode::Image(image.clone()),
                None => ProxyMode::Bundled,
            },
            // clap rejects both flags together.
            (Some(_), Some(_), _, _) => return Err(OptionsError::BothProxyModes),
        };

        let families = if !args.istioctl_version.is_empty() {
            args.istioctl_version.clone()
        } else if !file.istioctl_version.is_empty() {
            file.istioctl_version
                .iter()
                .map(|v| v.parse::<IstioctlFamily>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| OptionsError::Version {
                    path: config_path.clone(),
                    message: e.to_string(),
                })?
        } else {
            IstioctlFamily::ALL.to_vec()
        };
        let mut families = families;
        families.sort();
        families.dedup();

        let run_checks = pick_vec(&args.run_check, file.run_check);
        let skip_checks = pick_vec(&args.skip_check, file.skip_check);
        for (origin, ids) in [("--run-check", &run_checks), ("--skip-check", &skip_checks)] {
            if let Some(id) = ids.iter().find(|id| !known_checks.contains(&id.as_str())) {
                return Err(OptionsError::UnknownCheck {
                    id: id.clone(),
                    origin,
                    known: known_checks.join(", "),
                });
            }
        }

        let mut implementation = file.implementation.unwrap_or_default();
        let set = |target: &mut String, flag: &Option<String>| {
            if let Some(v) = flag {
                target.clone_from(v);
            }
        };
        set(
            &mut implementation.organization,
            &args.implementation_organization,
        );
        set(&mut implementation.project, &args.implementation_project);
        set(&mut implementation.url, &args.implementation_url);
        set(&mut implementation.version, &args.implementation_version);
        if !args.implementation_contact.is_empty() {
            implementation.contact = args.implementation_contact.clone();
        }
        use crate::topology::TopologyKind;
        let topology = args.topology.or(file.topology).unwrap_or(match proxy {
            ProxyMode::Image(_) => TopologyKind::Docker,
            _ => TopologyKind::Local,
        });
        let on_docker = topology == TopologyKind::Docker;
        let proxy = match proxy {
            // The reference proxy, as an image.
            ProxyMode::Bundled if on_docker => {
                ProxyMode::Image(crate::topology::docker::DEFAULT_PROXY_IMAGE.to_string())
            }
            ProxyMode::Command(_) | ProxyMode::Address(_) if on_docker => {
                return Err(OptionsError::ProcessOnDocker);
            }
            p => p,
        };
        if proxy_image.is_some() && !on_docker {
            return Err(OptionsError::DockerOnly("--proxy-image"));
        }
        let proxy_args = args.proxy_args.clone().or(file.proxy_args);
        let replica_image = args.replica_image.clone().or(file.replica_image);
        let env_list = pick_vec(&args.proxy_env, file.proxy_env);
        let refresh = args
            .proxy_discovery_refresh
            .or(file.proxy_discovery_refresh);
        if !on_docker {
            for (given, flag) in [
                (proxy_args.is_some(), "--proxy-args"),
                (replica_image.is_some(), "--replica-image"),
                (!env_list.is_empty(), "--proxy-env"),
                (refresh.is_some(), "--proxy-discovery-refresh"),
            ] {
                if given {
                    return Err(OptionsError::DockerOnly(flag));
                }
            }
        }
        let mut proxy_env = Vec::new();
        for kv in env_list {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => proxy_env.push((k.to_string(), v.to_string())),
                _ => return Err(OptionsError::ProxyEnv(kv)),
            }
        }
        let docker = DockerRunOptions {
            replicas: crate::topology::docker::DockerOptions {
                replica_image: replica_image
                    .unwrap_or_else(|| crate::topology::docker::DEFAULT_REPLICA_IMAGE.to_string()),
            },
            proxy_args,
            proxy_env,
            discovery_refresh: refresh.unwrap_or(Duration::from_secs(1)),
            run_id: crate::topology::docker::new_run_id(),
        };
        // On a cluster, "no proxy option" means the proxy deployed there, not the bundled one.
        let on_cluster = topology == crate::topology::TopologyKind::Cluster;
        if proxy == ProxyMode::Bundled && !on_cluster && implementation.project.is_empty() {
            implementation.project = "istioctl-proxy (bundled reference)".to_string();
            implementation.version = env!("CARGO_PKG_VERSION").to_string();
        }
        if let ProxyMode::Image(image) = &proxy
            && implementation.project.is_empty()
        {
            implementation.project = format!("image {image}");
        }

        let supported = pick_vec(&args.supported_features, file.supported_features);
        if on_cluster && matches!(proxy, ProxyMode::Command(_)) {
            return Err(OptionsError::CommandOnCluster);
        }
        let mut live = cluster::live::LiveOptions::default();
        if let Some(ns) = args.cluster_namespace.clone().or(file.cluster_namespace) {
            live.namespace = ns;
        }
        if let Some(s) = args.proxy_service.clone().or(file.proxy_service) {
            let parsed = s
                .rsplit_once(':')
                .and_then(|(n, p)| Some((n.to_string(), p.parse::<u16>().ok()?)))
                .filter(|(n, _)| !n.is_empty());
            live.proxy_service = Some(parsed.ok_or(OptionsError::ProxyService(s))?);
        }
        if matches!(proxy, ProxyMode::Address(_)) {
            live.proxy_service = None;
        }
        let cluster = crate::topology::cluster::ClusterOptions {
            external_context: args
                .external_context
                .clone()
                .or(file.external_context)
                .unwrap_or_else(|| "kind-external".to_string()),
            remote_context: args
                .remote_context
                .clone()
                .or(file.remote_context)
                .unwrap_or_else(|| "kind-remote".to_string()),
            live,
        };
        if topology != TopologyKind::RealIstio {
            for (given, flag) in [
                (args.real_istio_replicas.is_some(), "--real-istio-replicas"),
                (args.real_istio_sidecars.is_some(), "--real-istio-sidecars"),
            ] {
                if given {
                    return Err(OptionsError::RealIstioOnly(flag));
                }
            }
        }
        let real_istio = crate::topology::real_istio::WorldOptions {
            replicas: usize::from(args.real_istio_replicas.unwrap_or(3)),
            extra_sidecars: usize::from(args.real_istio_sidecars.unwrap_or(0)),
            dir: None,
            real_sidecars: true,
        };
        Ok(RunConfig {
            topology,
            cluster,
            docker,
            real_istio,
            proxy,
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(".proxy-conformance")),
            proxy_plaintext: args.proxy_plaintext || file.proxy_plaintext.unwrap_or(false),
            proxy_ready_timeout: args
                .proxy_ready_timeout
                .or(file.proxy_ready_timeout)
                .unwrap_or(Duration::from_secs(15)),
            jobs: usize::from(args.jobs.or(file.jobs).unwrap_or(DEFAULT_JOBS).max(1)),
            profiles: pick_vec(&args.profile, file.profile),
            run_checks,
            skip_checks,
            supported_features: if supported.is_empty() {
                Feature::ALL.to_vec()
            } else {
                supported
            },
            families,
            report: args
                .report
                .clone()
                .or(file.report)
                .unwrap_or_else(|| PathBuf::from("reports/conformance-report.yaml")),
            junit: args.junit.clone().or(file.junit),
            scenarios: args.scenarios.clone().or(file.scenarios),
            snapshots: args.snapshots.clone().or(file.snapshots),
            implementation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["syncz-union", "tls"];

    fn file(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn defaults() {
        let c = RunConfig::resolve(&RunArgs::default(), KNOWN).expect("resolves");
        assert_eq!(c.proxy, ProxyMode::Bundled);
        assert_eq!(c.families, IstioctlFamily::ALL.to_vec());
        assert_eq!(c.supported_features, Feature::ALL.to_vec());
        assert_eq!(c.report, PathBuf::from("reports/conformance-report.yaml"));
        assert_eq!(c.jobs, usize::from(DEFAULT_JOBS));
    }

    #[test]
    fn jobs_from_flag_or_file() {
        let f = file("jobs: 3\n");
        let args = RunArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(RunConfig::resolve(&args, KNOWN).expect("resolves").jobs, 3);
        let args = RunArgs {
            jobs: Some(1),
            ..args
        };
        assert_eq!(RunConfig::resolve(&args, KNOWN).expect("resolves").jobs, 1);
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file(
            "proxy-cmd: ./from-file {listen}\nskip-check: [tls]\nistioctl-version: ['1.12']\nimplementation: {project: filed, version: '1'}\n",
        );
        let args = RunArgs {
            config: Some(f.path().to_path_buf()),
            skip_check: vec!["syncz-union".into()],
            implementation_version: Some("2".into()),
            ..Default::default()
        };
        let c = RunConfig::resolve(&args, KNOWN).expect("resolves");
        assert_eq!(c.proxy, ProxyMode::Command("./from-file {listen}".into()));
        assert_eq!(c.skip_checks, vec!["syncz-union".to_string()]);
        assert_eq!(c.families, vec![IstioctlFamily::V1_12]);
        assert_eq!(c.implementation.project, "filed");
        assert_eq!(c.implementation.version, "2");
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let f = file("profile: [core]\nproxy-comand: x\n");
        let args = RunArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let err = RunConfig::resolve(&args, KNOWN)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("proxy-comand"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn docker_topology_options() {
        // --proxy-image alone means the docker topology.
        let args = RunArgs {
            proxy_image: Some("mine:1".into()),
            proxy_env: vec!["RUST_LOG=debug".into()],
            ..Default::default()
        };
        let c = RunConfig::resolve(&args, KNOWN).expect("resolves");
        assert_eq!(c.topology, crate::topology::TopologyKind::Docker);
        assert_eq!(c.proxy, ProxyMode::Image("mine:1".into()));
        assert_eq!(
            c.docker.proxy_env,
            vec![("RUST_LOG".into(), "debug".into())]
        );
        assert_eq!(c.implementation.project, "image mine:1");
        // --topology docker alone: the reference image.
        let args = RunArgs {
            topology: Some(crate::topology::TopologyKind::Docker),
            ..Default::default()
        };
        let c = RunConfig::resolve(&args, KNOWN).expect("resolves");
        assert_eq!(c.proxy, ProxyMode::Image("istioctl-proxy:local".into()));
        assert_eq!(c.docker.replicas.replica_image, "fake-istiod:local");
        // Processes and addresses are for the local topology.
        let args = RunArgs {
            topology: Some(crate::topology::TopologyKind::Docker),
            proxy_cmd: Some("x".into()),
            ..Default::default()
        };
        let e = RunConfig::resolve(&args, KNOWN)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("--proxy-image"), "{e}");
        // Docker options elsewhere are an error, not ignored.
        let args = RunArgs {
            proxy_args: Some("x".into()),
            ..Default::default()
        };
        let e = RunConfig::resolve(&args, KNOWN)
            .expect_err("refused")
            .to_string();
        assert_eq!(e, "--proxy-args needs --topology docker");
        let args = RunArgs {
            topology: Some(crate::topology::TopologyKind::Docker),
            proxy_env: vec!["NOEQUALS".into()],
            ..Default::default()
        };
        let e = RunConfig::resolve(&args, KNOWN)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn unknown_check_is_an_error() {
        let args = RunArgs {
            run_check: vec!["nope".into()],
            ..Default::default()
        };
        let err = RunConfig::resolve(&args, KNOWN)
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("syncz-union"),
            "{err}"
        );
    }
}
