//! `istioctl proxy-status` output, exactly as one exact istioctl version prints
//! it (istioctl/pkg/writer/pilot/status.go at each release tag).
//!
//! Rendering is a pure function of (istioctl version, responses, options): the
//! clock that ages are computed from is part of [`RenderOptions`]. Every
//! version-dependent choice is a rule of [`IstioctlRules`] (proto/src/version.rs),
//! which cites its source; the families are only named groups.
//!
//! | istioctl | header | VERSION | cells |
//! |---|---|---|---|
//! | 1.8-1.11 | `NAME CDS LDS EDS RDS ISTIOD VERSION` | istiod's | legacy `xds_config` only: empty against istiod 1.12+ |
//! | 1.12-1.13 | same | istiod's | enum names |
//! | 1.14-1.17 | `NAME CLUSTER CDS LDS EDS RDS ECDS ISTIOD VERSION` | istiod's | enum names |
//! | 1.18 | same | istiod's | UNKNOWN = `IGNORED` |
//! | 1.19-1.21 | same | proxy's `ISTIO_VERSION` | UNKNOWN = `IGNORED`; `--namespace` |
//! | 1.22 | same | proxy's | `NOT SENT`; header always |
//! | 1.23-1.26 | same | proxy's | `SYNCED (5m)`, missing = `IGNORED` |
//! | 1.27-1.29 | `NAME CLUSTER ISTIOD VERSION SUBSCRIBED TYPES` | proxy's | `4 (CDS,LDS,EDS,RDS)` (non-UNKNOWN only); `-v 1`: a column per type; `-o` ignored |
//! | 1.30+ | as 1.27 | | plus `-o json|yaml` |

pub mod age;
pub mod document;
pub mod tabwriter;

use crate::decode::{self, ControlPlaneIdentity, NodeMetadata, XdsTypeStatus};
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::type_url;
use proto::{
    EmptyMesh, FlagSupport, ForeignResource, IstioVersion, IstioctlFamily, IstioctlRules,
    StatusLayout, VersionColumn,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;
use tabwriter::TabWriter;

/// istioctl's response map: keyed by ControlPlane ID (`multixds.mapShards`).
pub type KeyedResponses = BTreeMap<String, DiscoveryResponse>;

/// Keys responses by their ControlPlane ID as istioctl does: a later response
/// with the same ID replaces the earlier one.
pub fn key_by_control_plane<I>(responses: I) -> KeyedResponses
where
    I: IntoIterator<Item = DiscoveryResponse>,
{
    let mut map = KeyedResponses::new();
    for r in responses {
        map.insert(ControlPlaneIdentity::of(&r).id, r);
    }
    map
}

/// `-o`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
    /// Any other value: 1.27-1.29 ignore it, 1.30 fails with
    /// `output format "<value>" not supported`.
    Other(String),
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "table" => OutputFormat::Table,
            "json" => OutputFormat::Json,
            "yaml" => OutputFormat::Yaml,
            other => OutputFormat::Other(other.to_string()),
        })
    }
}

/// Everything besides the responses that decides the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// `-v` (1.27+): `> 0` shows one column per xDS type.
    pub verbosity: u8,
    /// `-o` (accepted from 1.27, honoured from 1.30).
    pub output: OutputFormat,
    /// `--namespace` (filters rows from 1.19 on the proxy's `NAMESPACE` metadata).
    pub namespace: Option<String>,
    /// "Now", for the ages 1.23+ prints.
    pub now: SystemTime,
}

impl RenderOptions {
    /// Table output, no filter, ages computed from `now`.
    pub fn at(now: SystemTime) -> Self {
        RenderOptions {
            verbosity: 0,
            output: OutputFormat::Table,
            namespace: None,
            now,
        }
    }

    fn namespace_filter(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }
}

/// Why istioctl would print an error instead of a table (texts are istioctl's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    #[error(transparent)]
    Document(#[from] document::DocError),
    /// The flag does not exist in that istioctl (cobra's message).
    #[error("unknown shorthand flag: '{flag}' in -{flag} (istioctl {version} has no such flag)")]
    UnsupportedFlag { flag: char, version: IstioVersion },
    /// `1.30.0:istioctl/pkg/writer/pilot/status.go` `PrintAll`.
    #[error("output format {0:?} not supported")]
    OutputNotSupported(String),
    /// Zero proxies, 1.8-1.9 and 1.27.0 (`setupStatusPrint`).
    #[error("no proxies found (checked {checked} istiods)")]
    NoProxies { checked: usize },
    /// A resource that is not a ClientConfig, 1.8-1.9.
    #[error("/debug/syncz unexpected resource type {0:?}")]
    UnexpectedResourceType(String),
    /// 1.27+ wrap what `setupStatusPrint` returns.
    #[error("failed to setup status print: {0}")]
    SetupStatusPrint(Box<RenderError>),
}

/// Renders what `istioctl proxy-status` of `family`'s representative version
/// prints (the runner's named groups).
pub fn render(
    family: IstioctlFamily,
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    render_as(
        &IstioctlRules::new(family.representative()),
        responses,
        opts,
    )
}

/// Keys then renders (for callers holding a list of responses).
pub fn render_responses(
    family: IstioctlFamily,
    responses: &[DiscoveryResponse],
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    render(
        family,
        &key_by_control_plane(responses.iter().cloned()),
        opts,
    )
}

/// Keys then renders as one exact istioctl version.
pub fn render_responses_as(
    istioctl: &IstioctlRules,
    responses: &[DiscoveryResponse],
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    render_as(
        istioctl,
        &key_by_control_plane(responses.iter().cloned()),
        opts,
    )
}

/// Renders what `istioctl proxy-status` of exactly this version prints.
pub fn render_as(
    istioctl: &IstioctlRules,
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let version = istioctl.version.clone();
    let documents = match (istioctl.output_flag(), &opts.output) {
        (_, OutputFormat::Table) => false,
        (FlagSupport::Unknown, _) => {
            return Err(RenderError::UnsupportedFlag { flag: 'o', version });
        }
        (FlagSupport::Ignored, _) => false,
        (FlagSupport::Honoured, OutputFormat::Json | OutputFormat::Yaml) => true,
        (FlagSupport::Honoured, OutputFormat::Other(o)) => {
            return Err(RenderError::OutputNotSupported(o.clone()));
        }
    };
    if opts.verbosity > 0 && istioctl.verbosity_flag() == FlagSupport::Unknown {
        return Err(RenderError::UnsupportedFlag { flag: 'v', version });
    }
    if documents {
        return render_documents(responses, opts);
    }
    if istioctl.foreign_resource() != ForeignResource::UnmarshalError {
        return render_pre_1_22(istioctl, responses, opts);
    }
    let wrap = |e: RenderError| {
        if istioctl.wraps_setup_errors() {
            RenderError::SetupStatusPrint(Box::new(e))
        } else {
            e
        }
    };
    let proxies = gather(istioctl, responses, opts).map_err(wrap)?;
    if proxies.is_empty() && istioctl.empty_mesh() == EmptyMesh::SetupNoProxiesError {
        return Err(wrap(RenderError::NoProxies {
            checked: responses.len(),
        }));
    }
    match istioctl.layout() {
        StatusLayout::Subscribed if opts.verbosity > 0 => {
            Ok(render_verbose(istioctl, &proxies, opts))
        }
        StatusLayout::Subscribed => Ok(render_subscribed(&proxies)),
        StatusLayout::Fixed4 | StatusLayout::Fixed5 => Ok(render_fixed(istioctl, &proxies, opts)),
    }
}

/// istioctl's name for a type URL (`xds.GetShortType`).
pub fn short_type(t: &str) -> &str {
    match t {
        "type.googleapis.com/istio.networking.nds.v1.NameTable" => "NDS",
        "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig" => "PCDS",
        "type.googleapis.com/istio.workload.Workload" => "WDS",
        other => type_url::short_name(other),
    }
}

/// The status cell of one fixed column, by `getSyncStatus`'s rules: the last
/// entry of that type wins.
fn fixed_cell(
    xds: &[XdsTypeStatus],
    type_url: &str,
    missing: &str,
    format: impl Fn(&XdsTypeStatus) -> String,
) -> String {
    xds.iter()
        .rev()
        .find(|x| x.type_url == type_url)
        .map(format)
        .unwrap_or_else(|| missing.to_string())
}

const FIVE_TYPES: [&str; 5] = [
    type_url::CLUSTER,
    type_url::LISTENER,
    type_url::ENDPOINT,
    type_url::ROUTE,
    type_url::EXTENSION_CONFIG,
];

/// The status word of one type (`formatStatus` and its predecessors):
/// UNKNOWN and NOT_SENT by the version's words, others by their enum name,
/// plus ` (<age>)` when `last_updated` is set and the version shows ages.
fn format_status(istioctl: &IstioctlRules, x: &XdsTypeStatus, now: SystemTime) -> String {
    match x.status {
        0 => istioctl.unknown_word().to_string(),
        2 => istioctl.not_sent_word().to_string(),
        _ => {
            let mut s = x.status_name();
            if istioctl.shows_age()
                && let Some(t) = x.last_updated
            {
                s.push_str(" (");
                s.push_str(&age::human_age(now, t));
                s.push(')');
            }
            s
        }
    }
}

/// The header of the fixed layouts.
fn fixed_header(layout: StatusLayout) -> &'static [&'static str] {
    match layout {
        StatusLayout::Fixed4 => &["NAME", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"],
        _ => &[
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION",
        ],
    }
}

/// One row of the fixed layouts.
fn fixed_row(istioctl: &IstioctlRules, p: &Gathered, opts: &RenderOptions) -> Vec<String> {
    let layout = istioctl.layout();
    let mut cells = vec![p.proxy_id.clone()];
    if layout != StatusLayout::Fixed4 {
        cells.push(p.meta.cluster_id.clone());
    }
    let types = if layout == StatusLayout::Fixed4 {
        &FIVE_TYPES[..4]
    } else {
        &FIVE_TYPES[..]
    };
    for t in types {
        cells.push(fixed_cell(&p.xds, t, istioctl.missing_type_cell(), |x| {
            format_status(istioctl, x, opts.now)
        }));
    }
    cells.push(p.istiod_id.clone());
    cells.push(match istioctl.version_column() {
        VersionColumn::Istiod => p.istiod_version.clone(),
        VersionColumn::Proxy => p.meta.istio_version.clone(),
    });
    cells
}

/// istioctl 1.8-1.21 (`1.10.0:istioctl/pkg/writer/pilot/status.go` and its
/// neighbours): resources are switched on their type URL; the header is written
/// only once a ClientConfig passed (so an empty mesh prints nothing from 1.10);
/// a resource of another type fails (1.8-1.9) or dumps that response's raw
/// resources and drops the rows gathered so far (1.10-1.21).
fn render_pre_1_22(
    istioctl: &IstioctlRules,
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let mut raw = String::new();
    let mut rows: Vec<Gathered> = Vec::new();
    let mut header = false;
    for (key, dr) in responses {
        let cp = ControlPlaneIdentity::of(dr);
        for resource in &dr.resources {
            if resource.type_url != type_url::CLIENT_CONFIG {
                match istioctl.foreign_resource() {
                    ForeignResource::RawDump { newline } => {
                        for r in &dr.resources {
                            raw.push_str(&String::from_utf8_lossy(&r.value));
                            if newline {
                                raw.push('\n');
                            }
                        }
                        rows.clear();
                        continue;
                    }
                    _ => {
                        return Err(RenderError::UnexpectedResourceType(
                            resource.type_url.clone(),
                        ));
                    }
                }
            }
            let cc = decode::client_config(resource)?;
            let meta = if istioctl.parses_node_metadata() {
                decode::node_metadata(cc.node.as_ref())?
            } else {
                NodeMetadata::default()
            };
            if istioctl.namespace_filter()
                && let Some(ns) = opts.namespace_filter()
                && meta.namespace != ns
            {
                continue;
            }
            let xds = if istioctl.reads_generic_xds_configs() {
                decode::xds_configs(&cc)
            } else {
                decode::legacy_xds_configs(&cc)
            };
            rows.push(Gathered {
                key: key.clone(),
                proxy_id: cc.node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                meta,
                xds,
                istiod_id: cp.id.clone(),
                istiod_version: cp.version.clone(),
            });
            header = true;
        }
    }
    if rows.is_empty() && istioctl.empty_mesh() == EmptyMesh::NoProxiesError {
        return Err(RenderError::NoProxies {
            checked: responses.len(),
        });
    }
    if !header {
        return Ok(raw);
    }
    sort_gathered(&mut rows);
    let mut w = TabWriter::istioctl();
    w.write_row(fixed_header(istioctl.layout()));
    for p in &rows {
        w.write_row(&fixed_row(istioctl, p, opts));
    }
    Ok(raw + &w.finish())
}

/// A proxy as istioctl gathers it.
struct Gathered {
    /// The response key, used only to order duplicate proxy IDs deterministically
    /// (Go's unstable sort leaves them in map order).
    key: String,
    proxy_id: String,
    meta: NodeMetadata,
    xds: Vec<XdsTypeStatus>,
    istiod_id: String,
    istiod_version: String,
}

fn sort_gathered(rows: &mut [Gathered]) {
    rows.sort_by(|a, b| a.proxy_id.cmp(&b.proxy_id).then_with(|| a.key.cmp(&b.key)));
}

/// istioctl 1.22+: every resource goes through `UnmarshalTo` and
/// `ParseMetadata`, `--namespace` filters.
fn gather(
    istioctl: &IstioctlRules,
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<Vec<Gathered>, RenderError> {
    let mut out = Vec::new();
    for (key, dr) in responses {
        let cp = ControlPlaneIdentity::of(dr);
        for resource in &dr.resources {
            let cc = decode::client_config(resource)?;
            let meta = decode::node_metadata(cc.node.as_ref())?;
            if istioctl.namespace_filter()
                && let Some(ns) = opts.namespace_filter()
                && meta.namespace != ns
            {
                continue;
            }
            out.push(Gathered {
                key: key.clone(),
                proxy_id: cc.node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                meta,
                xds: decode::xds_configs(&cc),
                istiod_id: cp.id.clone(),
                istiod_version: cp.version.clone(),
            });
        }
    }
    sort_gathered(&mut out);
    Ok(out)
}

/// 1.22-1.26: fixed five type columns, header always printed.
fn render_fixed(istioctl: &IstioctlRules, proxies: &[Gathered], opts: &RenderOptions) -> String {
    let mut w = TabWriter::istioctl();
    w.write_row(fixed_header(istioctl.layout()));
    for p in proxies {
        w.write_row(&fixed_row(istioctl, p, opts));
    }
    w.finish()
}

/// Types in istioctl's display order: CDS, LDS, EDS, RDS first, then the rest
/// sorted by type URL (`1.27.0:istioctl/pkg/writer/pilot/status.go` `coreOrder`).
fn display_order(types: &BTreeSet<&str>) -> Vec<String> {
    let core = [
        type_url::CLUSTER,
        type_url::LISTENER,
        type_url::ENDPOINT,
        type_url::ROUTE,
    ];
    let mut out: Vec<String> = core
        .iter()
        .filter(|t| types.contains(**t))
        .map(|t| t.to_string())
        .collect();
    out.extend(
        types
            .iter()
            .filter(|t| !core.contains(t))
            .map(|t| t.to_string()),
    );
    out
}

/// 1.27+: `NAME CLUSTER ISTIOD VERSION SUBSCRIBED TYPES`; a type counts when
/// its status is not UNKNOWN (`xdsStatusPrintlnSubscribedTypes` skips
/// `IGNORED`, `1.27.0:istioctl/pkg/writer/pilot/status.go`).
fn render_subscribed(proxies: &[Gathered]) -> String {
    let all: BTreeSet<&str> = proxies
        .iter()
        .flat_map(|p| p.xds.iter().map(|x| x.type_url.as_str()))
        .collect();
    let ordered = display_order(&all);
    let mut w = TabWriter::istioctl();
    w.write_row(&["NAME", "CLUSTER", "ISTIOD", "VERSION", "SUBSCRIBED TYPES"]);
    for p in proxies {
        let names: Vec<&str> = ordered
            .iter()
            .filter(|t| {
                p.xds
                    .iter()
                    .rev()
                    .find(|x| x.type_url == **t)
                    .is_some_and(|x| x.status != 0)
            })
            .map(|t| short_type(t))
            .collect();
        let subscribed = if names.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", names.len(), names.join(","))
        };
        w.write_row(&[
            p.proxy_id.as_str(),
            p.meta.cluster_id.as_str(),
            p.istiod_id.as_str(),
            p.meta.istio_version.as_str(),
            subscribed.as_str(),
        ]);
    }
    w.finish()
}

/// 1.27+ `-v 1`: a column per type (seen or one of the five known), sorted by
/// type URL; missing = IGNORED (`printAllVerbose`).
fn render_verbose(istioctl: &IstioctlRules, proxies: &[Gathered], opts: &RenderOptions) -> String {
    let mut types: BTreeSet<&str> = FIVE_TYPES.into_iter().collect();
    for p in proxies {
        types.extend(p.xds.iter().map(|x| x.type_url.as_str()));
    }
    let mut header = vec!["NAME".to_string(), "CLUSTER".to_string()];
    header.extend(types.iter().map(|t| short_type(t).to_string()));
    header.push("ISTIOD".into());
    header.push("VERSION".into());
    let mut w = TabWriter::istioctl();
    w.write_row(&header);
    for p in proxies {
        let mut cells = vec![p.proxy_id.clone(), p.meta.cluster_id.clone()];
        for t in &types {
            cells.push(fixed_cell(&p.xds, t, "IGNORED", |x| {
                format_status(istioctl, x, opts.now)
            }));
        }
        cells.push(p.istiod_id.clone());
        cells.push(p.meta.istio_version.clone());
        w.write_row(&cells);
    }
    w.finish()
}

/// 1.30 `-o json|yaml`: one document per istiod, namespace filter applied.
fn render_documents(
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let mut out = String::new();
    for dr in responses.values() {
        let mut dr = dr.clone();
        if let Some(ns) = opts.namespace_filter() {
            let mut kept = Vec::with_capacity(dr.resources.len());
            for r in dr.resources {
                let cc = decode::client_config(&r)?;
                if decode::node_metadata(cc.node.as_ref())?.namespace == ns {
                    kept.push(r);
                }
            }
            dr.resources = kept;
        }
        let doc = document::response_doc(&dr)?;
        match opts.output {
            OutputFormat::Yaml => out.push_str(&document::to_yaml(&doc)),
            _ => out.push_str(&document::to_json(&doc, "    ")),
        }
        out.push('\n');
    }
    Ok(out)
}
