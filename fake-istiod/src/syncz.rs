//! `istio.io/debug/syncz`: one `ClientConfig` per connected proxy, shaped as
//! the istiod version shapes it (protocol.md, pilot/pkg/xds/statusgen.go).

use crate::scenario::{Proxy, ProxyKind, SyncStatus};
use proto::envoy::envoy::admin::v3::UpdateFailureState;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::service::status::v3::{
    ClientConfig, ConfigStatus, PerXdsConfig, client_config::GenericXdsConfig, per_xds_config,
};
use proto::envoy::google::protobuf::{Any, Struct, Timestamp, Value};
use proto::node::string_value;
use proto::type_url::*;
use proto::{IstioVersion, SynczShape};
use std::collections::HashMap;
use std::time::SystemTime;

/// Packs a message into the envoy-types `Any`.
pub fn pack_any<T: prost::Name + prost::Message>(m: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let (seconds, nanos) = crate::timefmt::unix(t);
    Timestamp { seconds, nanos }
}

/// The status istiod of `version` reports for a scenario status.
fn reported(status: SyncStatus, version: &IstioVersion) -> ConfigStatus {
    match status {
        SyncStatus::Synced => ConfigStatus::Synced,
        SyncStatus::Stale => ConfigStatus::Stale,
        SyncStatus::NotSent => ConfigStatus::NotSent,
        // Before 1.23 a NACKed type is "sent but not acked".
        SyncStatus::Error if version.reports_error_status() => ConfigStatus::Error,
        SyncStatus::Error => ConfigStatus::Stale,
    }
}

/// The status of a type istiod's fixed list names that this proxy may not watch.
fn fixed_type_status(proxy: &Proxy, type_url: &str, version: &IstioVersion) -> ConfigStatus {
    match proxy.type_status(type_url) {
        Some(t) => reported(t.status, version),
        // 1.18+ reports types a ztunnel does not watch as UNKNOWN.
        None if proxy.kind == ProxyKind::Ztunnel && version.at_least(1, 18, 0) => {
            ConfigStatus::Unknown
        }
        None => ConfigStatus::NotSent,
    }
}

fn metadata(pairs: &[(&str, &str)]) -> Struct {
    Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), string_value(v)))
            .collect::<HashMap<String, Value>>(),
    }
}

/// The proxy's full node metadata (what 1.14-1.15 put in syncz).
pub fn full_metadata(proxy: &Proxy) -> Struct {
    let version = proxy.version.to_string();
    let ip = proxy.ip.to_string();
    let workload = workload_name(proxy.pod_name());
    let mut s = metadata(&[
        ("CLUSTER_ID", &proxy.cluster),
        ("ISTIO_VERSION", &version),
        ("NAMESPACE", &proxy.namespace),
        ("NAME", proxy.pod_name()),
        ("MESH_ID", "cluster.local"),
        ("INSTANCE_IPS", &ip),
        ("WORKLOAD_NAME", &workload),
        ("SERVICE_ACCOUNT", "default"),
    ]);
    // istioctl treats a node without PROXY_CONFIG as "not a proxy" (its own
    // connections), so every proxy carries one.
    let proxy_config = metadata(&[
        ("binaryPath", "/usr/local/bin/envoy"),
        ("configPath", "./etc/istio/proxy"),
        ("discoveryAddress", "istiod.istio-system.svc:15012"),
    ]);
    s.fields.insert(
        "PROXY_CONFIG".into(),
        Value {
            kind: Some(proto::envoy::google::protobuf::value::Kind::StructValue(
                proxy_config,
            )),
        },
    );
    let labels = metadata(&[("app", &workload)]);
    s.fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(proto::envoy::google::protobuf::value::Kind::StructValue(
                labels,
            )),
        },
    );
    s
}

/// `helloworld-v1-776f57d5f6-tmpkd` → `helloworld-v1` (drops the ReplicaSet and pod hashes).
pub fn workload_name(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() > 2 {
        parts[..parts.len() - 2].join("-")
    } else {
        pod.to_string()
    }
}

/// The node istiod puts in a ClientConfig.
fn node(proxy: &Proxy, version: &IstioVersion) -> Node {
    let shape = version.syncz_shape();
    let metadata = match shape {
        SynczShape::LegacyXdsConfig | SynczShape::GenericFixedTypes => None,
        SynczShape::WithEcds if version.syncz_full_node_metadata() => Some(full_metadata(proxy)),
        SynczShape::WithEcds | SynczShape::ClusterIdMetadata => {
            Some(metadata(&[("CLUSTER_ID", &proxy.cluster)]))
        }
        SynczShape::ThreeKeyMetadata | SynczShape::WatchedTypes => Some(metadata(&[
            ("CLUSTER_ID", &proxy.cluster),
            ("NAMESPACE", &proxy.namespace),
            ("ISTIO_VERSION", &proxy.version.to_string()),
        ])),
    };
    Node {
        id: proxy.id.clone(),
        metadata,
        ..Default::default()
    }
}

/// One proxy's ClientConfig as istiod `version` builds it at `now`.
pub fn client_config(proxy: &Proxy, version: &IstioVersion, now: SystemTime) -> ClientConfig {
    let shape = version.syncz_shape();
    let node = Some(node(proxy, version));
    match shape {
        SynczShape::LegacyXdsConfig => {
            use per_xds_config::PerXdsConfig as P;
            let xds_config = [LISTENER, ROUTE, ENDPOINT, CLUSTER]
                .into_iter()
                .map(|t| PerXdsConfig {
                    status: fixed_type_status(proxy, t, version) as i32,
                    per_xds_config: Some(match t {
                        LISTENER => P::ListenerConfig(Default::default()),
                        ROUTE => P::RouteConfig(Default::default()),
                        ENDPOINT => P::EndpointConfig(Default::default()),
                        _ => P::ClusterConfig(Default::default()),
                    }),
                    ..Default::default()
                })
                .collect();
            #[allow(deprecated)]
            ClientConfig {
                node,
                xds_config,
                ..Default::default()
            }
        }
        SynczShape::GenericFixedTypes
        | SynczShape::WithEcds
        | SynczShape::ClusterIdMetadata
        | SynczShape::ThreeKeyMetadata => {
            let mut types = vec![LISTENER, ROUTE, ENDPOINT, CLUSTER];
            if shape != SynczShape::GenericFixedTypes {
                types.push(EXTENSION_CONFIG);
            }
            let generic_xds_configs = types
                .into_iter()
                .map(|t| GenericXdsConfig {
                    type_url: t.to_string(),
                    config_status: fixed_type_status(proxy, t, version) as i32,
                    ..Default::default()
                })
                .collect();
            ClientConfig {
                node,
                generic_xds_configs,
                ..Default::default()
            }
        }
        SynczShape::WatchedTypes => {
            // proxy.types is kept sorted by type URL.
            let generic_xds_configs = proxy
                .types
                .iter()
                .map(|t| GenericXdsConfig {
                    type_url: t.type_url.clone(),
                    config_status: reported(t.status, version) as i32,
                    // `LastUpdated = timestamppb.New(wr.LastSendTime)`: always
                    // set, Go's zero time for a type never sent
                    // (`1.23.0:pilot/pkg/xds/statusgen.go`).
                    last_updated: Some(
                        t.last_updated_at(now)
                            .map(timestamp)
                            .unwrap_or(GO_ZERO_TIME),
                    ),
                    error_state: match (&t.error, t.status) {
                        (Some(details), SyncStatus::Error) => Some(UpdateFailureState {
                            details: details.clone(),
                            last_update_attempt: Some(
                                t.last_updated_at(now)
                                    .map(timestamp)
                                    .unwrap_or(GO_ZERO_TIME),
                            ),
                            ..Default::default()
                        }),
                        _ => None,
                    },
                    ..Default::default()
                })
                .collect();
            ClientConfig {
                node,
                generic_xds_configs,
                ..Default::default()
            }
        }
    }
}

/// Go's zero `time.Time` as a protobuf Timestamp (`0001-01-01T00:00:00Z`).
pub const GO_ZERO_TIME: Timestamp = Timestamp {
    seconds: -62_135_596_800,
    nanos: 0,
};

/// One replica's syncz answer as istiod builds it: one ClientConfig per
/// CONNECTION (a proxy with several is listed several times), only sidecars
/// and gateways before 1.18 (ztunnels from 1.18), in Go map order, which
/// `rng` stands in for.
pub fn answer(
    proxies: &[std::sync::Arc<Proxy>],
    version: &IstioVersion,
    now: SystemTime,
    rng: &mut crate::mesh::SplitMix,
) -> Vec<Any> {
    use std::borrow::Cow;
    let mut listed: Vec<Cow<'_, Proxy>> = Vec::with_capacity(proxies.len());
    for p in proxies {
        if p.kind == ProxyKind::Ztunnel && !version.syncz_lists_ztunnels() {
            continue;
        }
        listed.push(Cow::Borrowed(p.as_ref()));
        for extra in 1..p.connections.max(1) {
            listed.push(Cow::Owned(p.older_by(
                std::time::Duration::from_secs(600 * u64::from(extra)),
                now,
            )));
        }
    }
    rng.shuffle(&mut listed);
    listed
        .iter()
        .map(|p| pack_any(&client_config(p, version, now)))
        .collect()
}

/// The syncz resources for a set of proxies (sorted by id).
pub fn resources<'a>(
    proxies: impl IntoIterator<Item = &'a Proxy>,
    version: &IstioVersion,
    now: SystemTime,
) -> Vec<Any> {
    proxies
        .into_iter()
        .map(|p| pack_any(&client_config(p, version, now)))
        .collect()
}
