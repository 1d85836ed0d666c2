//! Hand-built syncz responses (istiod's shapes) for renderer tests.

use prost::Message;
use proto::envoy::envoy::admin::v3::UpdateFailureState;
use proto::envoy::envoy::admin::v3::{
    ClustersConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump,
};
use proto::envoy::envoy::config::core::v3::{ControlPlane, Node};
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::envoy::envoy::service::status::v3::{
    ClientConfig, PerXdsConfig, client_config::GenericXdsConfig,
    per_xds_config::PerXdsConfig as Kind,
};
use proto::envoy::google::protobuf::{Any, Struct, Timestamp};
use proto::node::string_value;
use proto::type_url::*;
use proto::{BuildInfo, IstioControlPlaneInstance};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SYNCED: i32 = 1;
pub const NOT_SENT: i32 = 2;
pub const STALE: i32 = 3;
pub const ERROR: i32 = 4;
pub const UNKNOWN: i32 = 0;

/// The fixed "now" of every test.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// `now - ago`.
pub fn ago(secs: u64) -> Timestamp {
    Timestamp {
        seconds: (1_750_000_000 - secs) as i64,
        nanos: 0,
    }
}

pub fn metadata(pairs: &[(&str, &str)]) -> Struct {
    let mut st = Struct::default();
    for (k, v) in pairs {
        st.fields.insert(k.to_string(), string_value(v));
    }
    st
}

/// One entry of `generic_xds_configs`.
pub struct T {
    pub type_url: &'static str,
    pub status: i32,
    pub updated: Option<u64>,
    pub nack: Option<&'static str>,
}

pub fn t(type_url: &'static str, status: i32) -> T {
    T {
        type_url,
        status,
        updated: None,
        nack: None,
    }
}

pub fn aged(type_url: &'static str, status: i32, secs_ago: u64) -> T {
    T {
        type_url,
        status,
        updated: Some(secs_ago),
        nack: None,
    }
}

pub fn generic(id: &str, meta: &[(&str, &str)], types: &[T]) -> Any {
    let cc = ClientConfig {
        node: Some(Node {
            id: id.to_string(),
            metadata: Some(metadata(meta)),
            ..Default::default()
        }),
        generic_xds_configs: types
            .iter()
            .map(|x| GenericXdsConfig {
                type_url: x.type_url.to_string(),
                config_status: x.status,
                last_updated: x.updated.map(ago),
                error_state: x.nack.map(|d| UpdateFailureState {
                    details: d.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    any(&cc)
}

/// istiod <= 1.11: deprecated `xds_config` with LDS, RDS, EDS, CDS.
#[allow(deprecated)]
pub fn legacy(id: &str, lds: i32, rds: i32, eds: i32, cds: i32) -> Any {
    let cc = ClientConfig {
        node: Some(Node {
            id: id.to_string(),
            ..Default::default()
        }),
        xds_config: vec![
            PerXdsConfig {
                status: lds,
                per_xds_config: Some(Kind::ListenerConfig(ListenersConfigDump::default())),
                ..Default::default()
            },
            PerXdsConfig {
                status: rds,
                per_xds_config: Some(Kind::RouteConfig(RoutesConfigDump::default())),
                ..Default::default()
            },
            PerXdsConfig {
                status: eds,
                per_xds_config: Some(Kind::EndpointConfig(EndpointsConfigDump::default())),
                ..Default::default()
            },
            PerXdsConfig {
                status: cds,
                per_xds_config: Some(Kind::ClusterConfig(ClustersConfigDump::default())),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    any(&cc)
}

pub fn any(cc: &ClientConfig) -> Any {
    Any {
        type_url: CLIENT_CONFIG.to_string(),
        value: cc.encode_to_vec(),
    }
}

pub fn response(cp_id: &str, version: &str, resources: Vec<Any>) -> DiscoveryResponse {
    let cp = IstioControlPlaneInstance::istiod(cp_id, BuildInfo::release(version));
    DiscoveryResponse {
        type_url: SYNCZ.to_string(),
        resources,
        control_plane: Some(ControlPlane {
            identifier: cp.to_json(),
        }),
        ..Default::default()
    }
}

/// The blog's mesh as istiod 1.12.1 shapes it, through a proxy (`<external>`).
pub fn blog_mesh() -> DiscoveryResponse {
    let synced = |id: &str, ns: &str| {
        generic(
            id,
            &[
                ("CLUSTER_ID", "Kubernetes"),
                ("NAMESPACE", ns),
                ("ISTIO_VERSION", "1.12.1"),
            ],
            &[
                t(LISTENER, SYNCED),
                t(ROUTE, SYNCED),
                t(ENDPOINT, SYNCED),
                t(CLUSTER, SYNCED),
            ],
        )
    };
    response(
        "<external>",
        "1.12.1",
        vec![
            synced("helloworld-v1-776f57d5f6-tmpkd.sample", "sample"),
            synced("sleep-557747455f-v627d.sample", "sample"),
            synced(
                "istio-ingressgateway-75bfd5668f-lggn4.external-istiod",
                "external-istiod",
            ),
        ],
    )
}

/// A 1.23+-shaped mesh with every status: a sidecar, a gateway without RDS,
/// a NACKed proxy, a stale one, a ztunnel (WDS only) and one with no types.
pub fn modern_mesh(cp_id: &str) -> DiscoveryResponse {
    let meta = |ns: &'static str, v: &'static str| {
        [
            ("CLUSTER_ID", "Kubernetes"),
            ("NAMESPACE", ns),
            ("ISTIO_VERSION", v),
        ]
    };
    let mut nack = aged(LISTENER, ERROR, 30);
    nack.nack = Some("Proto constraint validation failed");
    response(
        cp_id,
        "1.30.0",
        vec![
            generic(
                "productpage-v1-6b746f74dc-9rlmh.bookinfo",
                &meta("bookinfo", "1.30.0"),
                &[
                    aged(CLUSTER, SYNCED, 300),
                    aged(EXTENSION_CONFIG, SYNCED, 300),
                    aged(ENDPOINT, SYNCED, 5),
                    aged(LISTENER, SYNCED, 300),
                    aged(ROUTE, SYNCED, 300),
                ],
            ),
            generic(
                "istio-ingressgateway-75bfd5668f-lggn4.istio-system",
                &meta("istio-system", "1.30.0"),
                &[
                    aged(CLUSTER, SYNCED, 7200),
                    aged(ENDPOINT, SYNCED, 90),
                    aged(LISTENER, SYNCED, 7200),
                ],
            ),
            generic(
                "reviews-v2-7d79d5bd5d-tj6kf.bookinfo",
                &meta("bookinfo", "1.29.1"),
                &[
                    aged(CLUSTER, SYNCED, 3 * 86400),
                    aged(ENDPOINT, STALE, 600),
                    nack,
                    aged(ROUTE, NOT_SENT, 30),
                ],
            ),
            generic(
                "ztunnel-jbjg2.istio-system",
                &meta("istio-system", "1.30.0"),
                &[
                    aged(ADDRESS, SYNCED, 45),
                    aged(WORKLOAD_AUTHORIZATION, SYNCED, 45),
                ],
            ),
            generic(
                "sleep-557747455f-v627d.sample",
                &meta("sample", "1.30.0"),
                &[],
            ),
        ],
    )
}
