//! `istio.io/debug` answers (DebugGen: istiod's HTTP debug handlers over xDS).

use crate::config_dump::node_id;
use crate::scenario::Proxy;
use proto::IstioVersion;
use proto::envoy::google::protobuf::Any;
use std::sync::Arc;

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
pub fn debug_body(
    path: &str,
    proxies: &[Arc<Proxy>],
    replica: &str,
    version: &IstioVersion,
) -> Vec<u8> {
    let path = path.trim_start_matches('/').trim_start_matches("debug/");
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let json = match base {
        "config_dump" => {
            let id = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("proxyID="))
                .unwrap_or_default();
            if id.is_empty() {
                return b"You must provide a proxyID in the query string".to_vec();
            }
            let Some(p) = proxies.iter().find(|p| p.id == id) else {
                return b"Proxy not connected to this Pilot instance".to_vec();
            };
            config_dump_json(p, version)
        }
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

/// A JSON rendering of the proxy's config dump (the section types and the
/// names in them; istiod writes full protojson).
fn config_dump_json(p: &Proxy, version: &IstioVersion) -> serde_json::Value {
    use prost::Message;
    use proto::envoy::envoy::admin::v3::{
        BootstrapConfigDump, ClustersConfigDump, ListenersConfigDump, RoutesConfigDump,
    };
    let sections = crate::config_dump::sections(p, version, "", std::time::SystemTime::now());
    let configs: Vec<serde_json::Value> = sections
        .iter()
        .map(|a| {
            let names: Vec<String> = match a.type_url.rsplit('.').next().unwrap_or_default() {
                "BootstrapConfigDump" => BootstrapConfigDump::decode(a.value.as_slice())
                    .ok()
                    .and_then(|b| b.bootstrap)
                    .and_then(|b| b.node)
                    .map(|n| vec![n.id])
                    .unwrap_or_default(),
                "ClustersConfigDump" => ClustersConfigDump::decode(a.value.as_slice())
                    .map(|c| c.dynamic_active_clusters.len())
                    .map(|n| vec![format!("{n} dynamic active clusters")])
                    .unwrap_or_default(),
                "ListenersConfigDump" => ListenersConfigDump::decode(a.value.as_slice())
                    .map(|l| l.dynamic_listeners.into_iter().map(|d| d.name).collect())
                    .unwrap_or_default(),
                "RoutesConfigDump" => RoutesConfigDump::decode(a.value.as_slice())
                    .map(|r| {
                        vec![format!(
                            "{} dynamic route configs",
                            r.dynamic_route_configs.len()
                        )]
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            serde_json::json!({ "@type": a.type_url, "names": names })
        })
        .collect();
    serde_json::json!({ "configs": configs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ProxyKind;

    fn proxies() -> Vec<Arc<Proxy>> {
        vec![Arc::new(Proxy::new(
            "sleep-557747455f-v627d.sample",
            "istiod-a",
            "1.30.0".parse().unwrap(),
            ProxyKind::Sidecar,
        ))]
    }

    fn body(path: &str) -> String {
        String::from_utf8(debug_body(
            path,
            &proxies(),
            "istiod-a",
            &"1.30.0".parse().unwrap(),
        ))
        .unwrap()
    }

    #[test]
    fn debug_paths_answer_like_istiod() {
        let list: Vec<String> = serde_json::from_str(&body("list")).unwrap();
        assert!(list.contains(&"syncz".to_string()));
        let syncz: serde_json::Value = serde_json::from_str(&body("syncz")).unwrap();
        assert_eq!(syncz[0]["proxy"], "sleep-557747455f-v627d.sample");
        assert_eq!(
            body("config_dump"),
            "You must provide a proxyID in the query string"
        );
        assert_eq!(
            body("config_dump?proxyID=other-1.default"),
            "Proxy not connected to this Pilot instance"
        );
        let dump: serde_json::Value =
            serde_json::from_str(&body("config_dump?proxyID=sleep-557747455f-v627d.sample"))
                .unwrap();
        assert_eq!(
            dump["configs"][0]["@type"],
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"
        );
        assert_eq!(body("nope"), "404 page not found\n");
    }
}
