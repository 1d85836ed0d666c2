//! Type URLs of istiod's debug generators (pilot/pkg/xds/statusgen.go, pkg/model/xds.go)
//! and of the xDS resources that appear inside `ClientConfig`.

/// `proxy-status` (xDS variant), `x version` since 1.21: every replica answers with its own proxies.
pub const SYNCZ: &str = "istio.io/debug/syncz";
/// `proxy-status <pod>.<ns>`: only the owning replica answers with resources.
pub const CONFIG_DUMP: &str = "istio.io/debug/config_dump";
/// `x version` up to 1.20: only the ControlPlane is meaningful.
pub const CONNECTIONS: &str = "istio.io/connections";
/// `x internal-debug`: resource name is a debug path, or `list`.
pub const DEBUG: &str = "istio.io/debug";

/// The type of each syncz resource.
pub const CLIENT_CONFIG: &str = "type.googleapis.com/envoy.service.status.v3.ClientConfig";
/// The type of the config_dump resource.
pub const CONFIG_DUMP_RESOURCE: &str = "type.googleapis.com/envoy.admin.v3.ConfigDump";

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// ztunnel's workload addresses.
pub const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
/// ztunnel's authorization policies.
pub const WORKLOAD_AUTHORIZATION: &str = "type.googleapis.com/istio.security.Authorization";

/// The four types istiod reported for every proxy before 1.14, in istioctl's column order.
pub const CLASSIC_TYPES: [&str; 4] = [CLUSTER, LISTENER, ENDPOINT, ROUTE];

/// The debug type URLs an aggregating proxy is expected to serve.
pub const DEBUG_TYPES: [&str; 4] = [SYNCZ, CONFIG_DUMP, CONNECTIONS, DEBUG];

/// istioctl's short name for a type URL (`GetShortType` in pilot's model);
/// unknown types are shown as their full URL, as istioctl does.
pub fn short_name(type_url: &str) -> &str {
    match type_url {
        CLUSTER => "CDS",
        LISTENER => "LDS",
        ENDPOINT => "EDS",
        ROUTE => "RDS",
        EXTENSION_CONFIG => "ECDS",
        SECRET => "SDS",
        ADDRESS => "WDS",
        WORKLOAD_AUTHORIZATION => "WADS",
        other => other,
    }
}

/// The full type URL for a short name (`CDS` → Cluster), case-insensitive.
pub fn from_short_name(short: &str) -> Option<&'static str> {
    [
        CLUSTER,
        LISTENER,
        ENDPOINT,
        ROUTE,
        EXTENSION_CONFIG,
        SECRET,
        ADDRESS,
        WORKLOAD_AUTHORIZATION,
    ]
    .into_iter()
    .find(|t| short_name(t).eq_ignore_ascii_case(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_round_trip() {
        for t in [
            CLUSTER,
            LISTENER,
            ENDPOINT,
            ROUTE,
            EXTENSION_CONFIG,
            ADDRESS,
        ] {
            assert_eq!(from_short_name(short_name(t)), Some(t));
        }
        assert_eq!(
            short_name("type.googleapis.com/x.Y"),
            "type.googleapis.com/x.Y"
        );
        assert_eq!(from_short_name("nope"), None);
    }
}
