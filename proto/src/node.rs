//! The node istioctl sends with every debug request (pkg/adsc, istioctl/pkg/xds/client.go),
//! and how istiod reads the caller's claimed identity back out of it.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use std::collections::HashMap;
use std::net::IpAddr;

/// `ISTIO_VERSION` istioctl claims (adsc's constant).
pub const ISTIOCTL_ISTIO_VERSION: &str = "65536.65536.65536";
/// The default istio system namespace.
pub const DEFAULT_ISTIO_NAMESPACE: &str = "istio-system";

/// What istioctl puts in `DiscoveryRequest.node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioctlNode {
    /// The host's first non-loopback IP (istiod rejects a node id without a valid IP).
    pub ip: IpAddr,
    /// `NAMESPACE` metadata: the istio namespace (`--istioNamespace`, `ISTIOCTL_ISTIONAMESPACE`).
    pub namespace: String,
    /// `SERVICE_ACCOUNT` metadata: `default`.
    pub service_account: String,
}

impl IstioctlNode {
    pub fn new(ip: IpAddr, namespace: impl Into<String>) -> Self {
        IstioctlNode {
            ip,
            namespace: namespace.into(),
            service_account: "default".to_string(),
        }
    }

    /// `sidecar~<ip>~test-1.default~default.svc.cluster.local`
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~test-1.default~default.svc.cluster.local",
            self.ip
        )
    }

    pub fn to_node(&self) -> Node {
        let mut fields = HashMap::new();
        for (k, v) in [
            ("GENERATOR", "event"),
            ("SERVICE_ACCOUNT", self.service_account.as_str()),
            ("NAMESPACE", self.namespace.as_str()),
            ("ISTIO_VERSION", ISTIOCTL_ISTIO_VERSION),
        ] {
            fields.insert(k.to_string(), string_value(v));
        }
        Node {
            id: self.node_id(),
            metadata: Some(Struct { fields }),
            ..Default::default()
        }
    }
}

/// A protobuf `Value` holding a string.
pub fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

/// A string field of node metadata, if present and a string.
pub fn metadata_string<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    match node.metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The identity a request claims in its metadata (istiod compares it with the
/// authenticated one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedIdentity {
    pub namespace: String,
    pub service_account: String,
}

/// Why istiod would reject a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("missing node in the request")]
    MissingNode,
    #[error("no valid IP address in the service node id or metadata")]
    NoValidIp,
}

/// Parses `type~ip~pod.ns~domain` like istiod's `ParseServiceNodeWithMetadata`:
/// the second part must be a valid IP.
pub fn node_ip(node: &Node) -> Result<IpAddr, NodeError> {
    let mut parts = node.id.split('~');
    let ip = parts.nth(1).ok_or(NodeError::NoValidIp)?;
    ip.parse().map_err(|_| NodeError::NoValidIp)
}

/// The NAMESPACE / SERVICE_ACCOUNT the node claims (empty strings when absent).
pub fn claimed_identity(node: &Node) -> ClaimedIdentity {
    ClaimedIdentity {
        namespace: metadata_string(node, "NAMESPACE")
            .unwrap_or_default()
            .to_string(),
        service_account: metadata_string(node, "SERVICE_ACCOUNT")
            .unwrap_or_default()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istioctl_node_shape() {
        let n = IstioctlNode::new("10.1.2.3".parse().unwrap(), "external-istiod").to_node();
        assert_eq!(
            n.id,
            "sidecar~10.1.2.3~test-1.default~default.svc.cluster.local"
        );
        assert_eq!(metadata_string(&n, "GENERATOR"), Some("event"));
        assert_eq!(
            metadata_string(&n, "ISTIO_VERSION"),
            Some("65536.65536.65536")
        );
        assert_eq!(node_ip(&n), Ok("10.1.2.3".parse().unwrap()));
        let id = claimed_identity(&n);
        assert_eq!(id.namespace, "external-istiod");
        assert_eq!(id.service_account, "default");
    }

    #[test]
    fn node_without_ip_is_rejected() {
        let n = Node {
            id: "sidecar~nope~x.y~y.svc.cluster.local".into(),
            ..Default::default()
        };
        assert_eq!(node_ip(&n), Err(NodeError::NoValidIp));
    }
}
