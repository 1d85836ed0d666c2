//! Per istiod family: the decoded syncz ClientConfigs and the ControlPlane
//! identity JSON, as snapshots (fixed clock).

use fake_istiod::Proxy;
use fake_istiod::Scenario;
use fake_istiod::mesh::ReplicaIdentity;
use fake_istiod::mesh::SplitMix;
use fake_istiod::syncz::answer;
use prost::Message;
use proto::envoy::envoy::service::status::v3::{ClientConfig, ConfigStatus};
use proto::envoy::google::protobuf::{Struct, value::Kind};
use proto::{IstioVersion, type_url};
use rstest::rstest;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MESH: &str = r#"
istiod: { version: 1.30.0 }
replicas: [ { name: istiod-5c8f6d7b9-x1y2z } ]
proxies:
  - id: productpage-v1-6b746f74dc-9stvs.bookinfo
    replica: istiod-5c8f6d7b9-x1y2z
    version: 1.22.3
    types: { CDS: SYNCED, LDS: SYNCED, EDS: SYNCED, RDS: { status: STALE, last_updated: 2m } }
  - id: reviews-v2-7bf8c9648f-7mbk5.bookinfo
    replica: istiod-5c8f6d7b9-x1y2z
    cluster: east
    types:
      CDS: SYNCED
      LDS: { status: ERROR, error: "Error adding/updating listener(s) 0.0.0.0_9080: duplicate listener", last_updated: 30s }
      EDS: NOT_SENT
      ECDS: SYNCED
  - id: ztunnel-8xk2p.istio-system
    replica: istiod-5c8f6d7b9-x1y2z
    kind: ztunnel
"#;

fn node_id(c: &ClientConfig) -> &str {
    c.node.as_ref().map(|n| n.id.as_str()).unwrap_or_default()
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn metadata(s: &Struct) -> Value {
    let sorted: BTreeMap<&String, Value> = s
        .fields
        .iter()
        .map(|(k, v)| {
            let v = match &v.kind {
                Some(Kind::StringValue(s)) => json!(s),
                Some(Kind::StructValue(st)) => metadata(st),
                other => json!(format!("{other:?}")),
            };
            (k, v)
        })
        .collect();
    json!(sorted)
}

fn status_name(n: i32) -> &'static str {
    ConfigStatus::try_from(n)
        .map(|s| s.as_str_name())
        .unwrap_or("INVALID")
}

/// RFC 3339, with Go's zero time (before the Unix epoch) spelled out.
fn time(t: &proto::envoy::google::protobuf::Timestamp) -> String {
    if t.seconds == -62_135_596_800 && t.nanos == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    match u64::try_from(t.seconds) {
        Ok(secs) => {
            fake_istiod::timefmt::format_rfc3339(UNIX_EPOCH + Duration::new(secs, t.nanos as u32))
        }
        Err(_) => format!("{}s before the Unix epoch", -t.seconds),
    }
}

/// A readable rendering of one ClientConfig (every field istioctl reads).
fn render(c: &ClientConfig) -> Value {
    let node = c.node.clone().unwrap_or_default();
    let mut out = serde_json::Map::new();
    out.insert("node_id".into(), json!(node.id));
    if let Some(m) = &node.metadata {
        out.insert("metadata".into(), metadata(m));
    }
    #[allow(deprecated)]
    if !c.xds_config.is_empty() {
        let legacy: Vec<Value> = c
            .xds_config
            .iter()
            .map(|x| {
                let which = match &x.per_xds_config {
                    Some(p) => format!("{p:?}")
                        .split('(')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    None => "none".into(),
                };
                json!({ "config": which, "status": status_name(x.status) })
            })
            .collect();
        out.insert("xds_config".into(), json!(legacy));
    }
    if !c.generic_xds_configs.is_empty() {
        let generic: Vec<Value> = c
            .generic_xds_configs
            .iter()
            .map(|g| {
                let mut m = serde_json::Map::new();
                m.insert("type_url".into(), json!(g.type_url));
                m.insert("config_status".into(), json!(status_name(g.config_status)));
                if let Some(t) = &g.last_updated {
                    m.insert("last_updated".into(), json!(time(t)));
                }
                if let Some(e) = &g.error_state {
                    m.insert("error_state.details".into(), json!(e.details));
                    if let Some(t) = &e.last_update_attempt {
                        m.insert("error_state.last_update_attempt".into(), json!(time(t)));
                    }
                }
                Value::Object(m)
            })
            .collect();
        out.insert("generic_xds_configs".into(), json!(generic));
    }
    Value::Object(out)
}

#[rstest]
#[case::legacy_1_11("1.11.8")]
#[case::fixed_types_1_12("1.12.1")]
#[case::ecds_full_metadata_1_14_0("1.14.0")]
#[case::ecds_cluster_id_1_14_5("1.14.5")]
#[case::ecds_full_metadata_1_15_0("1.15.0")]
#[case::ecds_cluster_id_1_15_1("1.15.1")]
#[case::cluster_id_1_16("1.16.7")]
#[case::no_ztunnel_1_17("1.17.8")]
#[case::ztunnel_unknown_1_18("1.18.7")]
#[case::three_keys_1_19("1.19.10")]
#[case::three_keys_1_22("1.22.8")]
#[case::watched_types_1_23("1.23.6")]
#[case::control_plane_only_on_syncz_1_25("1.25.5")]
#[case::latest_1_30("1.30.0")]
fn syncz_answer_per_istiod_version(#[case] version: &str) {
    let v: IstioVersion = version.parse().unwrap();
    let s = Scenario::parse(MESH, "mesh.yaml").unwrap();
    // The replica's whole answer (ztunnels only from 1.18), in id order:
    // istiod's own order is Go map order.
    let proxies: Vec<Arc<Proxy>> = s.proxies.iter().cloned().map(Arc::new).collect();
    let mut decoded: Vec<ClientConfig> = answer(&proxies, &v, now(), &mut SplitMix::new(7))
        .iter()
        .map(|a| ClientConfig::decode(a.value.as_slice()).unwrap())
        .collect();
    decoded.sort_by(|a, b| node_id(a).cmp(node_id(b)));
    let configs: Vec<Value> = decoded.iter().map(render).collect();
    let me = ReplicaIdentity {
        name: "istiod-5c8f6d7b9-x1y2z".into(),
        version: v.clone(),
        revision: "default".into(),
        auth: s.auth.for_replica(Some(&v)),
    };
    let cp = |t: &str| {
        fake_istiod::ads::control_plane(&me, t)
            .map(|c| c.identifier)
            .unwrap_or_else(|| "(none)".into())
    };
    let doc = json!({
        "istiod": version,
        "control_plane": {
            "syncz": cp(type_url::SYNCZ),
            "config_dump": cp(type_url::CONFIG_DUMP),
            "connections": cp(type_url::CONNECTIONS),
        },
        "client_configs": configs,
    });
    // Named as when this was its own test binary (insta would prefix the module path).
    insta::with_settings!({ snapshot_suffix => version, prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!("syncz_shapes__syncz", doc);
    });
}
