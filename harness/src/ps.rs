//! `proxy-conformance ps`: `istioctl proxy-status` through an xDS address,
//! printed exactly as the chosen istioctl version prints it.

use crate::client::{self, ClientOptions, Credentials};
use crate::decode;
use crate::render::{self, OutputFormat, RenderOptions};
use anyhow::{Context, bail};
use proto::{IstioVersion, IstioctlRules, type_url};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Arguments of `proxy-conformance ps`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    long_about = "Retrieves the sync status of every proxy through an xDS address (an istiod replica or \
an aggregating istioctl proxy) and prints it exactly as `istioctl proxy-status` of the chosen \
version would. With `<pod>.<namespace>`, fetches that proxy's config dump through the address: \
when none is found it fails with istioctl's own error; when one is found it prints a line of its own \
(prefixed `proxy-conformance:`), because istioctl would diff it against the sidecar's config dump, \
which it reads through Kubernetes and this tool does not.\n\nCredential modes: istioctl's default (TLS without certificate checks, \
plus a bearer token from --token-file), --plaintext, --cert-dir (mTLS; --insecure skips checks), and \
--ca-file (verified TLS, which istioctl lacks)."
)]
pub struct PsArgs {
    /// `[pod/]<name>[.<namespace>]`: fetch this proxy's config dump instead of the status table.
    pub proxy: Option<String>,

    /// The xDS address (`host:port`), as istioctl's --xds-address.
    #[arg(long, env = "ISTIOCTL_XDS_ADDRESS")]
    pub xds_address: Option<String>,

    /// Behave exactly as this istioctl version (any X.Y[.Z]; X.Y means X.Y.0): table layout,
    /// words, filters, flags, empty-mesh output, and the ACK 1.8-1.15 send.
    #[arg(long, default_value = "1.30", value_parser = parse_version)]
    pub istioctl_version: IstioVersion,

    /// Verbosity (istioctl 1.27+): 1 shows a column per xDS type.
    #[arg(short = 'v', long = "verbosity", default_value_t = 0)]
    pub verbosity: u8,

    /// Output format: table, json or yaml (accepted and ignored by istioctl 1.27-1.29, honoured from 1.30).
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: OutputFormat,

    /// Only proxies of this namespace (istioctl 1.19+); also the namespace of a bare pod name.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// The Istio system namespace, sent as the node's NAMESPACE.
    #[arg(
        short = 'i',
        long = "istioNamespace",
        env = "ISTIOCTL_ISTIONAMESPACE",
        default_value = "istio-system"
    )]
    pub istio_namespace: String,

    /// No TLS, no token (istiod's 15010).
    #[arg(long, conflicts_with_all = ["cert_dir", "ca_file"])]
    pub plaintext: bool,

    /// mTLS with root-cert.pem, cert-chain.pem and key.pem from this directory; no token.
    #[arg(long, env = "ISTIOCTL_CERT_DIR", conflicts_with = "ca_file")]
    pub cert_dir: Option<PathBuf>,

    /// With --cert-dir: skip server certificate and name verification (NOT SECURE).
    #[arg(long)]
    pub insecure: bool,

    /// Verified TLS against this CA bundle (PEM); not an istioctl flag.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,

    /// Bearer token file for the default and --ca-file modes (istioctl mints one from Kubernetes).
    #[arg(long, env = "ISTIOCTL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The name expected in the server's certificate (e.g. istiod.istio-system.svc), as istioctl's
    /// --authority: used with --cert-dir (and --ca-file); istioctl's default mode checks no certificate.
    #[arg(long, env = "ISTIOCTL_AUTHORITY")]
    pub authority: Option<String>,

    /// Fix "now" for the ages istioctl 1.23+ print (RFC 3339 in UTC, e.g. 2026-11-22T12:00:00Z);
    /// not an istioctl flag: makes the output reproducible in tests.
    #[arg(long, env = "PROXY_CONFORMANCE_NOW", value_parser = parse_now)]
    pub now: Option<SystemTime>,

    /// How long to wait for the answer (Go duration: 30s, 1m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub timeout: Duration,

    /// The IP in the node id (default: the host's first non-loopback IP).
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
}

fn parse_version(s: &str) -> Result<IstioVersion, String> {
    s.parse()
        .map_err(|e: proto::version::VersionError| e.to_string())
}

/// `--now`: an RFC 3339 UTC timestamp.
pub fn parse_now(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(s.trim()).map_err(|e| {
        format!("invalid --now {s:?}: {e} (expected RFC 3339 in UTC, e.g. 2026-11-22T12:00:00Z)")
    })
}

/// Go's `time.ParseDuration` for the units people use (`h`, `m`, `s`, `ms`, `us`, `ns`).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_nanos((value * nanos_per) as u64);
    }
    Ok(total)
}

impl PsArgs {
    /// The client options these flags describe.
    pub fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let Some(address) = self.xds_address.clone().filter(|a| !a.is_empty()) else {
            bail!(
                "no xDS address: pass --xds-address or set ISTIOCTL_XDS_ADDRESS (proxy-conformance does not discover istiod pods)"
            );
        };
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let credentials = if self.plaintext {
            Credentials::Plaintext
        } else if let Some(dir) = &self.cert_dir {
            Credentials::MutualTls {
                cert_dir: dir.clone(),
                insecure_skip_verify: self.insecure,
            }
        } else if let Some(ca) = &self.ca_file {
            Credentials::VerifiedTls {
                ca_pem: std::fs::read(ca)
                    .with_context(|| format!("reading --ca-file {}", ca.display()))?,
                token,
            }
        } else {
            Credentials::InsecureTlsWithToken { token }
        };
        Ok(ClientOptions {
            address,
            credentials,
            authority: self.authority.clone(),
            timeout: self.timeout,
            istio_namespace: self.istio_namespace.clone(),
            node_ip: self.node_ip,
            istioctl: self.istioctl(),
        })
    }

    /// The rules of the emulated istioctl.
    pub fn istioctl(&self) -> IstioctlRules {
        IstioctlRules::new(self.istioctl_version.clone())
    }

    fn render_options(&self) -> RenderOptions {
        RenderOptions {
            verbosity: self.verbosity,
            output: self.output.clone(),
            namespace: self.namespace.clone(),
            now: self.now.unwrap_or_else(SystemTime::now),
        }
    }
}

/// `<pod>.<ns>` from istioctl's `[<type>/]<name>[.<namespace>]`.
pub fn proxy_name(arg: &str, namespace: Option<&str>) -> String {
    let name = arg
        .strip_prefix("pod/")
        .or_else(|| arg.strip_prefix("pods/"))
        .unwrap_or(arg);
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.{}", namespace.unwrap_or("default"))
    }
}

/// What `ps` prints (stdout) for these arguments.
pub async fn run(args: &PsArgs) -> anyhow::Result<String> {
    let opts = args.client_options()?;
    if let Some(proxy) = &args.proxy {
        let name = proxy_name(proxy, args.namespace.as_deref());
        let resp = client::fetch(&opts, type_url::CONFIG_DUMP, std::slice::from_ref(&name)).await?;
        if !decode::config_dump_found([&resp]) {
            // istioctl's own text (`compare.NewXdsComparator`,
            // `1.30.0:istioctl/pkg/writer/compare/comparator.go`).
            bail!("unable to find config dump in Istiod responses");
        }
        // What istioctl prints next is a diff against the sidecar's own config
        // dump, read through Kubernetes: this tool cannot, and says so in its own words.
        let cp = decode::ControlPlaneIdentity::of(&resp);
        let from = match cp.kind {
            // Since 1.25 istiod sends no ControlPlane with config_dump.
            decode::ControlPlaneKind::Valid => format!(", ControlPlane {}", cp.id),
            _ => String::new(),
        };
        return Ok(format!(
            "proxy-conformance: config dump for {name} found ({} resources{from}); \
istioctl would now diff it against the sidecar's own config dump, read through Kubernetes, \
which this tool does not do\n",
            resp.resources.len()
        ));
    }
    let resp = client::fetch(&opts, type_url::SYNCZ, &[]).await?;
    let keyed = render::key_by_control_plane([resp]);
    Ok(render::render_as(
        &args.istioctl(),
        &keyed,
        &args.render_options(),
    )?)
}

pub async fn main(args: PsArgs) -> anyhow::Result<i32> {
    let out = run(&args).await?;
    crate::output::text(&out);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_go_duration("30").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("5x").is_err());
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let t = parse_now("2026-11-22T12:00:00Z").unwrap();
        assert_eq!(
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1_795_348_800
        );
        let err = parse_now("yesterday").unwrap_err();
        assert!(err.starts_with("invalid --now \"yesterday\""), "{err}");
    }

    #[test]
    fn proxy_names_like_istioctl() {
        assert_eq!(proxy_name("a-1.ns", None), "a-1.ns");
        assert_eq!(proxy_name("pod/a-1", Some("x")), "a-1.x");
        assert_eq!(proxy_name("a-1", None), "a-1.default");
    }
}
