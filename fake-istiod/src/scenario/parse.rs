//! YAML → [`Scenario`], with validation. Every problem is collected (not only
//! the first) with its line and field path.

use super::generate::Generator;
use super::yaml::{Map, Problems, line, span_line};
use super::*;
use marked_yaml::{LoaderOptions, Node, loader::LoadError};
use std::collections::{BTreeSet, HashMap};

pub(super) fn parse(text: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
    let fail = |problems: Vec<Problem>| ScenarioError {
        source_name: source_name.to_string(),
        problems,
    };
    let mut p = Problems::default();
    // Text that did not come from a file (control API, embedded) is bounded too.
    if text.len() as u64 > MAX_FILE_BYTES {
        p.add(
            0,
            "(file)",
            format!(
                "the scenario has {} bytes; at most {MAX_FILE_BYTES} (use `generate:` for large meshes)",
                text.len()
            ),
        );
        return Err(fail(p.0));
    }
    // Before building the tree: a deep one overflows the stack when dropped,
    // a huge one takes hundreds of MB.
    if let Some(problem) = super::yaml::shape_problem(text, MAX_DEPTH, MAX_NODES) {
        return Err(fail(vec![problem]));
    }
    let opts = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(n) => n,
        Err(e) => return Err(fail(vec![load_problem(&e)])),
    };
    let scenario = scenario(&root, source_name, &mut p);
    match scenario {
        Some(s) if p.0.is_empty() => Ok(s),
        _ => {
            p.0.sort_by_key(|pr| pr.line);
            if p.0.len() > MAX_PROBLEMS {
                let more = p.0.len() - MAX_PROBLEMS;
                p.0.truncate(MAX_PROBLEMS);
                p.add(0, "(file)", format!("{more} more problems not shown"));
            }
            Err(fail(p.0))
        }
    }
}

fn load_problem(e: &LoadError) -> Problem {
    let (line, field, message) = match e {
        LoadError::TopLevelMustBeMapping(m) => (
            m.line(),
            "(document)".to_string(),
            "the top level must be a mapping".to_string(),
        ),
        LoadError::DuplicateKey(inner) => (
            span_line(inner.key.span()),
            inner.key.as_str().to_string(),
            format!(
                "duplicate key (first at line {})",
                span_line(inner.prev_key.span())
            ),
        ),
        LoadError::ScanError(m, se) => (
            m.line(),
            "(syntax)".to_string(),
            format!("invalid YAML: {} (column {})", se.info(), m.column()),
        ),
        other => (0, "(syntax)".to_string(), format!("invalid YAML: {other}")),
    };
    Problem {
        line,
        field,
        message,
    }
}

fn version_of(s: &str, l: usize, field: &str, p: &mut Problems) -> Option<IstioVersion> {
    match s.parse::<IstioVersion>() {
        Ok(v) => Some(v),
        Err(e) => {
            p.add(l, field, e.to_string());
            None
        }
    }
}

fn scenario(root: &Node, source: &str, p: &mut Problems) -> Option<Scenario> {
    let top = Map::of(root, "", p)?;
    top.only(
        &[
            "description",
            "istiod",
            "auth",
            "replicas",
            "proxies",
            "generate",
        ],
        p,
    );
    let description = top
        .string("description", p)
        .map(|(s, _)| s)
        .unwrap_or_default();

    // istiod
    let istiod = match top.get("istiod") {
        Some(n) => Map::of(n, "istiod", p).and_then(|m| istiod_settings(&m, p)),
        None => {
            p.add(
                top.line(),
                "istiod",
                "missing required field (istiod: {version: ...})",
            );
            None
        }
    };
    let auth = top
        .get("auth")
        .and_then(|n| Map::of(n, "auth", p))
        .map(|m| auth_settings(&m, istiod.as_ref(), p))
        .unwrap_or_else(|| {
            istiod
                .as_ref()
                .map(|i| AuthSettings::defaults_for(&i.version))
                .unwrap_or_else(|| AuthSettings::defaults_for(&IstioVersion::new(1, 30, 0)))
        });

    // replicas
    let mut replicas: Vec<Replica> = Vec::new();
    let mut replica_lines: HashMap<String, usize> = HashMap::new();
    let mut address_lines: HashMap<IpAddr, (usize, String)> = HashMap::new();
    match top.list("replicas", p) {
        Some([]) => p.add(
            top.get("replicas").map(line).unwrap_or(0),
            "replicas",
            "a mesh needs at least one istiod replica",
        ),
        Some(items) if items.len() > MAX_REPLICAS => p.add(
            top.get("replicas").map(line).unwrap_or(0),
            "replicas",
            format!(
                "{} replicas; at most {MAX_REPLICAS} (each binds two ports on its own address)",
                items.len()
            ),
        ),
        Some(items) => {
            for (i, n) in items.iter().enumerate() {
                let path = format!("replicas[{i}]");
                if let Some(m) = Map::of(n, &path, p)
                    && let Some((r, l)) = replica(&m, p)
                {
                    if let Some(first) = replica_lines.get(&r.name) {
                        p.add(
                            l,
                            m.field("name"),
                            format!(
                                "duplicate replica name {:?} (first at line {first})",
                                r.name
                            ),
                        );
                    } else {
                        // Two replicas cannot bind one address: refused
                        // here, with the line, not later by `serve`.
                        if let Some(a) = r.address {
                            let al = m.get("address").map(line).unwrap_or(l);
                            if let Some((first, other)) = address_lines.get(&a) {
                                p.add(
                                    al,
                                    m.field("address"),
                                    format!(
                                        "address {a} is already replica {}'s (line {first}); each replica needs its own",
                                        super::shown(other)
                                    ),
                                );
                            } else {
                                address_lines.insert(a, (al, r.name.clone()));
                            }
                        }
                        replica_lines.insert(r.name.clone(), l);
                        replicas.push(r);
                    }
                }
            }
        }
        None if top.get("replicas").is_none() => p.add(
            top.line(),
            "replicas",
            "missing required field (a list of istiod pods)",
        ),
        None => {}
    }
    let replica_version = |name: &str| -> Option<IstioVersion> {
        replicas
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.version.clone())
            .unwrap_or(None)
            .or_else(|| istiod.as_ref().map(|i| i.version.clone()))
    };

    // proxies
    let mut proxies: Vec<Proxy> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    if let Some(items) = top.list("proxies", p) {
        for (i, n) in items.iter().enumerate() {
            let path = format!("proxies[{i}]");
            let Some(m) = Map::of(n, &path, p) else {
                continue;
            };
            let Some((proxy, id_line)) = proxy(&m, &replica_lines, &replica_version, p) else {
                continue;
            };
            if let Some(first) = ids.get(&proxy.id) {
                p.add(
                    id_line,
                    m.field("id"),
                    format!("duplicate proxy id {:?} (first at line {first})", proxy.id),
                );
                continue;
            }
            ids.insert(proxy.id.clone(), id_line);
            proxies.push(proxy);
        }
    }

    // generators: all validated, and the total counted, before any is run (a
    // 200-byte file asked for ~25 GB); none runs when the file has problems.
    let mut generators = Vec::new();
    if let Some(items) = top.list("generate", p) {
        let mut total = proxies.len();
        for (i, n) in items.iter().enumerate() {
            let path = format!("generate[{i}]");
            let Some(m) = Map::of(n, &path, p) else {
                continue;
            };
            let Some(g) = generator(&m, &replica_lines, istiod.as_ref(), i, p) else {
                continue;
            };
            total = total.saturating_add(g.count);
            if total > MAX_PROXIES {
                let l = m.get("count").map(line).unwrap_or_else(|| m.line());
                p.add(
                    l,
                    m.field("count"),
                    format!(
                        "brings the scenario to {total} proxies (listed and generated); at most {MAX_PROXIES}"
                    ),
                );
                break;
            }
            generators.push((path, m.line(), g));
        }
    }
    // Without generators nothing is missing when the file has problems.
    let generated = generators.is_empty() || p.0.is_empty();
    if p.0.is_empty() {
        let names: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
        for (path, l, g) in generators {
            for proxy in g.proxies(&names) {
                if let Some(first) = ids.get(&proxy.id) {
                    p.add(
                        l,
                        path.clone(),
                        format!(
                            "generated proxy id {:?} is already used (line {first})",
                            proxy.id
                        ),
                    );
                    break;
                }
                ids.insert(proxy.id.clone(), l);
                proxies.push(proxy);
            }
        }
    }

    // faults naming proxies
    for (i, r) in replicas.iter().enumerate() {
        if let Some(Fault::Duplicate { proxy_id }) = &r.fault {
            let l = replica_lines.get(&r.name).copied().unwrap_or(0);
            match proxies.iter().find(|x| &x.id == proxy_id) {
                // It may be one of the proxies not generated.
                None if !generated => {}
                None => p.add(
                    l,
                    format!("replicas[{i}].fault.duplicate"),
                    format!("no proxy with id {proxy_id:?}"),
                ),
                Some(x) if x.replica == r.name => p.add(
                    l,
                    format!("replicas[{i}].fault.duplicate"),
                    format!("proxy {proxy_id:?} is already owned by this replica; name one owned by another"),
                ),
                Some(_) => {}
            }
        }
    }

    let istiod = istiod?;
    proxies.sort_by(|a, b| a.id.cmp(&b.id));
    Some(Scenario {
        source: source.to_string(),
        description,
        istiod,
        auth,
        replicas,
        proxies,
    })
}

fn istiod_settings(m: &Map, p: &mut Problems) -> Option<IstiodSettings> {
    m.only(&["version", "namespace", "revision"], p);
    let version = m
        .required_string("version", p)
        .and_then(|(s, l)| version_of(&s, l, &m.field("version"), p));
    let namespace = m
        .string("namespace", p)
        .map(|(s, l)| {
            check_dns_label(&s, l, &m.field("namespace"), p);
            s
        })
        .unwrap_or_else(|| proto::node::DEFAULT_ISTIO_NAMESPACE.to_string());
    let revision = m
        .string("revision", p)
        .map(|(s, _)| s)
        .unwrap_or_else(|| "default".to_string());
    Some(IstiodSettings {
        version: version?,
        namespace,
        revision,
    })
}

fn auth_settings(m: &Map, istiod: Option<&IstiodSettings>, p: &mut Problems) -> AuthSettings {
    m.only(
        &[
            "debug_endpoint_auth",
            "namespace_scoped",
            "allowed_namespaces",
            "plaintext_requires_auth",
        ],
        p,
    );
    let mut a = istiod
        .map(|i| AuthSettings::defaults_for(&i.version))
        .unwrap_or_else(|| AuthSettings::defaults_for(&IstioVersion::new(1, 30, 0)));
    if let Some(b) = m.bool("debug_endpoint_auth", p) {
        a.debug_endpoint_auth = b;
        a.explicit.debug_endpoint_auth = true;
    }
    if let Some(b) = m.bool("namespace_scoped", p) {
        a.namespace_scoped = b;
        a.explicit.namespace_scoped = true;
    }
    if let Some(b) = m.bool("plaintext_requires_auth", p) {
        a.plaintext_requires_auth = b;
    }
    if let Some(ns) = m.strings("allowed_namespaces", p) {
        a.allowed_namespaces = ns.into_iter().map(|(s, _)| s).collect();
    }
    a
}

fn check_dns_label(s: &str, l: usize, field: &str, p: &mut Problems) -> bool {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        p.add(
            l,
            field,
            format!("{s:?} is not a valid Kubernetes name (lowercase letters, digits and '-')"),
        );
    }
    ok
}

fn replica(m: &Map, p: &mut Problems) -> Option<(Replica, usize)> {
    m.only(&["name", "version", "revision", "address", "fault"], p);
    let (name, l) = m.required_string("name", p)?;
    check_dns_label(&name, l, &m.field("name"), p);
    let version = m
        .string("version", p)
        .and_then(|(s, l)| version_of(&s, l, &m.field("version"), p));
    let revision = m.string("revision", p).map(|(s, _)| s);
    let address = m
        .string("address", p)
        .and_then(|(s, l)| match s.parse::<IpAddr>() {
            Ok(a) if a.is_loopback() => Some(a),
            Ok(_) => {
                p.add(
                    l,
                    m.field("address"),
                    format!("{s} is not a loopback address (127.x.y.z or ::1)"),
                );
                None
            }
            Err(_) => {
                p.add(l, m.field("address"), format!("{s:?} is not an IP address"));
                None
            }
        });
    let fault = m.get("fault").and_then(|n| fault(n, &m.field("fault"), p));
    Some((
        Replica {
            name,
            version,
            revision,
            address,
            fault,
        },
        l,
    ))
}

const FAULT_KINDS: &str = "down, reset, hang, delay_ms, grpc_error, garbage, truncated, duplicate, flap_period_ms, poison";

/// `down` | `{delay_ms: 500}` | `{grpc_error: {code: Unavailable, message: ...}}` | `{duplicate: pod.ns}` | ...
pub fn fault_from_yaml(text: &str) -> Result<Fault, String> {
    let node =
        marked_yaml::parse_yaml_with_options(0, format!("fault: {text}"), LoaderOptions::default())
            .map_err(|e| e.to_string())?;
    let mut p = Problems::default();
    let f = node
        .as_mapping()
        .and_then(|m| m.get_node("fault"))
        .and_then(|n| fault(n, "fault", &mut p));
    match (f, p.0.first()) {
        (Some(f), None) => Ok(f),
        (_, Some(pr)) => Err(pr.message.clone()),
        (None, None) => Err("empty fault".into()),
    }
}

fn fault(node: &Node, field: &str, p: &mut Problems) -> Option<Fault> {
    let simple = |name: &str| match name {
        "down" => Some(Fault::Down),
        "reset" => Some(Fault::Reset),
        "hang" => Some(Fault::Hang),
        "garbage" => Some(Fault::Garbage),
        "truncated" => Some(Fault::Truncated),
        _ => None,
    };
    match node {
        Node::Scalar(s) => {
            let f = simple(s.as_str());
            if f.is_none() {
                p.add(
                    line(node),
                    field,
                    format!(
                        "unknown fault {:?}; expected one of: {FAULT_KINDS}",
                        s.as_str()
                    ),
                );
            }
            f
        }
        Node::Sequence(_) => {
            p.add(
                line(node),
                field,
                "expected one fault (a name or a one-key mapping), found a list",
            );
            None
        }
        Node::Mapping(mm) => {
            if mm.len() != 1 {
                p.add(
                    line(node),
                    field,
                    format!("expected exactly one fault kind, found {}", mm.len()),
                );
                return None;
            }
            let m = Map {
                node: mm,
                path: field.to_string(),
            };
            let (key, value) = mm.iter().next()?;
            let kl = span_line(key.span());
            match key.as_str() {
                k @ ("down" | "reset" | "hang" | "garbage" | "truncated") => match value {
                    Node::Scalar(s) if s.as_bool() == Some(true) || s.as_str().is_empty() => {
                        simple(k)
                    }
                    Node::Mapping(x) if x.is_empty() => simple(k),
                    _ => {
                        p.add(kl, m.field(k), "expected true or {}");
                        None
                    }
                },
                "delay_ms" => match m.u64("delay_ms", p) {
                    Some((n, l)) if n > MAX_FAULT_MS => {
                        p.add(
                            l,
                            m.field("delay_ms"),
                            format!("at most {MAX_FAULT_MS} (one hour)"),
                        );
                        None
                    }
                    Some((n, _)) => Some(Fault::Delay(Duration::from_millis(n))),
                    None => None,
                },
                "flap_period_ms" => match m.u64("flap_period_ms", p) {
                    Some((0, l)) => {
                        p.add(l, m.field("flap_period_ms"), "must be greater than 0");
                        None
                    }
                    Some((n, l)) if n > MAX_FAULT_MS => {
                        p.add(
                            l,
                            m.field("flap_period_ms"),
                            format!("at most {MAX_FAULT_MS} (one hour)"),
                        );
                        None
                    }
                    Some((n, _)) => Some(Fault::Flap {
                        period: Duration::from_millis(n),
                    }),
                    None => None,
                },
                "duplicate" => match value {
                    Node::Scalar(s) => Some(Fault::Duplicate {
                        proxy_id: s.as_str().to_string(),
                    }),
                    Node::Mapping(_) => {
                        let d = Map::of(value, &m.field("duplicate"), p)?;
                        d.only(&["proxy_id"], p);
                        d.required_string("proxy_id", p)
                            .map(|(id, _)| Fault::Duplicate { proxy_id: id })
                    }
                    _ => {
                        p.add(kl, m.field("duplicate"), "expected a proxy id");
                        None
                    }
                },
                "poison" => match value {
                    Node::Scalar(s) => match crate::poison::Poison::from_name(s.as_str()) {
                        Some(kind) => Some(Fault::Poison(kind)),
                        None => {
                            let names: Vec<&str> = crate::poison::Poison::ALL
                                .iter()
                                .map(|k| k.name())
                                .collect();
                            p.add(
                                kl,
                                m.field("poison"),
                                format!(
                                    "unknown poison {}; expected one of: {}",
                                    super::shown(s.as_str()),
                                    names.join(", ")
                                ),
                            );
                            None
                        }
                    },
                    _ => {
                        p.add(kl, m.field("poison"), "expected a poison kind (e.g. wire)");
                        None
                    }
                },
                "grpc_error" => {
                    let g = Map::of(value, &m.field("grpc_error"), p)?;
                    g.only(&["code", "message"], p);
                    let code = match g.required_string("code", p) {
                        Some((c, l)) => match c.parse::<i32>() {
                            Ok(n) if (1..=16).contains(&n) => Some(n),
                            Ok(_) => {
                                p.add(l, g.field("code"), "gRPC error code must be 1..16");
                                None
                            }
                            Err(_) => match grpc_code_from_name(&c) {
                                Some(0) | None => {
                                    p.add(
                                        l,
                                        g.field("code"),
                                        format!("{c:?} is not a gRPC error code (e.g. 14 or Unavailable)"),
                                    );
                                    None
                                }
                                Some(n) => Some(n),
                            },
                        },
                        None => None,
                    };
                    let message = g.string("message", p).map(|(s, _)| s).unwrap_or_default();
                    code.map(|code| Fault::GrpcError { code, message })
                }
                other => {
                    p.add(
                        kl,
                        m.field(other),
                        format!("unknown fault; expected one of: {FAULT_KINDS}"),
                    );
                    None
                }
            }
        }
    }
}

fn kind_of(s: &str, l: usize, field: &str, p: &mut Problems) -> Option<ProxyKind> {
    match s {
        "sidecar" => Some(ProxyKind::Sidecar),
        "gateway" | "router" => Some(ProxyKind::Gateway),
        "ztunnel" => Some(ProxyKind::Ztunnel),
        _ => {
            p.add(
                l,
                field,
                format!("unknown proxy kind {s:?}; expected sidecar, gateway or ztunnel"),
            );
            None
        }
    }
}

/// `types: { CDS: SYNCED, RDS: { status: ERROR, error: ..., last_updated: 5m } }`
fn types(node: &Node, field: &str, p: &mut Problems) -> Option<Vec<TypeStatus>> {
    let m = Map::of(node, field, p)?;
    let mut out: Vec<TypeStatus> = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, v) in m.node.iter() {
        let kl = span_line(k.span());
        let kf = m.field(k.as_str());
        let type_url = match proto::type_url::from_short_name(k.as_str()) {
            Some(t) => t.to_string(),
            None if k.as_str().starts_with("type.googleapis.com/") => k.as_str().to_string(),
            None => {
                p.add(
                    kl,
                    kf,
                    "unknown xDS type; use CDS, LDS, EDS, RDS, ECDS, SDS, WDS, WADS or a full type.googleapis.com/ URL",
                );
                continue;
            }
        };
        if !seen.insert(type_url.clone()) {
            p.add(kl, kf, "type listed twice");
            continue;
        }
        let status_of = |s: &str, l: usize, f: &str, p: &mut Problems| match SyncStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                p.add(
                    l,
                    f,
                    format!("unknown status {s:?}; expected SYNCED, STALE, NOT_SENT or ERROR"),
                );
                None
            }
        };
        let ts = match v {
            Node::Scalar(s) => status_of(s.as_str(), kl, &kf, p).map(|status| TypeStatus {
                type_url,
                status,
                error: (status == SyncStatus::Error).then(|| DEFAULT_NACK.to_string()),
                last_updated: None,
            }),
            Node::Mapping(_) => {
                let Some(tm) = Map::of(v, &kf, p) else {
                    continue;
                };
                tm.only(&["status", "error", "last_updated"], p);
                let status = tm
                    .required_string("status", p)
                    .and_then(|(s, l)| status_of(&s, l, &tm.field("status"), p));
                let error = tm.string("error", p);
                let last_updated = tm.string("last_updated", p).and_then(|(s, l)| {
                    match crate::timefmt::parse_duration(&s) {
                        Ok(d) => Some(LastUpdated::Ago(d)),
                        Err(age) => match crate::timefmt::parse_rfc3339(&s) {
                            Ok(t) => Some(LastUpdated::At(t)),
                            Err(time) => {
                                // Say what is wrong with what it looks like.
                                let message = if s.contains('T') && s.contains(':') {
                                    time
                                } else if s.trim().starts_with(|c: char| c.is_ascii_digit()) {
                                    age
                                } else {
                                    format!("{s:?} is neither an age (5m, 1h30m) nor an RFC 3339 time (2026-11-22T02:00:00Z)")
                                };
                                p.add(l, tm.field("last_updated"), message);
                                None
                            }
                        },
                    }
                });
                match (status, error) {
                    (Some(status), Some((_, l))) if status != SyncStatus::Error => {
                        p.add(l, tm.field("error"), "error details need status ERROR");
                        None
                    }
                    (Some(status), error) => Some(TypeStatus {
                        type_url,
                        status,
                        error: match (status, error) {
                            (SyncStatus::Error, None) => Some(DEFAULT_NACK.to_string()),
                            (_, e) => e.map(|(s, _)| s),
                        },
                        last_updated,
                    }),
                    (None, _) => None,
                }
            }
            Node::Sequence(_) => {
                p.add(
                    kl,
                    kf,
                    "expected a status or a mapping {status, error, last_updated}",
                );
                None
            }
        };
        out.extend(ts);
    }
    out.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    Some(out)
}

/// Upper bound of one generator (memory stays around 2 KiB per proxy).
const MAX_GENERATED: u64 = MAX_PROXIES as u64;

/// Most connections one proxy may hold in a scenario.
const MAX_CONNECTIONS: u64 = 4;

/// NACK details when the scenario gives none.
pub const DEFAULT_NACK: &str = "rejected by the proxy";

fn proxy(
    m: &Map,
    replicas: &HashMap<String, usize>,
    replica_version: &dyn Fn(&str) -> Option<IstioVersion>,
    p: &mut Problems,
) -> Option<(Proxy, usize)> {
    m.only(
        &[
            "id",
            "replica",
            "cluster",
            "namespace",
            "version",
            "kind",
            "types",
            "ip",
            "connections",
        ],
        p,
    );
    let before = p.0.len();
    let id = m.required_string("id", p);
    let (id, id_line) = match id {
        Some((id, l)) => match id.rsplit_once('.') {
            Some((pod, ns)) if !pod.is_empty() && !ns.is_empty() => (id, l),
            _ => {
                p.add(l, m.field("id"), format!("{id:?} is not <pod>.<namespace>"));
                return None;
            }
        },
        None => return None,
    };
    let replica = m.required_string("replica", p).and_then(|(r, l)| {
        if replicas.contains_key(&r) {
            Some(r)
        } else {
            let mut known: Vec<&str> = replicas.keys().map(|s| s.as_str()).collect();
            known.sort();
            p.add(
                l,
                m.field("replica"),
                format!("no replica named {r:?} (replicas: {})", known.join(", ")),
            );
            None
        }
    });
    let id_ns = id
        .rsplit_once('.')
        .map(|(_, ns)| ns)
        .unwrap_or_default()
        .to_string();
    let namespace = match m.string("namespace", p) {
        Some((ns, l)) if ns != id_ns => {
            p.add(
                l,
                m.field("namespace"),
                format!("{ns:?} differs from the id's namespace {id_ns:?}"),
            );
            ns
        }
        Some((ns, _)) => ns,
        None => id_ns,
    };
    let kind = match m.string("kind", p) {
        Some((k, l)) => kind_of(&k, l, &m.field("kind"), p),
        None => Some(ProxyKind::Sidecar),
    };
    let version = match m.string("version", p) {
        Some((v, l)) => version_of(&v, l, &m.field("version"), p),
        None => replica.as_deref().and_then(replica_version),
    };
    let cluster = m
        .string("cluster", p)
        .map(|(c, _)| c)
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    let types = m.get("types").map(|n| types(n, &m.field("types"), p));
    let ip = match m.string("ip", p) {
        Some((s, l)) => match s.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.add(l, m.field("ip"), format!("{s:?} is not an IP address"));
                None
            }
        },
        None => None,
    };
    // A reconnecting proxy: istiod lists it once per open connection.
    let connections = match m.u64("connections", p) {
        Some((n, _)) if (1..=MAX_CONNECTIONS).contains(&n) => n as u32,
        Some((n, l)) => {
            p.add(
                l,
                m.field("connections"),
                format!("{n} connections: expected 1 to {MAX_CONNECTIONS} (2 = a reconnecting proxy listed twice by its replica)"),
            );
            1
        }
        None => 1,
    };
    if p.0.len() != before {
        return None;
    }
    let kind = kind?;
    let mut proxy = Proxy::new(&id, &replica?, version?, kind);
    proxy.connections = connections;
    proxy.namespace = namespace;
    proxy.cluster = cluster;
    if let Some(t) = types {
        proxy.types = t?;
    }
    if let Some(ip) = ip {
        proxy.ip = ip;
    }
    Some((proxy, id_line))
}

fn generator(
    m: &Map,
    replicas: &HashMap<String, usize>,
    istiod: Option<&IstiodSettings>,
    index: usize,
    p: &mut Problems,
) -> Option<Generator> {
    m.only(
        &[
            "count",
            "namespaces",
            "replicas",
            "version",
            "kind",
            "cluster",
            "prefix",
            "types",
        ],
        p,
    );
    let before = p.0.len();
    let count = match m.u64("count", p) {
        Some((0, l)) => {
            p.add(l, m.field("count"), "must be at least 1");
            None
        }
        Some((n, l)) if n > MAX_GENERATED => {
            p.add(
                l,
                m.field("count"),
                format!("at most {MAX_GENERATED} proxies per generator"),
            );
            None
        }
        Some((n, _)) => Some(n as usize),
        None => {
            if m.get("count").is_none() {
                p.add(m.line(), m.field("count"), "missing required field");
            }
            None
        }
    };
    let namespaces = match m.u64("namespaces", p) {
        Some((0, l)) => {
            p.add(l, m.field("namespaces"), "must be at least 1");
            1
        }
        Some((n, _)) => n as usize,
        None => 1,
    };
    let only_replicas = match m.get("replicas") {
        None => None,
        Some(Node::Scalar(s)) if s.as_str() == "all" => None,
        Some(Node::Scalar(s)) => {
            p.add(
                span_line(s.span()),
                m.field("replicas"),
                "expected `all` or a list of replica names",
            );
            None
        }
        Some(_) => m.strings("replicas", p).map(|names| {
            names
                .into_iter()
                .filter_map(|(n, l)| {
                    if replicas.contains_key(&n) {
                        Some(n)
                    } else {
                        p.add(l, m.field("replicas"), format!("no replica named {n:?}"));
                        None
                    }
                })
                .collect::<Vec<_>>()
        }),
    };
    let version = match m.string("version", p) {
        Some((v, l)) => version_of(&v, l, &m.field("version"), p),
        None => istiod.map(|i| i.version.clone()),
    };
    let kind = match m.string("kind", p) {
        Some((k, l)) => kind_of(&k, l, &m.field("kind"), p),
        None => Some(ProxyKind::Sidecar),
    };
    let cluster = m
        .string("cluster", p)
        .map(|(c, _)| c)
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    let prefix = m
        .string("prefix", p)
        .map(|(s, l)| {
            check_dns_label(&s, l, &m.field("prefix"), p);
            s
        })
        .unwrap_or_else(|| {
            format!(
                "workload{}",
                if index == 0 {
                    String::new()
                } else {
                    index.to_string()
                }
            )
        });
    let types = m.get("types").and_then(|n| types(n, &m.field("types"), p));
    if p.0.len() != before {
        return None;
    }
    Some(Generator {
        count: count?,
        namespaces,
        replicas: only_replicas,
        version: version?,
        kind: kind?,
        cluster,
        prefix,
        types,
    })
}
