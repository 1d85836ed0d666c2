//! `istio.io/connections` and `istio.io/debug` answers.

use crate::config_dump::node_id;
use crate::scenario::Proxy;
use crate::syncz::{full_metadata, pack_any};
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::google::protobuf::Any;
use std::sync::Arc;

/// `istio.io/connections`: the node of every ADS client of this replica.
pub fn connections(proxies: &[Arc<Proxy>], caller: &Node) -> Vec<Any> {
    let mut out: Vec<Any> = proxies
        .iter()
        .map(|p| {
            pack_any(&Node {
                id: node_id(p),
                metadata: Some(full_metadata(p)),
                ..Default::default()
            })
        })
        .collect();
    out.push(pack_any(caller));
    out
}

/// The debug paths istiod lists.
pub const DEBUG_PATHS: &[&str] = &[
    "adsz",
    "authorizationz",
    "config_distribution",
    "config_dump",
    "configz",
    "connections",
    "endpointShardz",
    "endpointz",
    "inject",
    "instancesz",
    "list",
    "mesh",
    "networkz",
    "push_status",
    "pushcontext",
    "registryz",
    "resourcesz",
    "sidecarz",
    "syncz",
    "telemetryz",
];

/// `istio.io/debug` with a path: the body istiod's HTTP debug handler returns.
pub fn debug_body(path: &str, proxies: &[Arc<Proxy>], replica: &str) -> Vec<u8> {
    let path = path.trim_start_matches('/').trim_start_matches("debug/");
    let base = path.split('?').next().unwrap_or(path);
    let json = match base {
        "list" => serde_json::json!(DEBUG_PATHS),
        "syncz" => serde_json::Value::Array(
            proxies
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "cluster_id": p.cluster,
                        "proxy": p.id,
                        "proxy_type": p.kind.node_type(),
                        "istio_version": p.version.to_string(),
                        "istiod": replica,
                    })
                })
                .collect(),
        ),
        "adsz" | "connections" => serde_json::json!({
            "totalClients": proxies.len(),
            "clients": proxies.iter().map(|p| serde_json::json!({
                "connectionId": format!("{}-{}", node_id(p), 1),
                "connectedAt": "",
                "address": p.ip.to_string(),
            })).collect::<Vec<_>>(),
        }),
        _ => return b"404 page not found\n".to_vec(),
    };
    serde_json::to_vec_pretty(&json).unwrap_or_default()
}

/// The resource carrying a debug body.
pub fn debug_resource(body: Vec<u8>) -> Any {
    Any {
        type_url: proto::type_url::DEBUG.to_string(),
        value: body,
    }
}
