//! Authorization in `own-identity` mode, for EVERY request type (pure
//! functions, no I/O). The proxy calls the replicas with its own, privileged
//! identity, so istiod's per-caller rules must be applied here: a caller gets
//! at most what istiod itself would give it. When unsure, deny.
//!
//! istiod's rules (identical at 1.28.7, 1.29.3 and 1.30.0):
//! - `istio.io/debug/syncz`, `istio.io/debug/config_dump`: callers outside the
//!   system namespace (and `DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES`) only see
//!   proxies of their own namespace
//!   (1.30.0:pilot/pkg/xds/statusgen.go `callerNamespaceFilter`).
//! - `istio.io/connections`: StatusGen has no case for it: zero resources for
//!   everyone (1.30.0:pilot/pkg/xds/statusgen.go `handleInternalRequest`); the
//!   proxy passes on at most the nodes of the caller's namespace.
//! - `istio.io/debug`: exactly one path, else InvalidArgument "exactly one
//!   debug request is required"; outside the system namespace (the allowed
//!   namespaces do NOT count here) only `config_dump`, `ndsz`, `edsz`, else
//!   PermissionDenied "the debug info is not available for current identity: %q"
//!   (1.30.0:pilot/pkg/xds/debuggen.go `validateProxyAuthentication`,
//!   `parseAndValidateDebugRequest`); those three need `proxyID` of a proxy in
//!   the caller's own namespace (1.30.0:pilot/pkg/xds/debug.go `getDebugConnection`).
//! - istiod finds `proxyID` by SUBSTRING of the connection id `<node id>-<n>`
//!   (1.30.0:pilot/pkg/xds/debug.go `getProxyConnection`): the proxy refuses a
//!   proxyID that could match a proxy of another namespace ([`may_match`]).

use crate::auth::{CallerIdentity, Visibility};
use prost::Message;
use proto::envoy::envoy::config::core::v3::Node;
use tonic::Status;

/// The debug paths istiod serves to callers outside the system namespace
/// (1.30.0:pilot/pkg/xds/debuggen.go `activeNamespaceDebuggers`).
pub const NAMESPACE_DEBUG_PATHS: [&str; 3] = ["config_dump", "ndsz", "edsz"];

/// The type of `istio.io/connections` resources.
pub const NODE_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.Node";

/// What a namespace-scoped caller asked for on `istio.io/debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugAsk {
    /// An allowed path about one proxy: forward once `proxy_id` is proven to
    /// match only proxies the caller may see.
    Proxy { proxy_id: String },
}

/// istiod's refusal text for a debug path (with the caller's SPIFFE id, as
/// istiod's `%q` of `spiffe.Identity` prints it; trust domain `cluster.local`).
pub fn debug_denied(caller: &CallerIdentity, why: &str) -> Status {
    let spiffe = format!(
        "spiffe://cluster.local/ns/{}/sa/{}",
        caller.namespace, caller.service_account
    );
    let mut msg = format!("the debug info is not available for current identity: {spiffe:?}");
    if !why.is_empty() {
        msg.push_str(" (istioctl-proxy: ");
        msg.push_str(why);
        msg.push(')');
    }
    Status::permission_denied(msg)
}

/// `istio.io/debug` for a caller outside the system namespace.
pub fn check_debug(resource_names: &[String], caller: &CallerIdentity) -> Result<DebugAsk, Status> {
    let [name] = resource_names else {
        return Err(Status::invalid_argument(
            "exactly one debug request is required",
        ));
    };
    // Go's url.Parse drops the fragment first, then splits the query.
    let no_fragment = name.split('#').next().unwrap_or_default();
    let (path, query) = no_fragment.split_once('?').unwrap_or((no_fragment, ""));
    if !NAMESPACE_DEBUG_PATHS.contains(&path) {
        return Err(debug_denied(caller, ""));
    }
    // Refuse anything Go's query parser could read differently from us:
    // escapes, `+`, `;`, a repeated key. Kubernetes names never need them.
    if query.contains(['%', '+', ';']) {
        return Err(debug_denied(
            caller,
            "the query of a debug path may not contain '%', '+' or ';'",
        ));
    }
    let ids: Vec<&str> = query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == "proxyID").then_some(v)
        })
        .collect();
    match ids.as_slice() {
        [id] if !id.is_empty() => {
            if !Visibility::Namespace(caller.namespace.clone()).sees(id) {
                return Err(debug_denied(
                    caller,
                    &format!("proxy {id:?} is not in namespace {:?}", caller.namespace),
                ));
            }
            Ok(DebugAsk::Proxy {
                proxy_id: id.to_string(),
            })
        }
        _ => Err(debug_denied(
            caller,
            "exactly one proxyID=<pod>.<namespace> of the caller's namespace is required",
        )),
    }
}

/// Whether istiod's lookup of `proxy_id` (a substring of the connection id
/// `<node_id>-<counter>`) could land on the connection of `node_id`.
pub fn may_match(proxy_id: &str, node_id: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if proxy_id.is_empty() || node_id.contains(proxy_id) || digits(proxy_id) {
        return true;
    }
    // proxy_id = <suffix of node_id> "-" <digits of the counter>
    proxy_id.match_indices('-').any(|(i, _)| {
        let (head, tail) = proxy_id.split_at(i);
        digits(&tail[1..]) && node_id.ends_with(head)
    })
}

/// The first known node (of any namespace) that `proxy_id` could reach
/// although the caller may not see it.
pub fn foreign_match<'a>(
    proxy_id: &str,
    known: impl IntoIterator<Item = &'a str>,
    visibility: &Visibility,
) -> Option<&'a str> {
    known
        .into_iter()
        .find(|id| !visibility.sees(id) && may_match(proxy_id, id))
}

/// The namespace of an `istio.io/connections` node: its `NAMESPACE`
/// metadata, which must agree with the `pod.namespace` part of a
/// `type~ip~pod.ns~domain` node id when there is one.
fn node_namespace(node: &Node) -> Option<String> {
    let from_md = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get("NAMESPACE"))
        .and_then(|v| match &v.kind {
            Some(proto::envoy::google::protobuf::value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        });
    let from_id = node
        .id
        .split('~')
        .nth(2)
        .and_then(|pod_ns| pod_ns.rsplit_once('.'))
        .map(|(_, ns)| ns.to_string());
    match (from_md, from_id) {
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(_), Some(_)) => None,
        (a, b) => a.or(b),
    }
}

/// Whether the caller may see one `istio.io/connections` resource: a node of
/// its namespace. Anything that is not a decodable Node is not shown.
pub fn sees_connection(raw: &[u8], visibility: &Visibility) -> bool {
    let Visibility::Namespace(ns) = visibility else {
        return true;
    };
    crate::wire::scan_any(raw).is_ok_and(|(type_url, value)| {
        type_url == NODE_TYPE
            && Node::decode(value)
                .ok()
                .and_then(|n| node_namespace(&n))
                .is_some_and(|n| &n == ns)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envoy::google::protobuf::Any;

    fn foo() -> CallerIdentity {
        CallerIdentity {
            namespace: "foo".into(),
            service_account: "default".into(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn debug_paths_outside_the_system_namespace() {
        let err = check_debug(&names(&["syncz"]), &foo()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "the debug info is not available for current identity: \
             \"spiffe://cluster.local/ns/foo/sa/default\""
        );
        for p in [
            "list",
            "adsz",
            "adsz?proxyID=a.foo",
            "/config_dump?proxyID=a.foo",
            "config_dumpz?proxyID=a.foo",
        ] {
            assert_eq!(
                check_debug(&names(&[p]), &foo()).unwrap_err().code(),
                tonic::Code::PermissionDenied,
                "{p}"
            );
        }
        assert_eq!(
            check_debug(&names(&[]), &foo()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            check_debug(&names(&["a", "b"]), &foo()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        for p in [
            "config_dump?proxyID=a.foo",
            "ndsz?proxyID=a.foo",
            "edsz?x=1&proxyID=a.foo#frag",
        ] {
            assert_eq!(
                check_debug(&names(&[p]), &foo()).ok(),
                Some(DebugAsk::Proxy {
                    proxy_id: "a.foo".into()
                }),
                "{p}"
            );
        }
        for p in [
            "config_dump",
            "config_dump?proxyID=",
            "config_dump?proxyID=a.bar",
            "config_dump?proxyID=a.foo&proxyID=a.bar",
            "config_dump?proxyID=a.foo;proxyID=a.bar",
            "config_dump?proxyID=a%2Efoo",
            "config_dump?proxyID=a+.foo",
            "config_dump#?proxyID=a.foo",
        ] {
            assert!(check_debug(&names(&[p]), &foo()).is_err(), "{p}");
        }
    }

    #[test]
    fn substring_lookup_like_istiod() {
        assert!(may_match("a.foo", "a.foo"));
        assert!(may_match("a.foo", "xa.foo.bar"));
        assert!(may_match("a.foo-1", "a.foo-1.bar"));
        assert!(may_match("bar-3", "a.bar"), "reaches into the counter");
        assert!(may_match("-3", "a.bar"));
        assert!(may_match("12", "a.bar"));
        assert!(!may_match("a.foo", "b.bar"));
        assert!(!may_match("a.foo-x", "a.foo"));
        let known = ["a.foo", "a.foo.bar", "b.foo"];
        let v = Visibility::Namespace("foo".into());
        assert_eq!(foreign_match("a.foo", known, &v), Some("a.foo.bar"));
        assert_eq!(foreign_match("b.foo", known, &v), None);
    }

    #[test]
    fn connections_keep_the_callers_namespace_only() {
        use proto::envoy::google::protobuf::{Struct, Value, value::Kind};
        let node = |id: &str, ns: Option<&str>| {
            let mut n = Node {
                id: id.into(),
                ..Default::default()
            };
            if let Some(ns) = ns {
                let mut s = Struct::default();
                s.fields.insert(
                    "NAMESPACE".into(),
                    Value {
                        kind: Some(Kind::StringValue(ns.into())),
                    },
                );
                n.metadata = Some(s);
            }
            Any {
                type_url: NODE_TYPE.into(),
                value: n.encode_to_vec(),
            }
        };
        let all = [
            node("sidecar~10.0.0.1~a.foo~foo.svc.cluster.local", Some("foo")),
            node("sidecar~10.0.0.2~b.bar~bar.svc.cluster.local", Some("bar")),
            node("sidecar~10.0.0.3~c.bar~bar.svc.cluster.local", Some("foo")),
            node("sidecar~10.0.0.4~d.foo~foo.svc.cluster.local", None),
            node("no-tildes", None),
            Any {
                type_url: "garbage".into(),
                value: vec![1, 2, 3],
            },
        ];
        let all: Vec<prost::bytes::Bytes> = all.iter().map(crate::wire::encode_any).collect();
        let foo = Visibility::Namespace("foo".into());
        let ids: Vec<String> = all
            .iter()
            .filter(|a| sees_connection(a, &foo))
            .map(|a| {
                let (_, value) = crate::wire::scan_any(a).unwrap();
                Node::decode(value).unwrap().id
            })
            .collect();
        assert_eq!(
            ids,
            [
                "sidecar~10.0.0.1~a.foo~foo.svc.cluster.local",
                "sidecar~10.0.0.4~d.foo~foo.svc.cluster.local"
            ]
        );
        assert!(all.iter().all(|a| sees_connection(a, &Visibility::All)));
    }
}
