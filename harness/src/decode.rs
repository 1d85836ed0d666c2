//! Decoding istiod's debug responses the way istioctl does: the ControlPlane
//! identity (`multixds.CpInfo`), every `ClientConfig` shape (legacy `xds_config`
//! and `generic_xds_configs`, `handleAndGetXdsConfigs`) and the node metadata
//! istioctl reads (`model.ParseMetadata`: `CLUSTER_ID`, `NAMESPACE`, `ISTIO_VERSION`).

use prost::Message;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::envoy::envoy::service::status::v3::{
    ClientConfig, ConfigStatus, per_xds_config::PerXdsConfig as PerXdsKind,
};
use proto::envoy::google::protobuf::{Any, Struct, Value, value::Kind};
use proto::type_url;
use serde_json::Value as Json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The ClientConfig message name istioctl's `UnmarshalTo` expects.
const CLIENT_CONFIG_NAME: &str = "envoy.service.status.v3.ClientConfig";

/// How istioctl saw a response's ControlPlane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlaneKind {
    /// `control_plane.identifier` parsed as JSON.
    Valid,
    /// No `control_plane` at all: ID `MISSING`, version `MISSING CP ID`.
    Missing,
    /// Not JSON istioctl can read: ID `INVALID`, version `INVALID CP ID`.
    Invalid,
}

/// `multixds.CpInfo(response)`: the identity istioctl keys responses by and
/// shows in the ISTIOD (and, before 1.19, VERSION) column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneIdentity {
    pub kind: ControlPlaneKind,
    pub component: String,
    /// The ISTIOD column; the key of istioctl's response map.
    pub id: String,
    /// `Info.version`: the VERSION column of istioctl 1.8-1.18.
    pub version: String,
    pub revision: String,
    pub golang_version: String,
    pub status: String,
    pub tag: String,
}

impl ControlPlaneIdentity {
    fn placeholder(kind: ControlPlaneKind, word: &str) -> Self {
        ControlPlaneIdentity {
            kind,
            component: word.to_string(),
            id: word.to_string(),
            version: format!("{word} CP ID"),
            revision: String::new(),
            golang_version: String::new(),
            status: String::new(),
            tag: String::new(),
        }
    }

    /// What `CpInfo` returns for this response.
    pub fn of(resp: &DiscoveryResponse) -> Self {
        match &resp.control_plane {
            None => Self::placeholder(ControlPlaneKind::Missing, proto::control_plane::MISSING_ID),
            Some(cp) => parse_identifier(&cp.identifier).unwrap_or_else(|| {
                Self::placeholder(ControlPlaneKind::Invalid, proto::control_plane::INVALID_ID)
            }),
        }
    }
}

/// Go's `json.Unmarshal` into `IstioControlPlaneInstance`: an object (or `null`),
/// field names matched case-insensitively, unknown fields ignored, `null` leaves
/// a field empty, a value of the wrong type is an error.
fn parse_identifier(identifier: &str) -> Option<ControlPlaneIdentity> {
    let json: Json = serde_json::from_str(identifier).ok()?;
    let mut cp = ControlPlaneIdentity {
        kind: ControlPlaneKind::Valid,
        component: String::new(),
        id: String::new(),
        version: String::new(),
        revision: String::new(),
        golang_version: String::new(),
        status: String::new(),
        tag: String::new(),
    };
    let obj = match json {
        Json::Null => return Some(cp),
        Json::Object(o) => o,
        _ => return None,
    };
    for (key, value) in &obj {
        if key.eq_ignore_ascii_case("Component") {
            go_string(value, &mut cp.component)?;
        } else if key.eq_ignore_ascii_case("ID") {
            go_string(value, &mut cp.id)?;
        } else if key.eq_ignore_ascii_case("Info") {
            let info = match value {
                Json::Null => continue,
                Json::Object(o) => o,
                _ => return None,
            };
            for (k, v) in info {
                let target = match k.to_ascii_lowercase().as_str() {
                    "version" => &mut cp.version,
                    "revision" => &mut cp.revision,
                    "golang_version" => &mut cp.golang_version,
                    "status" => &mut cp.status,
                    "tag" => &mut cp.tag,
                    _ => continue,
                };
                go_string(v, target)?;
            }
        }
    }
    Some(cp)
}

/// Assigns a JSON string like Go does (`null` keeps the old value); `None` on a type error.
fn go_string(value: &Json, target: &mut String) -> Option<()> {
    match value {
        Json::Null => Some(()),
        Json::String(s) => {
            *target = s.clone();
            Some(())
        }
        _ => None,
    }
}

/// Why a response could not be decoded (texts are istioctl's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("could not unmarshal ClientConfig: {0}")]
    ClientConfig(String),
    #[error("could not parse node metadata: {0}")]
    Metadata(String),
}

/// Decodes one syncz resource like `resource.UnmarshalTo(&clientConfig)`.
pub fn client_config(resource: &Any) -> Result<ClientConfig, DecodeError> {
    let name = resource.type_url.rsplit('/').next().unwrap_or_default();
    if name != CLIENT_CONFIG_NAME {
        // anypb.UnmarshalTo: `got` is the destination's name, `want` the Any's;
        // protoimpl errors carry a `proto: ` prefix (whose space golang/protobuf
        // randomises per binary between U+0020 and U+00A0; we print U+0020).
        return Err(DecodeError::ClientConfig(format!(
            "proto: mismatched message type: got {CLIENT_CONFIG_NAME:?}, want {name:?}"
        )));
    }
    ClientConfig::decode(resource.value.as_slice()).map_err(|_| {
        DecodeError::ClientConfig("proto: cannot parse invalid wire-format data".to_string())
    })
}

/// The node metadata fields istioctl reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetadata {
    /// `CLUSTER_ID`: the CLUSTER column.
    pub cluster_id: String,
    /// `NAMESPACE`: what `--namespace` filters on.
    pub namespace: String,
    /// `ISTIO_VERSION`: the VERSION column since istioctl 1.19.
    pub istio_version: String,
}

/// `model.ParseMetadata`: absent metadata is empty; a field of the wrong type is an error.
pub fn node_metadata(node: Option<&Node>) -> Result<NodeMetadata, DecodeError> {
    let mut meta = NodeMetadata::default();
    let Some(st) = node.and_then(|n| n.metadata.as_ref()) else {
        return Ok(meta);
    };
    let mut keys: Vec<&String> = st.fields.keys().collect();
    keys.sort();
    for key in keys {
        let target = if key.eq_ignore_ascii_case("CLUSTER_ID") {
            &mut meta.cluster_id
        } else if key.eq_ignore_ascii_case("NAMESPACE") {
            &mut meta.namespace
        } else if key.eq_ignore_ascii_case("ISTIO_VERSION") {
            &mut meta.istio_version
        } else {
            continue;
        };
        match st.fields[key].kind.as_ref() {
            None | Some(Kind::NullValue(_)) => {}
            Some(Kind::StringValue(s)) => *target = s.clone(),
            Some(other) => {
                return Err(DecodeError::Metadata(format!(
                    "failed to unmarshal node metadata ({}): json: cannot unmarshal {} into Go struct field NodeMetadata.{} of type string",
                    struct_to_json(st),
                    json_kind_name(other),
                    key
                )));
            }
        }
    }
    Ok(meta)
}

fn json_kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::NullValue(_) => "null",
        Kind::NumberValue(_) => "number",
        Kind::StringValue(_) => "string",
        Kind::BoolValue(_) => "bool",
        Kind::StructValue(_) => "object",
        Kind::ListValue(_) => "array",
    }
}

/// A protobuf `Struct` as compact JSON with sorted keys.
pub fn struct_to_json(st: &Struct) -> String {
    serde_json::to_string(&struct_value(st)).unwrap_or_default()
}

fn struct_value(st: &Struct) -> Json {
    let mut keys: Vec<&String> = st.fields.keys().collect();
    keys.sort();
    Json::Object(
        keys.into_iter()
            .map(|k| (k.clone(), value_json(&st.fields[k])))
            .collect(),
    )
}

fn value_json(v: &Value) -> Json {
    match v.kind.as_ref() {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StructValue(s)) => struct_value(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_json).collect()),
    }
}

/// One xDS type of one proxy, as `handleAndGetXdsConfigs` yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTypeStatus {
    pub type_url: String,
    /// Raw `ConfigStatus` number (unknown numbers are kept, as Go keeps them).
    pub status: i32,
    /// `last_updated`, when istiod set it (1.23+).
    pub last_updated: Option<SystemTime>,
    /// `error_state.details` (NACK), when set.
    pub error_details: Option<String>,
}

impl XdsTypeStatus {
    /// Go's `ConfigStatus.String()`: the enum name, or the number when unknown.
    pub fn status_name(&self) -> String {
        config_status_name(self.status)
    }
}

/// Go's `ConfigStatus.String()`.
pub fn config_status_name(status: i32) -> String {
    match ConfigStatus::try_from(status) {
        Ok(s) => s.as_str_name().to_string(),
        Err(_) => status.to_string(),
    }
}

/// `handleAndGetXdsConfigs`: `generic_xds_configs` when present, else the
/// legacy `xds_config` mapped to type URLs (scoped routes are dropped).
pub fn xds_configs(cc: &ClientConfig) -> Vec<XdsTypeStatus> {
    if !cc.generic_xds_configs.is_empty() {
        return cc
            .generic_xds_configs
            .iter()
            .map(|g| XdsTypeStatus {
                type_url: g.type_url.clone(),
                status: g.config_status,
                last_updated: g
                    .last_updated
                    .as_ref()
                    .map(|t| timestamp(t.seconds, t.nanos)),
                error_details: g
                    .error_state
                    .as_ref()
                    .map(|e| e.details.clone())
                    .filter(|d| !d.is_empty()),
            })
            .collect();
    }
    legacy_xds_configs(cc)
}

/// Only the deprecated `xds_config`, mapped to type URLs (scoped routes
/// dropped): all istioctl 1.8-1.11 read (`getSyncStatus(clientConfig.GetXdsConfig())`).
pub fn legacy_xds_configs(cc: &ClientConfig) -> Vec<XdsTypeStatus> {
    #[allow(deprecated)]
    let legacy = &cc.xds_config;
    legacy
        .iter()
        .filter_map(|p| {
            let type_url = match p.per_xds_config.as_ref()? {
                PerXdsKind::ListenerConfig(_) => type_url::LISTENER,
                PerXdsKind::ClusterConfig(_) => type_url::CLUSTER,
                PerXdsKind::RouteConfig(_) => type_url::ROUTE,
                PerXdsKind::EndpointConfig(_) => type_url::ENDPOINT,
                PerXdsKind::ScopedRouteConfig(_) => return None,
            };
            Some(XdsTypeStatus {
                type_url: type_url.to_string(),
                status: p.status,
                last_updated: None,
                error_details: None,
            })
        })
        .collect()
}

/// A protobuf timestamp as a `SystemTime` (saturating at the epoch's range).
pub fn timestamp(seconds: i64, nanos: i32) -> SystemTime {
    let nanos = nanos.clamp(0, 999_999_999) as u32;
    if seconds >= 0 {
        UNIX_EPOCH + Duration::new(seconds as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
            + Duration::from_nanos(nanos.into())
    }
}

/// One proxy of a syncz response, with everything any istioctl family shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyStatus {
    /// `node.id`: `<pod>.<namespace>`.
    pub proxy_id: String,
    pub metadata: NodeMetadata,
    pub xds: Vec<XdsTypeStatus>,
    /// The ControlPlane ID of the response that carried this proxy (ISTIOD column).
    pub istiod_id: String,
    /// The ControlPlane `Info.version` of that response.
    pub istiod_version: String,
}

impl ProxyStatus {
    /// The status of one type, if the proxy reports it.
    pub fn status_of(&self, type_url: &str) -> Option<&XdsTypeStatus> {
        self.xds.iter().rev().find(|x| x.type_url == type_url)
    }
}

/// A decoded syncz response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syncz {
    /// The identity istioctl keys the response by.
    pub control_plane: ControlPlaneIdentity,
    /// One entry per ClientConfig, in response order.
    pub proxies: Vec<ProxyStatus>,
}

/// Decodes a syncz response as istioctl 1.22+ does: every resource must be a
/// ClientConfig with readable metadata.
pub fn decode_syncz(resp: &DiscoveryResponse) -> Result<Syncz, DecodeError> {
    let control_plane = ControlPlaneIdentity::of(resp);
    let mut proxies = Vec::with_capacity(resp.resources.len());
    for resource in &resp.resources {
        let cc = client_config(resource)?;
        let metadata = node_metadata(cc.node.as_ref())?;
        proxies.push(ProxyStatus {
            proxy_id: cc.node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
            metadata,
            xds: xds_configs(&cc),
            istiod_id: control_plane.id.clone(),
            istiod_version: control_plane.version.clone(),
        });
    }
    Ok(Syncz {
        control_plane,
        proxies,
    })
}

/// `proxy-status <pod>.<ns>`: istioctl takes the first response with any
/// resources as the config dump (`compare.NewXdsComparator`).
pub fn config_dump_found<'a, I>(responses: I) -> bool
where
    I: IntoIterator<Item = &'a DiscoveryResponse>,
{
    responses.into_iter().any(|r| !r.resources.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envoy::envoy::config::core::v3::ControlPlane;
    use proto::{BuildInfo, IstioControlPlaneInstance};

    fn resp(identifier: Option<&str>) -> DiscoveryResponse {
        DiscoveryResponse {
            control_plane: identifier.map(|i| ControlPlane {
                identifier: i.to_string(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn control_plane_identity_like_cpinfo() {
        let json =
            IstioControlPlaneInstance::istiod("istiod-1", BuildInfo::release("1.12.1")).to_json();
        let cp = ControlPlaneIdentity::of(&resp(Some(&json)));
        assert_eq!(
            (cp.kind, cp.id.as_str(), cp.version.as_str()),
            (ControlPlaneKind::Valid, "istiod-1", "1.12.1")
        );

        let cp = ControlPlaneIdentity::of(&resp(None));
        assert_eq!(
            (cp.id.as_str(), cp.version.as_str()),
            ("MISSING", "MISSING CP ID")
        );
        for bad in [
            "",
            "{",
            "[]",
            "\"x\"",
            r#"{"ID":5}"#,
            r#"{"Info":{"version":1}}"#,
            "{} x",
        ] {
            let cp = ControlPlaneIdentity::of(&resp(Some(bad)));
            assert_eq!(
                (cp.id.as_str(), cp.version.as_str()),
                ("INVALID", "INVALID CP ID"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn identifier_parsing_follows_go_json() {
        // Case-insensitive names, null keeps empty, unknown fields ignored.
        let cp = ControlPlaneIdentity::of(&resp(Some(
            r#"{"id":"a","info":{"VERSION":"1.2"},"x":[1]}"#,
        )));
        assert_eq!((cp.id.as_str(), cp.version.as_str()), ("a", "1.2"));
        let cp = ControlPlaneIdentity::of(&resp(Some("null")));
        assert_eq!((cp.kind, cp.id.as_str()), (ControlPlaneKind::Valid, ""));
        let cp = ControlPlaneIdentity::of(&resp(Some(r#" {"ID":null} "#)));
        assert_eq!((cp.kind, cp.id.as_str()), (ControlPlaneKind::Valid, ""));
    }

    #[test]
    fn wrong_resource_type_is_istioctls_error() {
        let any = Any {
            type_url: type_url::CONFIG_DUMP_RESOURCE.into(),
            value: vec![],
        };
        assert_eq!(
            client_config(&any).unwrap_err().to_string(),
            r#"could not unmarshal ClientConfig: proto: mismatched message type: got "envoy.service.status.v3.ClientConfig", want "envoy.admin.v3.ConfigDump""#
        );
        let any = Any {
            type_url: type_url::CLIENT_CONFIG.into(),
            value: vec![0xff, 0xff],
        };
        assert!(client_config(&any).is_err());
    }

    #[test]
    fn metadata_type_errors() {
        let mut st = Struct::default();
        st.fields.insert(
            "CLUSTER_ID".into(),
            Value {
                kind: Some(Kind::NumberValue(3.0)),
            },
        );
        let node = Node {
            metadata: Some(st),
            ..Default::default()
        };
        let err = node_metadata(Some(&node)).unwrap_err().to_string();
        assert!(err.starts_with("could not parse node metadata: "), "{err}");
        assert!(err.contains("cannot unmarshal number"), "{err}");
        assert_eq!(node_metadata(None), Ok(NodeMetadata::default()));
    }

    #[test]
    fn unknown_status_numbers_print_like_go() {
        assert_eq!(config_status_name(2), "NOT_SENT");
        assert_eq!(config_status_name(42), "42");
    }
}
