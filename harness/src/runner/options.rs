//! The options of `proxy-conformance run`: flags, the same options from a YAML
//! file (`--config`), and their merge (an explicitly given flag wins).

use crate::checks::{Feature, Profile};
use crate::report::Implementation;
use proto::IstioctlFamily;
use serde::Deserialize;
use std::path::{Path, PathBuf};
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
    /// 127.0.0.x, one scenario after the other) or `cluster` (the real
    /// external control plane that `proxy-conformance cluster up` built; see
    /// the `--cluster-*` options). Checks that need what the topology cannot do
    /// (a scripted mesh, replica faults, forged tokens) are skipped with the reason.
    #[arg(long, value_enum)]
    pub topology: Option<crate::topology::TopologyKind>,

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
  proxy-conformance run --config conformance.yaml --junit junit.xml";

/// The same options as a YAML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OptionsFile {
    pub topology: Option<crate::topology::TopologyKind>,
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

/// How the proxy under test is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// The bundled reference proxy, in process.
    Bundled,
    /// A command started per scenario.
    Command(String),
    /// Already running at this address.
    Address(String),
}

impl ProxyMode {
    pub fn name(&self) -> &'static str {
        match self {
            ProxyMode::Bundled => "bundled",
            ProxyMode::Command(_) => "command",
            ProxyMode::Address(_) => "address",
        }
    }
}

/// The resolved options of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub topology: crate::topology::TopologyKind,
    /// Where the clusters are, for `--topology cluster`.
    pub cluster: crate::topology::cluster::ClusterOptions,
    pub proxy: ProxyMode,
    /// Persistent CA and token key for --proxy-addr.
    pub state_dir: PathBuf,
    pub proxy_plaintext: bool,
    pub proxy_ready_timeout: Duration,
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
    /// Merges flags over the options file (if any) over the defaults, and
    /// validates check ids against `known_checks`.
    pub fn resolve(args: &RunArgs, known_checks: &[&str]) -> Result<RunConfig, OptionsError> {
        let file = match &args.config {
            Some(p) => OptionsFile::load(p)?,
            None => OptionsFile::default(),
        };
        let config_path = args.config.clone().unwrap_or_default();

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
            (None, None, None, None) => ProxyMode::Bundled,
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
        let topology = args.topology.or(file.topology).unwrap_or_default();
        // On a cluster, "no proxy option" means the proxy deployed there, not the bundled one.
        let on_cluster = topology == crate::topology::TopologyKind::Cluster;
        if proxy == ProxyMode::Bundled && !on_cluster && implementation.project.is_empty() {
            implementation.project = "istioctl-proxy (bundled reference)".to_string();
            implementation.version = env!("CARGO_PKG_VERSION").to_string();
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
        Ok(RunConfig {
            topology,
            cluster,
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
