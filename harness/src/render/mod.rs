//! `istioctl proxy-status` output, exactly as each istioctl family prints it
//! (istioctl/pkg/writer/pilot/status.go on each release branch).
//!
//! Rendering is a pure function of (family, responses, options): the clock that
//! ages are computed from is part of [`RenderOptions`].
//!
//! | family | istioctl | header | VERSION | cells |
//! |---|---|---|---|---|
//! | 1.12 | 1.8-1.13 | `NAME CDS LDS EDS RDS ISTIOD VERSION` | istiod's | enum names, missing = empty |
//! | 1.14 | 1.14-1.18 | `NAME CLUSTER CDS LDS EDS RDS ECDS ISTIOD VERSION` | istiod's | enum names |
//! | 1.19 | 1.19-1.21 | same | proxy's `ISTIO_VERSION` | enum names |
//! | 1.22 | 1.22 | same | proxy's | `IGNORED`, `NOT SENT` |
//! | 1.23 | 1.23-1.26 | same | proxy's | `SYNCED (5m)`, missing = `IGNORED` |
//! | 1.27 | 1.27-1.29 | `NAME CLUSTER ISTIOD VERSION SUBSCRIBED TYPES` | proxy's | `4 (CDS,LDS,EDS,RDS)`; `-v 1`: a column per type |
//! | 1.30 | 1.30+ | as 1.27 | | plus `-o json|yaml` |

pub mod age;
pub mod document;
pub mod tabwriter;

use crate::decode::{self, ControlPlaneIdentity, NodeMetadata, XdsTypeStatus};
use proto::IstioctlFamily;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::type_url;
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" | "" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            "yaml" => Ok(OutputFormat::Yaml),
            other => Err(format!(
                "unknown output format {other:?}: use table, json or yaml"
            )),
        }
    }
}

/// Everything besides the responses that decides the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// `-v` (1.27+): `> 0` shows one column per xDS type.
    pub verbosity: u8,
    /// `-o` (1.30+).
    pub output: OutputFormat,
    /// `--namespace` (1.22+ filter on the proxy's `NAMESPACE` metadata).
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
}

/// Why istioctl would print an error instead of a table (texts are istioctl's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    #[error(transparent)]
    Document(#[from] document::DocError),
    /// The flag does not exist in that istioctl (cobra's message).
    #[error("unknown shorthand flag: '{flag}' in -{flag} (istioctl {family} has no such flag)")]
    UnsupportedFlag { flag: char, family: IstioctlFamily },
}

/// Renders what `istioctl proxy-status` of `family` prints for these responses.
pub fn render(
    family: IstioctlFamily,
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let modern = matches!(family, IstioctlFamily::V1_27 | IstioctlFamily::V1_30);
    if opts.output != OutputFormat::Table && family != IstioctlFamily::V1_30 {
        return Err(RenderError::UnsupportedFlag { flag: 'o', family });
    }
    if opts.verbosity > 0 && !modern {
        return Err(RenderError::UnsupportedFlag { flag: 'v', family });
    }
    match family {
        IstioctlFamily::V1_12 | IstioctlFamily::V1_14 | IstioctlFamily::V1_19 => {
            render_lazy(family, responses)
        }
        IstioctlFamily::V1_22 | IstioctlFamily::V1_23 => render_fixed(family, responses, opts),
        IstioctlFamily::V1_27 | IstioctlFamily::V1_30 => match opts.output {
            OutputFormat::Table if opts.verbosity > 0 => render_verbose(responses, opts),
            OutputFormat::Table => render_subscribed(responses, opts),
            OutputFormat::Json | OutputFormat::Yaml => render_documents(responses, opts),
        },
    }
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

/// istioctl's name for a type URL (`xds.GetShortType`).
pub fn short_type(t: &str) -> &str {
    match t {
        "type.googleapis.com/istio.networking.nds.v1.NameTable" => "NDS",
        "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig" => "PCDS",
        "type.googleapis.com/istio.workload.Workload" => "WDS",
        other => type_url::short_name(other),
    }
}

/// One row before formatting.
struct Row {
    proxy_id: String,
    /// The response key, used only to order duplicate proxy IDs deterministically
    /// (Go's unstable sort leaves them in map order).
    key: String,
    cells: Vec<String>,
}

fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| a.proxy_id.cmp(&b.proxy_id).then_with(|| a.key.cmp(&b.key)));
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

/// 1.8-1.21: the header appears only once a ClientConfig was seen (so an empty
/// mesh prints nothing); a resource of another type is printed raw and drops
/// the rows gathered so far.
fn render_lazy(family: IstioctlFamily, responses: &KeyedResponses) -> Result<String, RenderError> {
    let mut raw = String::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut header = false;
    for (key, dr) in responses {
        let cp = ControlPlaneIdentity::of(dr);
        for resource in &dr.resources {
            if resource.type_url != type_url::CLIENT_CONFIG {
                for r in &dr.resources {
                    raw.push_str(&String::from_utf8_lossy(&r.value));
                    if family != IstioctlFamily::V1_12 {
                        raw.push('\n');
                    }
                }
                rows.clear();
                continue;
            }
            let cc = decode::client_config(resource)?;
            let xds = decode::xds_configs(&cc);
            let proxy_id = cc.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
            let name = |x: &XdsTypeStatus| x.status_name();
            let mut cells = vec![proxy_id.clone()];
            if family == IstioctlFamily::V1_12 {
                for t in &FIVE_TYPES[..4] {
                    cells.push(fixed_cell(&xds, t, "", name));
                }
                cells.push(cp.id.clone());
                cells.push(cp.version.clone());
            } else {
                let meta = decode::node_metadata(cc.node.as_ref())?;
                cells.push(meta.cluster_id.clone());
                for t in FIVE_TYPES {
                    cells.push(fixed_cell(&xds, t, "", name));
                }
                cells.push(cp.id.clone());
                cells.push(if family == IstioctlFamily::V1_14 {
                    cp.version.clone()
                } else {
                    meta.istio_version.clone()
                });
            }
            rows.push(Row {
                proxy_id,
                key: key.clone(),
                cells,
            });
            header = true;
        }
    }
    if !header {
        return Ok(raw);
    }
    sort_rows(&mut rows);
    let mut w = TabWriter::istioctl();
    if family == IstioctlFamily::V1_12 {
        w.write_row(&["NAME", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"]);
    } else {
        w.write_row(&[
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION",
        ]);
    }
    for r in &rows {
        w.write_row(&r.cells);
    }
    Ok(raw + &w.finish())
}

/// A proxy as istioctl 1.22+ gathers it: every resource is a ClientConfig,
/// metadata must parse, `--namespace` filters.
struct Gathered {
    key: String,
    proxy_id: String,
    meta: NodeMetadata,
    xds: Vec<XdsTypeStatus>,
    istiod_id: String,
}

fn gather(responses: &KeyedResponses, opts: &RenderOptions) -> Result<Vec<Gathered>, RenderError> {
    let mut out = Vec::new();
    for (key, dr) in responses {
        let cp = ControlPlaneIdentity::of(dr);
        for resource in &dr.resources {
            let cc = decode::client_config(resource)?;
            let meta = decode::node_metadata(cc.node.as_ref())?;
            if let Some(ns) = opts.namespace.as_deref().filter(|ns| !ns.is_empty())
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
            });
        }
    }
    out.sort_by(|a, b| a.proxy_id.cmp(&b.proxy_id).then_with(|| a.key.cmp(&b.key)));
    Ok(out)
}

/// `formatStatus`: UNKNOWN → IGNORED, NOT_SENT → NOT SENT, else the enum name,
/// plus ` (<age>)` when `last_updated` is set and `with_age`.
fn format_status(x: &XdsTypeStatus, with_age: bool, now: SystemTime) -> String {
    match x.status {
        0 => "IGNORED".to_string(),
        2 => "NOT SENT".to_string(),
        _ => {
            let mut s = x.status_name();
            if with_age && let Some(t) = x.last_updated {
                s.push_str(" (");
                s.push_str(&age::human_age(now, t));
                s.push(')');
            }
            s
        }
    }
}

/// 1.22 and 1.23-1.26: fixed five type columns, header always printed.
fn render_fixed(
    family: IstioctlFamily,
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let proxies = gather(responses, opts)?;
    let aged = family == IstioctlFamily::V1_23;
    let missing = if aged { "IGNORED" } else { "" };
    let mut w = TabWriter::istioctl();
    w.write_row(&[
        "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION",
    ]);
    for p in &proxies {
        let mut cells = vec![p.proxy_id.clone(), p.meta.cluster_id.clone()];
        for t in FIVE_TYPES {
            cells.push(fixed_cell(&p.xds, t, missing, |x| {
                format_status(x, aged, opts.now)
            }));
        }
        cells.push(p.istiod_id.clone());
        cells.push(p.meta.istio_version.clone());
        w.write_row(&cells);
    }
    Ok(w.finish())
}

/// Types in istioctl's display order: CDS, LDS, EDS, RDS first, then the rest
/// sorted by type URL.
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

/// 1.27+: `NAME CLUSTER ISTIOD VERSION SUBSCRIBED TYPES`.
fn render_subscribed(
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let proxies = gather(responses, opts)?;
    let mut w = TabWriter::istioctl();
    w.write_row(&["NAME", "CLUSTER", "ISTIOD", "VERSION", "SUBSCRIBED TYPES"]);
    for p in &proxies {
        let types: BTreeSet<&str> = p.xds.iter().map(|x| x.type_url.as_str()).collect();
        let ordered = display_order(&types);
        let subscribed = if ordered.is_empty() {
            "0".to_string()
        } else {
            let names: Vec<&str> = ordered.iter().map(|t| short_type(t)).collect();
            format!("{} ({})", ordered.len(), names.join(","))
        };
        w.write_row(&[
            p.proxy_id.as_str(),
            p.meta.cluster_id.as_str(),
            p.istiod_id.as_str(),
            p.meta.istio_version.as_str(),
            subscribed.as_str(),
        ]);
    }
    Ok(w.finish())
}

/// 1.27+ `-v 1`: a column per type (seen or known), sorted by type URL;
/// missing = IGNORED.
fn render_verbose(responses: &KeyedResponses, opts: &RenderOptions) -> Result<String, RenderError> {
    let proxies = gather(responses, opts)?;
    let mut types: BTreeSet<&str> = FIVE_TYPES.into_iter().collect();
    for p in &proxies {
        types.extend(p.xds.iter().map(|x| x.type_url.as_str()));
    }
    let mut header = vec!["NAME".to_string(), "CLUSTER".to_string()];
    header.extend(types.iter().map(|t| short_type(t).to_string()));
    header.push("ISTIOD".into());
    header.push("VERSION".into());
    let mut w = TabWriter::istioctl();
    w.write_row(&header);
    for p in &proxies {
        let mut cells = vec![p.proxy_id.clone(), p.meta.cluster_id.clone()];
        for t in &types {
            cells.push(fixed_cell(&p.xds, t, "IGNORED", |x| {
                format_status(x, true, opts.now)
            }));
        }
        cells.push(p.istiod_id.clone());
        cells.push(p.meta.istio_version.clone());
        w.write_row(&cells);
    }
    Ok(w.finish())
}

/// 1.30 `-o json|yaml`: one document per istiod, namespace filter applied.
fn render_documents(
    responses: &KeyedResponses,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    let mut out = String::new();
    for dr in responses.values() {
        let mut dr = dr.clone();
        if let Some(ns) = opts.namespace.as_deref().filter(|ns| !ns.is_empty()) {
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
