//! What the proxy forwards must decode the way istioctl will decode it: every
//! syncz row as a whole `ClientConfig`, every config_dump section as its
//! `envoy.admin.v3` type (and the resource inside each of its entries). One
//! row that does not decode makes istioctl print no table at all
//! (`istioctl/pkg/writer/pilot/status.go` `setupStatusPrint`:
//! `resource.UnmarshalTo(&clientConfig)` fails the whole command), so a
//! replica that sends one is treated as a failed replica, named.
//!
//! prost is the decoder here (the same schema as Go's generated code, and
//! the fuzz targets' oracle). It is stricter in one place: prost refuses
//! messages nested deeper than 100 levels, Go's protobuf 10,000
//! (`google.golang.org/protobuf/proto/decode.go`, `protowire.DefaultRecursionLimit`):
//! a row nested that deep is refused, which only costs a row no real istiod sends.

use crate::wire::{self, Malformed};
use prost::Message;
use proto::envoy::envoy::admin::v3 as admin;
use proto::envoy::envoy::config::cluster::v3::Cluster;
use proto::envoy::envoy::config::listener::v3::Listener;
use proto::envoy::envoy::config::route::v3::RouteConfiguration;
use proto::envoy::envoy::service::status::v3::ClientConfig;
use proto::envoy::google::protobuf::Any;
use proto::type_url;

/// A row that does not decode: where, whose node (when that much reads), why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub index: usize,
    pub node: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {}", self.index)?;
        if let Some(node) = &self.node {
            write!(f, " (node {})", crate::validate::shown(node))?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The rows of an answer that do not decode: how many, and the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRows {
    pub count: usize,
    pub total: usize,
    pub first: BadRow,
}

impl std::fmt::Display for BadRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} resources do not decode as istioctl decodes them; first: {}",
            self.count, self.total, self.first
        )
    }
}

/// Counts bad rows as they are met; keeps the first.
#[derive(Debug, Default)]
pub struct Tally {
    count: usize,
    first: Option<BadRow>,
}

impl Tally {
    pub fn add(&mut self, index: usize, node: Option<&str>, reason: impl std::fmt::Display) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(BadRow {
                index,
                node: node.map(str::to_string),
                reason: reason.to_string(),
            });
        }
    }

    /// `Err` if any row was bad.
    pub fn finish(self, total: usize) -> Result<(), BadRows> {
        match self.first {
            None => Ok(()),
            Some(first) => Err(BadRows {
                count: self.count,
                total,
                first,
            }),
        }
    }
}

/// Values echoed in errors and logs: control characters escaped, long ones
/// cut (with their length).
pub fn shown(s: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = s
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect::<String>();
    let n = s.chars().count();
    if n > MAX {
        out.push_str(&format!("… ({n} characters)"));
    }
    out
}

/// One syncz row, fully: the `Any` (every `type_url` occurrence UTF-8), its
/// type (ClientConfig), the whole `ClientConfig` as istioctl decodes it.
/// Returns the node id.
pub fn syncz_row(resource: &[u8]) -> Result<&str, (Option<&str>, Malformed)> {
    let (type_url, value) = wire::scan_any_raw(resource).map_err(|e| (None, e))?;
    if type_url != type_url::CLIENT_CONFIG.as_bytes() {
        return Err((
            None,
            Malformed::new(format!(
                "syncz resource of type {:?}, expected ClientConfig",
                shown(&String::from_utf8_lossy(type_url))
            )),
        ));
    }
    let id = wire::client_config_id(value).map_err(|e| (None, e))?;
    client_config(value).map_err(|e| (Some(id), e))?;
    Ok(id)
}

/// A `ClientConfig` decodes as istioctl decodes it.
pub fn client_config(value: &[u8]) -> Result<(), Malformed> {
    ClientConfig::decode(value)
        .map(drop)
        .map_err(|e| Malformed::new(format!("ClientConfig does not decode: {e}")))
}

/// One config_dump section (`envoy.admin.v3.*ConfigDump` in an `Any`) and
/// the resource in each of its entries, as istioctl's comparator reads
/// them (`istioctl/pkg/writer/compare/comparator.go` `NewXdsComparator`:
/// the sections become an `admin.ConfigDump` rendered through protojson,
/// which resolves every `Any` of a known type). Sections of types it does
/// not know are passed as they are (its resolver ignores them).
pub fn config_dump_section(resource: &[u8]) -> Result<(), Malformed> {
    let (type_url, value) = wire::scan_any(resource)?;
    let bad = |what: &str, e: prost::DecodeError| Malformed::new(format!("{what}: {e}"));
    let name = type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "envoy.admin.v3.BootstrapConfigDump" => {
            admin::BootstrapConfigDump::decode(value).map_err(|e| bad(name, e))?;
        }
        "envoy.admin.v3.ClustersConfigDump" => {
            let d = admin::ClustersConfigDump::decode(value).map_err(|e| bad(name, e))?;
            let statics = d.static_clusters.iter().map(|c| c.cluster.as_ref());
            let dynamics = d
                .dynamic_active_clusters
                .iter()
                .chain(&d.dynamic_warming_clusters)
                .map(|c| c.cluster.as_ref());
            for any in statics.chain(dynamics).flatten() {
                inner::<Cluster>(any)?;
            }
        }
        "envoy.admin.v3.ListenersConfigDump" => {
            let d = admin::ListenersConfigDump::decode(value).map_err(|e| bad(name, e))?;
            for any in d
                .static_listeners
                .iter()
                .filter_map(|l| l.listener.as_ref())
            {
                inner::<Listener>(any)?;
            }
            for l in &d.dynamic_listeners {
                let states = [&l.active_state, &l.warming_state, &l.draining_state];
                for any in states
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.listener.as_ref())
                {
                    inner::<Listener>(any)?;
                }
            }
        }
        "envoy.admin.v3.RoutesConfigDump" => {
            let d = admin::RoutesConfigDump::decode(value).map_err(|e| bad(name, e))?;
            let statics = d
                .static_route_configs
                .iter()
                .map(|r| r.route_config.as_ref());
            let dynamics = d
                .dynamic_route_configs
                .iter()
                .map(|r| r.route_config.as_ref());
            for any in statics.chain(dynamics).flatten() {
                inner::<RouteConfiguration>(any)?;
            }
        }
        "envoy.admin.v3.ScopedRoutesConfigDump" => {
            admin::ScopedRoutesConfigDump::decode(value).map_err(|e| bad(name, e))?;
        }
        "envoy.admin.v3.SecretsConfigDump" => {
            admin::SecretsConfigDump::decode(value).map_err(|e| bad(name, e))?;
        }
        "envoy.admin.v3.EcdsConfigDump" => {
            admin::EcdsConfigDump::decode(value).map_err(|e| bad(name, e))?;
        }
        "envoy.admin.v3.EndpointsConfigDump" => {
            admin::EndpointsConfigDump::decode(value).map_err(|e| bad(name, e))?;
        }
        _ => {}
    }
    Ok(())
}

/// The resource inside a section's entry, when its type is the expected one.
fn inner<M: Message + Default + prost::Name>(any: &Any) -> Result<(), Malformed> {
    if any.type_url.rsplit('/').next() != Some(M::full_name().as_str()) {
        return Ok(());
    }
    M::decode(any.value.as_slice())
        .map(drop)
        .map_err(|e| Malformed::new(format!("{}: {e}", M::full_name())))
}

/// Every section of a config_dump answer.
pub fn config_dump(resources: &[prost::bytes::Bytes]) -> Result<(), BadRows> {
    let mut tally = Tally::default();
    for (i, r) in resources.iter().enumerate() {
        if let Err(e) = config_dump_section(r) {
            tally.add(i, None, e);
        }
    }
    tally.finish(resources.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envoy::envoy::config::core::v3::Node;

    /// The issue's reproducer: node `poison-1.hns1`, then one garbage byte
    /// where `generic_xds_configs` starts.
    pub(crate) fn poison_1() -> Vec<u8> {
        let mut any = vec![0x0a, 0x38];
        any.extend_from_slice(type_url::CLIENT_CONFIG.as_bytes());
        any.extend_from_slice(&hex("12140a0f0a0d706f69736f6e2d312e686e73311a01ff"));
        any
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn good(id: &str) -> Vec<u8> {
        let cc = ClientConfig {
            node: Some(Node {
                id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Any {
            type_url: type_url::CLIENT_CONFIG.into(),
            value: cc.encode_to_vec(),
        }
        .encode_to_vec()
    }

    #[test]
    fn the_issue_reproducer_is_refused_with_its_node() {
        let row = poison_1();
        assert_eq!(type_url::CLIENT_CONFIG.len(), 0x38);
        // What the merge used to check passes…
        let (_, value) = wire::scan_any_raw(&row).unwrap();
        assert_eq!(wire::client_config_id(value).unwrap(), "poison-1.hns1");
        // …what istioctl decodes does not.
        let (node, e) = syncz_row(&row).unwrap_err();
        assert_eq!(node, Some("poison-1.hns1"));
        assert!(
            e.to_string().contains("ClientConfig does not decode"),
            "{e}"
        );
        assert_eq!(syncz_row(&good("a.ns")).unwrap(), "a.ns");
    }

    #[test]
    fn an_invalid_type_url_before_a_valid_one_is_refused() {
        let mut row = vec![0x0a, 0x01, 0xff];
        row.extend_from_slice(&good("a.ns"));
        assert!(Any::decode(row.as_slice()).is_err());
        assert!(syncz_row(&row).is_err());
    }

    #[test]
    fn a_varint_where_xds_config_belongs_is_refused() {
        // ClientConfig { node {id "a"}, xds_config (2) as varint 1 }
        let mut value = Node {
            id: "a".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let mut cc = vec![0x0a, value.len() as u8];
        cc.append(&mut value);
        cc.extend_from_slice(&[0x10, 0x01]);
        let row = Any {
            type_url: type_url::CLIENT_CONFIG.into(),
            value: cc,
        }
        .encode_to_vec();
        assert!(syncz_row(&row).is_err());
    }

    #[test]
    fn an_any_nested_100_groups_deep_is_refused() {
        use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
        // As istioctl's client reads it: the Any inside a DiscoveryResponse.
        let in_response = |row: &[u8]| {
            let mut resp = vec![0x12];
            prost::encoding::encode_varint(row.len() as u64, &mut resp);
            resp.extend_from_slice(row);
            DiscoveryResponse::decode(resp.as_slice()).is_ok()
        };
        let deep = nested_groups(100);
        assert!(!in_response(&deep));
        assert!(syncz_row(&deep).is_err());
        let ok = nested_groups(99);
        assert!(in_response(&ok));
        assert_eq!(syncz_row(&ok).unwrap(), "a");
    }

    /// A ClientConfig row whose Any has an unknown field 3 made of `depth`
    /// nested groups.
    pub(crate) fn nested_groups(depth: usize) -> Vec<u8> {
        let mut any = Any {
            type_url: type_url::CLIENT_CONFIG.into(),
            value: vec![0x0a, 0x03, 0x0a, 0x01, b'a'],
        }
        .encode_to_vec();
        any.extend(std::iter::repeat_n(0x1b, depth)); // field 3, start group
        any.extend(std::iter::repeat_n(0x1c, depth)); // field 3, end group
        any
    }

    #[test]
    fn config_dump_sections_are_decoded_with_their_entries() {
        let good = Any {
            type_url: "type.googleapis.com/envoy.admin.v3.ClustersConfigDump".into(),
            value: admin::ClustersConfigDump::default().encode_to_vec(),
        }
        .encode_to_vec();
        assert!(config_dump_section(&good).is_ok());
        let bad = Any {
            type_url: "type.googleapis.com/envoy.admin.v3.ClustersConfigDump".into(),
            value: vec![0x12, 0x05, 0x01],
        }
        .encode_to_vec();
        assert!(config_dump_section(&bad).is_err());
        // A dynamic cluster whose Cluster does not decode.
        let inner_bad = admin::ClustersConfigDump {
            dynamic_active_clusters: vec![admin::clusters_config_dump::DynamicCluster {
                cluster: Some(Any {
                    type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                    value: vec![0x0a, 0x01, 0xff],
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let section = Any {
            type_url: "type.googleapis.com/envoy.admin.v3.ClustersConfigDump".into(),
            value: inner_bad.encode_to_vec(),
        }
        .encode_to_vec();
        assert!(config_dump_section(&section).is_err());
        let unknown = Any {
            type_url: "type.googleapis.com/x.Unknown".into(),
            value: vec![0xff],
        }
        .encode_to_vec();
        assert!(config_dump_section(&unknown).is_ok());
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown("a\u{1b}[31m\0"), "a\\u{1b}[31m\\0");
        let long = "x".repeat(1_000_000);
        let s = shown(&long);
        assert!(s.len() < 200 && s.ends_with("(1000000 characters)"), "{s}");
    }
}
