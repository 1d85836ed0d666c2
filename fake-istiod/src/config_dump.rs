//! `istio.io/debug/config_dump` for one proxy: istiod answers with the sections
//! of the `envoy.admin.v3.ConfigDump` it builds from its own state
//! (`AnyToUnnamedResources(dump.Configs)`, `connectionConfigDump` /
//! `configDump` in pilot/pkg/xds/debug.go): an EMPTY bootstrap, clusters,
//! listeners, an EMPTY scoped-routes section, routes, secrets, and from 1.17
//! ECDS. Dynamic entries carry no `last_updated` (istiod does not track it).

use crate::scenario::Proxy;
use crate::syncz::{pack_any, workload_name};
use proto::IstioVersion;
use proto::envoy::envoy::admin::v3::{
    BootstrapConfigDump, ClustersConfigDump, ConfigDump, EcdsConfigDump, ListenersConfigDump,
    RoutesConfigDump, ScopedRoutesConfigDump, SecretsConfigDump,
    clusters_config_dump::DynamicCluster,
    listeners_config_dump::{DynamicListener, DynamicListenerState},
    routes_config_dump::DynamicRouteConfig,
};
use proto::envoy::envoy::config::cluster::v3::Cluster;
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

/// The proxy's config dump as istiod `version` builds it.
pub fn config_dump(
    proxy: &Proxy,
    version: &IstioVersion,
    version_info: &str,
    now: SystemTime,
) -> ConfigDump {
    ConfigDump {
        configs: sections(proxy, version, version_info, now),
    }
}

/// The config dump sections, in istiod's order (`1.12.0:pilot/pkg/xds/debug.go`
/// `configDump`: bootstrap, clusters, listeners, scoped routes, routes,
/// secrets; `1.17.0:pilot/pkg/xds/debug.go` appends the ECDS section).
/// `version_info` is the push version (sections of clusters and listeners; from
/// 1.15 also each listener and route entry, `1.15.0:pilot/pkg/xds/debug.go`).
pub fn sections(
    proxy: &Proxy,
    version: &IstioVersion,
    version_info: &str,
    _now: SystemTime,
) -> Vec<Any> {
    let entry_version = if version.config_dump_entry_versions() {
        version_info.to_string()
    } else {
        String::new()
    };
    let service = format!(
        "{}.{}.svc.cluster.local",
        workload_name(proxy.pod_name()),
        proxy.namespace
    );
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
                cluster: Some(pack_any(&Cluster {
                    name: name.clone(),
                    ..Default::default()
                })),
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
                    version_info: entry_version.clone(),
                    listener: Some(pack_any(&Listener {
                        name: name.clone(),
                        ..Default::default()
                    })),
                    last_updated: None,
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
                version_info: entry_version.clone(),
                route_config: Some(pack_any(&RouteConfiguration {
                    name: name.to_string(),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut out = vec![
        pack_any(&BootstrapConfigDump::default()),
        pack_any(&clusters),
        pack_any(&listeners),
        pack_any(&ScopedRoutesConfigDump::default()),
        pack_any(&routes),
        pack_any(&SecretsConfigDump::default()),
    ];
    if version.config_dump_has_ecds() {
        out.push(pack_any(&EcdsConfigDump::default()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ProxyKind;
    use prost::Message;
    use rstest::rstest;

    fn section_names(version: &str) -> Vec<String> {
        let v: IstioVersion = version.parse().unwrap();
        let p = Proxy::new("sleep-1.sample", "istiod-a", v.clone(), ProxyKind::Sidecar);
        sections(&p, &v, "2026-11-22T00:00:00Z/1", SystemTime::now())
            .into_iter()
            .map(|a| {
                a.type_url
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[rstest]
    #[case("1.12.1", 6)]
    #[case("1.16.7", 6)]
    #[case("1.17.0", 7)]
    #[case("1.30.0", 7)]
    fn sections_as_istiod_sends_them(#[case] version: &str, #[case] n: usize) {
        let names = section_names(version);
        assert_eq!(names.len(), n, "{version}: {names:?}");
        assert_eq!(
            &names[..6],
            [
                "BootstrapConfigDump",
                "ClustersConfigDump",
                "ListenersConfigDump",
                "ScopedRoutesConfigDump",
                "RoutesConfigDump",
                "SecretsConfigDump"
            ]
        );
        if n == 7 {
            assert_eq!(names[6], "EcdsConfigDump");
        }
    }

    #[rstest]
    #[case("1.14.6", "")]
    #[case("1.15.0", "2026-11-22T00:00:00Z/1")]
    fn empty_bootstrap_and_entries_without_last_updated(
        #[case] version: &str,
        #[case] entry_version: &str,
    ) {
        let v: IstioVersion = version.parse().unwrap();
        let p = Proxy::new("sleep-1.sample", "istiod-a", v.clone(), ProxyKind::Sidecar);
        let s = sections(&p, &v, "2026-11-22T00:00:00Z/1", SystemTime::now());
        assert!(s[0].value.is_empty(), "the bootstrap section is empty");
        assert!(s[3].value.is_empty(), "the scoped-routes section is empty");
        let listeners = ListenersConfigDump::decode(s[2].value.as_slice()).unwrap();
        let state = listeners.dynamic_listeners[0].active_state.clone().unwrap();
        assert_eq!(state.last_updated, None);
        assert_eq!(state.version_info, entry_version);
        let clusters = ClustersConfigDump::decode(s[1].value.as_slice()).unwrap();
        assert_eq!(clusters.version_info, "2026-11-22T00:00:00Z/1");
        assert!(
            clusters
                .dynamic_active_clusters
                .iter()
                .all(|c| c.last_updated.is_none() && c.version_info.is_empty())
        );
    }
}
