//! `-o json|yaml` (istioctl 1.30): each istiod's syncz `DiscoveryResponse` as
//! golang/protobuf `jsonpb` writes it (`protomarshal.ToJSONWithIndent(resp, "    ")`)
//! or as `protomarshal.ToYAML` does (jsonpb, then sigs.k8s.io/yaml: yaml.v2 with
//! sorted keys and its quoting rules).
//!
//! Covered messages: DiscoveryResponse, ControlPlane, ClientConfig (with Node,
//! both status shapes, error state, timestamps). Other `Any` payloads are an
//! error, like jsonpb's for a type it cannot resolve.

use super::age::rfc3339;
use prost::Message;
use proto::envoy::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use proto::envoy::envoy::config::core::v3::{Node, node::UserAgentVersionType};
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::envoy::envoy::service::status::v3::{
    ClientConfig, ConfigStatus, PerXdsConfig, client_config::GenericXdsConfig,
    per_xds_config::PerXdsConfig as PerXdsKind,
};
use proto::envoy::google::protobuf::{Any, Struct, Timestamp, Value, value::Kind};

/// A JSON value in jsonpb's field order.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// A protobuf message (jsonpb prints an empty one as `{` `\n\n` `}`).
    Message(Vec<(String, Doc)>),
    /// A JSON object that is a map (Struct fields).
    Map(Vec<(String, Doc)>),
    List(Vec<Doc>),
    Str(String),
    /// A number already formatted.
    Num(String),
    Bool(bool),
    Null,
}

/// A payload jsonpb could not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to resolve {0:?}: \"not found\"")]
pub struct DocError(pub String);

struct Fields(Vec<(String, Doc)>);

impl Fields {
    fn new() -> Self {
        Fields(Vec::new())
    }
    fn str(&mut self, name: &str, v: &str) {
        if !v.is_empty() {
            self.0.push((name.into(), Doc::Str(v.into())));
        }
    }
    fn boolean(&mut self, name: &str, v: bool) {
        if v {
            self.0.push((name.into(), Doc::Bool(true)));
        }
    }
    fn doc(&mut self, name: &str, v: Option<Doc>) {
        if let Some(v) = v {
            self.0.push((name.into(), v));
        }
    }
    fn list(&mut self, name: &str, v: Vec<Doc>) {
        if !v.is_empty() {
            self.0.push((name.into(), Doc::List(v)));
        }
    }
    fn message(self) -> Doc {
        Doc::Message(self.0)
    }
}

fn enum_doc(v: i32, name: Option<&str>) -> Option<Doc> {
    if v == 0 {
        return None;
    }
    Some(match name {
        Some(n) => Doc::Str(n.to_string()),
        None => Doc::Num(v.to_string()),
    })
}

fn config_status(v: i32) -> Option<Doc> {
    enum_doc(v, ConfigStatus::try_from(v).ok().map(|s| s.as_str_name()))
}

fn resource_status(v: i32) -> Option<Doc> {
    enum_doc(
        v,
        ClientResourceStatus::try_from(v)
            .ok()
            .map(|s| s.as_str_name()),
    )
}

fn timestamp(t: &Timestamp) -> Doc {
    Doc::Str(rfc3339(t.seconds, t.nanos))
}

/// Go's `json.Marshal(float64)` for the values node metadata carries.
fn number(n: f64) -> Doc {
    if n.is_nan() {
        Doc::Str("NaN".into())
    } else if n.is_infinite() {
        Doc::Str(if n > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Doc::Num(format!("{n}"))
    }
}

fn value(v: &Value) -> Doc {
    match v.kind.as_ref() {
        None | Some(Kind::NullValue(_)) => Doc::Null,
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StringValue(s)) => Doc::Str(s.clone()),
        Some(Kind::BoolValue(b)) => Doc::Bool(*b),
        Some(Kind::StructValue(s)) => struct_doc(s),
        Some(Kind::ListValue(l)) => Doc::List(l.values.iter().map(value).collect()),
    }
}

fn struct_doc(s: &Struct) -> Doc {
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    Doc::Map(
        keys.into_iter()
            .map(|k| (k.clone(), value(&s.fields[k])))
            .collect(),
    )
}

fn node(n: &Node) -> Doc {
    let mut f = Fields::new();
    f.str("id", &n.id);
    f.str("cluster", &n.cluster);
    f.doc("metadata", n.metadata.as_ref().map(struct_doc));
    if let Some(l) = &n.locality {
        let mut lf = Fields::new();
        lf.str("region", &l.region);
        lf.str("zone", &l.zone);
        lf.str("subZone", &l.sub_zone);
        f.doc("locality", Some(lf.message()));
    }
    f.str("userAgentName", &n.user_agent_name);
    if let Some(UserAgentVersionType::UserAgentVersion(v)) = &n.user_agent_version_type {
        f.0.push(("userAgentVersion".into(), Doc::Str(v.clone())));
    }
    f.list(
        "clientFeatures",
        n.client_features
            .iter()
            .map(|c| Doc::Str(c.clone()))
            .collect(),
    );
    f.message()
}

fn failure_state(e: &UpdateFailureState) -> Result<Doc, DocError> {
    let mut f = Fields::new();
    if let Some(a) = &e.failed_configuration {
        f.doc("failedConfiguration", Some(any(a)?));
    }
    f.doc(
        "lastUpdateAttempt",
        e.last_update_attempt.as_ref().map(timestamp),
    );
    f.str("details", &e.details);
    f.str("versionInfo", &e.version_info);
    Ok(f.message())
}

fn generic(g: &GenericXdsConfig) -> Result<Doc, DocError> {
    let mut f = Fields::new();
    f.str("typeUrl", &g.type_url);
    f.str("name", &g.name);
    f.str("versionInfo", &g.version_info);
    if let Some(a) = &g.xds_config {
        f.doc("xdsConfig", Some(any(a)?));
    }
    f.doc("lastUpdated", g.last_updated.as_ref().map(timestamp));
    f.doc("configStatus", config_status(g.config_status));
    f.doc("clientStatus", resource_status(g.client_status));
    if let Some(e) = &g.error_state {
        f.doc("errorState", Some(failure_state(e)?));
    }
    f.boolean("isStaticResource", g.is_static_resource);
    Ok(f.message())
}

#[allow(deprecated)]
fn per_xds(p: &PerXdsConfig) -> Doc {
    let mut f = Fields::new();
    f.doc("status", config_status(p.status));
    f.doc(
        "clientStatus",
        enum_doc(
            p.client_status,
            proto::envoy::envoy::service::status::v3::ClientConfigStatus::try_from(p.client_status)
                .ok()
                .map(|s| s.as_str_name()),
        ),
    );
    let (name, version) = match &p.per_xds_config {
        Some(PerXdsKind::ListenerConfig(c)) => ("listenerConfig", c.version_info.as_str()),
        Some(PerXdsKind::ClusterConfig(c)) => ("clusterConfig", c.version_info.as_str()),
        Some(PerXdsKind::RouteConfig(_)) => ("routeConfig", ""),
        Some(PerXdsKind::ScopedRouteConfig(_)) => ("scopedRouteConfig", ""),
        Some(PerXdsKind::EndpointConfig(_)) => ("endpointConfig", ""),
        None => return f.message(),
    };
    let mut inner = Fields::new();
    inner.str("versionInfo", version);
    f.doc(name, Some(inner.message()));
    f.message()
}

#[allow(deprecated)]
fn client_config(c: &ClientConfig, type_url: &str) -> Result<Doc, DocError> {
    let mut f = Fields::new();
    f.0.push(("@type".into(), Doc::Str(type_url.into())));
    f.doc("node", c.node.as_ref().map(node));
    f.list("xdsConfig", c.xds_config.iter().map(per_xds).collect());
    f.list(
        "genericXdsConfigs",
        c.generic_xds_configs
            .iter()
            .map(generic)
            .collect::<Result<_, _>>()?,
    );
    f.str("clientScope", &c.client_scope);
    Ok(f.message())
}

fn any(a: &Any) -> Result<Doc, DocError> {
    let name = a.type_url.rsplit('/').next().unwrap_or_default();
    if name == "envoy.service.status.v3.ClientConfig" {
        let cc =
            ClientConfig::decode(a.value.as_slice()).map_err(|_| DocError(a.type_url.clone()))?;
        return client_config(&cc, &a.type_url);
    }
    Err(DocError(a.type_url.clone()))
}

/// A syncz response as a jsonpb document.
pub fn response_doc(r: &DiscoveryResponse) -> Result<Doc, DocError> {
    let mut f = Fields::new();
    f.str("versionInfo", &r.version_info);
    f.list(
        "resources",
        r.resources.iter().map(any).collect::<Result<_, _>>()?,
    );
    f.boolean("canary", r.canary);
    f.str("typeUrl", &r.type_url);
    f.str("nonce", &r.nonce);
    if let Some(cp) = &r.control_plane {
        let mut c = Fields::new();
        c.str("identifier", &cp.identifier);
        f.doc("controlPlane", Some(c.message()));
    }
    Ok(f.message())
}

/// Go's `json.Marshal` of a string (HTML-safe escaping, as jsonpb uses it).
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// jsonpb with `Indent: indent`.
pub fn to_json(doc: &Doc, indent: &str) -> String {
    let mut out = String::new();
    write_json(doc, indent, "", &mut out);
    out
}

fn write_json(doc: &Doc, unit: &str, at: &str, out: &mut String) {
    match doc {
        Doc::Map(fields) => {
            // A `google.protobuf.Struct` field: jsonpb marshals the Struct as a
            // message one level in, then its map one level further, so entries
            // sit two units deeper than the key and the brace one unit deeper
            // (golang/protobuf jsonpb `marshalValue`; the layout of
            // `1.30.0:istioctl/pkg/writer/pilot/testdata/multiXdsStatusSinglePilot.json`).
            write_struct_entries(
                fields,
                unit,
                &format!("{at}{unit}{unit}"),
                &format!("{at}{unit}"),
                out,
            );
        }
        Doc::Message(fields) => {
            out.push('{');
            let inner = format!("{at}{unit}");
            if fields.is_empty() {
                // jsonpb writes "{", a newline, no fields, then newline + indent + "}".
                out.push('\n');
            }
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&inner);
                out.push_str(&go_json_string(k));
                out.push_str(": ");
                write_json(v, unit, &inner, out);
            }
            out.push('\n');
            out.push_str(at);
            out.push('}');
        }
        Doc::List(items) => {
            out.push('[');
            let inner = format!("{at}{unit}");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&inner);
                write_json(v, unit, &inner, out);
            }
            out.push('\n');
            out.push_str(at);
            out.push(']');
        }
        Doc::Str(s) => out.push_str(&go_json_string(s)),
        Doc::Num(n) => out.push_str(n),
        Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Doc::Null => out.push_str("null"),
    }
}

/// The entries of a Struct at `entries`, closed at `close`.
fn write_struct_entries(
    fields: &[(String, Doc)],
    unit: &str,
    entries: &str,
    close: &str,
    out: &mut String,
) {
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('\n');
        out.push_str(entries);
        out.push_str(&go_json_string(k));
        out.push_str(": ");
        write_struct_value(v, unit, entries, out);
    }
    out.push('\n');
    out.push_str(close);
    out.push('}');
}

/// A `google.protobuf.Value` whose line starts at `line`: a nested Struct or
/// ListValue goes through Value -> Struct/ListValue -> map/list, three levels,
/// so its entries sit three units deeper than the line and the closing brace two.
fn write_struct_value(doc: &Doc, unit: &str, line: &str, out: &mut String) {
    let entries = format!("{line}{unit}{unit}{unit}");
    let close = format!("{line}{unit}{unit}");
    match doc {
        Doc::Map(fields) | Doc::Message(fields) => {
            write_struct_entries(fields, unit, &entries, &close, out)
        }
        Doc::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&entries);
                write_struct_value(v, unit, &entries, out);
            }
            out.push('\n');
            out.push_str(&close);
            out.push(']');
        }
        other => write_json(other, unit, line, out),
    }
}

/// yaml.v2's map key order (`keyList.Less`): letters before other runes,
/// digit runs compared as numbers.
fn yaml_key_less(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

/// Would yaml.v2 resolve this plain scalar to something other than a string?
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return false;
    }
    let plain = s.replace('_', "");
    let body = plain.trim_start_matches(['+', '-']);
    let is_int = !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit())
        || body
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        || body
            .strip_prefix("0b")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b == b'0' || b == b'1'));
    let is_float = plain.parse::<f64>().is_ok() && !plain.contains(['i', 'n', 'I', 'N']);
    let is_timestamp = {
        let b = s.as_bytes();
        b.len() >= 8
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && s[5..].split(['T', 't', ' ']).next().is_some_and(|date| {
                let mut parts = date.split('-');
                let ok = |p: Option<&str>| {
                    p.is_some_and(|p| {
                        (1..=2).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit())
                    })
                };
                ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
            })
    };
    // Sexagesimal numbers (YAML 1.1): digits separated by ':'.
    let is_base60 = body.contains(':')
        && body
            .split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit() || c == b'.'));
    is_int || is_float || is_timestamp || is_base60
}

/// May libyaml write this string as a plain scalar in block context?
fn plain_allowed(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let Some(&first) = chars.first() else {
        return false;
    };
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if first == ' ' || chars.last() == Some(&' ') {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(first, '?' | ':' | '-') && chars.get(1).is_none_or(|c| *c == ' ') {
        return false;
    }
    for (i, c) in chars.iter().enumerate() {
        let next = chars.get(i + 1);
        let prev = if i > 0 { chars.get(i - 1) } else { None };
        if *c == ':' && (next.is_none() || next == Some(&' ')) {
            return false;
        }
        if *c == '#' && prev == Some(&' ') {
            return false;
        }
        if c.is_control() || *c == '\u{feff}' || (!c.is_ascii() && !is_printable(*c)) {
            return false;
        }
    }
    true
}

fn is_printable(c: char) -> bool {
    !c.is_control() && c != '\u{feff}' && c != '\u{2028}' && c != '\u{2029}'
}

fn yaml_string(s: &str) -> String {
    let special = s.chars().any(|c| !is_printable(c) || c == '\n');
    if !special && !resolves_to_non_string(s) && plain_allowed(s) {
        return s.to_string();
    }
    if !special && !resolves_to_non_string(s) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if !is_printable(c) => {
                let v = c as u32;
                if v <= 0xff {
                    out.push_str(&format!("\\x{v:02X}"));
                } else if v <= 0xffff {
                    out.push_str(&format!("\\u{v:04X}"));
                } else {
                    out.push_str(&format!("\\U{v:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn yaml_scalar(doc: &Doc) -> Option<String> {
    match doc {
        Doc::Str(s) => Some(yaml_string(s)),
        Doc::Num(n) => Some(match n.parse::<i64>() {
            Ok(i) => i.to_string(),
            Err(_) => n.clone(),
        }),
        Doc::Bool(b) => Some(b.to_string()),
        Doc::Null => Some("null".into()),
        Doc::Message(f) | Doc::Map(f) if f.is_empty() => Some("{}".into()),
        Doc::List(l) if l.is_empty() => Some("[]".into()),
        _ => None,
    }
}

/// libyaml's line width: a scalar is folded at a space once a line passes it.
const BEST_WIDTH: usize = 80;

#[derive(Clone, Copy, PartialEq, Eq)]
enum ScalarStyle {
    Plain,
    Single,
    Double,
}

/// Folds a rendered scalar like libyaml's writers do: at a space, when the
/// line is already past column 80, break and continue at `cont` columns.
fn fold_scalar(rendered: &str, start_col: usize, cont: usize) -> String {
    let chars: Vec<char> = rendered.chars().collect();
    let (quote, style) = match chars.first() {
        Some('\'') => (1, ScalarStyle::Single),
        Some('"') => (1, ScalarStyle::Double),
        _ => (0, ScalarStyle::Plain),
    };
    if chars.len() < 2 * quote {
        return rendered.to_string();
    }
    let inner = &chars[quote..chars.len() - quote];
    let mut out = String::with_capacity(rendered.len() + 8);
    let mut col = start_col;
    for c in &chars[..quote] {
        out.push(*c);
        col += 1;
    }
    let mut spaces = false;
    for (i, &c) in inner.iter().enumerate() {
        if c != ' ' {
            out.push(c);
            col += 1;
            spaces = false;
            continue;
        }
        let next_space = inner.get(i + 1) == Some(&' ');
        let inside = i != 0 && i + 1 != inner.len();
        let can_break = !spaces
            && col > BEST_WIDTH
            && match style {
                ScalarStyle::Plain => !next_space,
                ScalarStyle::Single => inside && !next_space,
                ScalarStyle::Double => inside,
            };
        if can_break {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', cont));
            col = cont;
            if style == ScalarStyle::Double && next_space {
                out.push('\\');
                col += 1;
            }
        } else {
            out.push(' ');
            col += 1;
        }
        spaces = true;
    }
    for c in &chars[chars.len() - quote..] {
        out.push(*c);
    }
    out
}

/// sigs.k8s.io/yaml `JSONToYAML` of the jsonpb document (yaml.v2 style).
pub fn to_yaml(doc: &Doc) -> String {
    let mut out = String::new();
    match yaml_scalar(doc) {
        Some(s) => {
            out.push_str(&s);
            out.push('\n');
        }
        None => write_yaml(doc, 0, &mut out),
    }
    out
}

fn write_yaml(doc: &Doc, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match doc {
        Doc::Message(fields) | Doc::Map(fields) => {
            let mut sorted: Vec<&(String, Doc)> = fields.iter().collect();
            sorted.sort_by(|a, b| yaml_key_less(&a.0, &b.0));
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                // The first key of a map inside a list shares the "- " line.
                if i > 0 || !out.ends_with("- ") {
                    out.push_str(&pad);
                }
                out.push_str(&yaml_string(k));
                out.push(':');
                match yaml_scalar(v) {
                    Some(s) => {
                        out.push(' ');
                        let start = indent + k.chars().count() + 2;
                        out.push_str(&fold_scalar(&s, start, indent + 2));
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        let child = if matches!(v, Doc::List(_)) {
                            indent
                        } else {
                            indent + 2
                        };
                        write_yaml(v, child, out);
                    }
                }
            }
        }
        Doc::List(items) => {
            for v in items {
                out.push_str(&pad);
                out.push_str("- ");
                match yaml_scalar(v) {
                    Some(s) => {
                        out.push_str(&fold_scalar(&s, indent + 2, indent + 2));
                        out.push('\n');
                    }
                    None if matches!(v, Doc::List(_)) => {
                        out.push('\n');
                        write_yaml(v, indent + 2, out);
                    }
                    None => write_yaml(v, indent + 2, out),
                }
            }
        }
        scalar => {
            if let Some(s) = yaml_scalar(scalar) {
                out.push_str(&pad);
                out.push_str(&s);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_key_order_like_yaml_v2() {
        let mut keys = vec!["node", "genericXdsConfigs", "@type", "a10", "a9", "Zed"];
        keys.sort_by(|a, b| yaml_key_less(a, b));
        assert_eq!(
            keys,
            vec!["@type", "Zed", "a9", "a10", "genericXdsConfigs", "node"]
        );
    }

    #[test]
    fn yaml_quoting_like_yaml_v2() {
        assert_eq!(yaml_string("SYNCED"), "SYNCED");
        assert_eq!(yaml_string("1.20"), "\"1.20\"");
        assert_eq!(yaml_string("@type"), "'@type'");
        assert_eq!(yaml_string(r#"{"ID":"x"}"#), r#"'{"ID":"x"}'"#);
        assert_eq!(
            yaml_string("2024-06-20T10:00:00Z"),
            "\"2024-06-20T10:00:00Z\""
        );
        assert_eq!(yaml_string("yes"), "\"yes\"");
        assert_eq!(yaml_string(""), "\"\"");
        assert_eq!(yaml_string("<external>"), "<external>");
        assert_eq!(
            yaml_string("type.googleapis.com/x.Y"),
            "type.googleapis.com/x.Y"
        );
    }

    #[test]
    fn long_scalars_fold_like_libyaml() {
        // The CRD-description shape everyone has seen from sigs.k8s.io/yaml.
        let text = "APIVersion defines the versioned schema of this representation of an object. Servers should convert";
        let doc = Doc::Map(vec![("description".into(), Doc::Str(text.into()))]);
        let nested = Doc::Map(vec![(
            "a".into(),
            Doc::Map(vec![("b".into(), Doc::Map(vec![("c".into(), doc)]))]),
        )]);
        assert_eq!(
            to_yaml(&nested),
            "a:\n  b:\n    c:\n      description: APIVersion defines the versioned schema of this representation\n        of an object. Servers should convert\n"
        );
        let quoted = fold_scalar(&yaml_string(&format!("x: {text}")), 20, 4);
        assert_eq!(
            quoted,
            "'x: APIVersion defines the versioned schema of this representation\n    of an object. Servers should convert'"
        );
    }

    #[test]
    fn json_strings_are_html_safe_like_go() {
        assert_eq!(
            go_json_string("<external> & \"x\""),
            r#""\u003cexternal\u003e \u0026 \"x\"""#
        );
    }
}
