//! `istio.io/debug/config_dump` for one proxy: istiod answers with the sections
//! of the proxy's `envoy.admin.v3.ConfigDump` (`AnyToUnnamedResources(dump.Configs)`):
//! bootstrap, clusters, listeners, routes.

use crate::scenario::Proxy;
use crate::syncz::{full_metadata, pack_any, timestamp, workload_name};
use proto::envoy::envoy::admin::v3::{
    BootstrapConfigDump, ClustersConfigDump, ConfigDump, ListenersConfigDump, RoutesConfigDump,
    clusters_config_dump::DynamicCluster,
    listeners_config_dump::{DynamicListener, DynamicListenerState},
    routes_config_dump::DynamicRouteConfig,
};
use proto::envoy::envoy::config::bootstrap::v3::Bootstrap;
use proto::envoy::envoy::config::cluster::v3::Cluster;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::config::listener::v3::Listener;
use proto::envoy::envoy::config::route::v3::RouteConfiguration;
use proto::envoy::google::protobuf::Any;
use std::time::SystemTime;

/// The full node id istiod knows the proxy by (`sidecar~10.x~pod.ns~ns.svc.cluster.local`).
pub fn node_id(proxy: &Proxy) -> String {
    format!(
        "{}~{}~{}~{}.svc.cluster.local",
        proxy.kind.node_type(),
        proxy.ip,
        proxy.id,
        proxy.namespace
    )
}

/// The proxy's config dump.
pub fn config_dump(proxy: &Proxy, version_info: &str, now: SystemTime) -> ConfigDump {
    ConfigDump {
        configs: sections(proxy, version_info, now),
    }
}

/// The config dump sections, in Envoy's order.
pub fn sections(proxy: &Proxy, version_info: &str, now: SystemTime) -> Vec<Any> {
    let ts = Some(timestamp(now));
    let service = format!(
        "{}.{}.svc.cluster.local",
        workload_name(proxy.pod_name()),
        proxy.namespace
    );
    let bootstrap = BootstrapConfigDump {
        bootstrap: Some(Bootstrap {
            node: Some(Node {
                id: node_id(proxy),
                cluster: format!("{}.{}", workload_name(proxy.pod_name()), proxy.namespace),
                metadata: Some(full_metadata(proxy)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        last_updated: ts,
    };
    let cluster_names = [
        "BlackHoleCluster".to_string(),
        "PassthroughCluster".to_string(),
        format!("inbound|80||{service}"),
        format!("outbound|80||{service}"),
    ];
    let clusters = ClustersConfigDump {
        version_info: version_info.to_string(),
        dynamic_active_clusters: cluster_names
            .iter()
            .map(|name| DynamicCluster {
                version_info: version_info.to_string(),
                cluster: Some(pack_any(&Cluster {
                    name: name.clone(),
                    ..Default::default()
                })),
                last_updated: ts,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listener_names = [
        "virtualInbound".to_string(),
        "virtualOutbound".to_string(),
        "0.0.0.0_80".to_string(),
    ];
    let listeners = ListenersConfigDump {
        version_info: version_info.to_string(),
        dynamic_listeners: listener_names
            .iter()
            .map(|name| DynamicListener {
                name: name.clone(),
                active_state: Some(DynamicListenerState {
                    version_info: version_info.to_string(),
                    listener: Some(pack_any(&Listener {
                        name: name.clone(),
                        ..Default::default()
                    })),
                    last_updated: ts,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = RoutesConfigDump {
        dynamic_route_configs: ["80", "InboundPassthroughCluster"]
            .into_iter()
            .map(|name| DynamicRouteConfig {
                version_info: version_info.to_string(),
                route_config: Some(pack_any(&RouteConfiguration {
                    name: name.to_string(),
                    ..Default::default()
                })),
                last_updated: ts,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    vec![
        pack_any(&bootstrap),
        pack_any(&clusters),
        pack_any(&listeners),
        pack_any(&routes),
    ]
}
