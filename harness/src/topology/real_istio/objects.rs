//! The Kubernetes objects of the real-istio topology, as documents for the
//! cluster crate's server-side apply: what the install guide puts in each
//! cluster (clusters.md, steps 2–4), minus what only a kubelet or a
//! controller would do (the topology writes pod status itself).

use serde_json::{Value, json};

/// istiod's namespace in both clusters (the guide's).
pub const ISTIO_NAMESPACE: &str = "external-istiod";
/// The blog's application namespace.
pub const SAMPLE_NAMESPACE: &str = "sample";
/// istiod's labels: what the reference's Kubernetes discovery (and the
/// sample's) select (`app=istiod`, `istio.io/rev=default`).
pub const ISTIOD_APP: &str = "istiod";

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn service_account(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": ns}})
}

/// The mesh config istiod reads from the config cluster (`SHARED_MESH_CONFIG=istio`
/// merges the ConfigMap `istio` of its namespace over its `--meshConfig`).
pub fn mesh_config_map(ns: &str, mesh: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "istio", "namespace": ns, "labels": {"istio.io/rev": "default"}},
           "data": {"mesh": mesh}})
}

/// The external cluster's `istiod` Deployment: nothing reconciles it here
/// (no controller manager); it records what the pods belong to.
pub fn istiod_deployment(ns: &str, replicas: usize, version: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "istiod", "namespace": ns,
                        "labels": {"app": ISTIOD_APP, "istio.io/rev": "default"}},
           "spec": {"replicas": replicas,
                    "selector": {"matchLabels": {"app": ISTIOD_APP, "istio.io/rev": "default"}},
                    "template": istiod_template(version)}})
}

fn istiod_template(version: &str) -> Value {
    json!({"metadata": {"labels": {"app": ISTIOD_APP, "istio.io/rev": "default"}},
           "spec": {"serviceAccountName": "istiod",
                    "containers": [{"name": "discovery",
                                    "image": format!("pilot-discovery:{version}"),
                                    "ports": [{"containerPort": 15010}, {"containerPort": 15012},
                                              {"containerPort": 15017}, {"containerPort": 15014}]}]}})
}

/// One istiod replica's pod (its status is written once it is ready).
pub fn istiod_pod(ns: &str, name: &str, version: &str) -> Value {
    let t = istiod_template(version);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": t["metadata"]["labels"]},
           "spec": t["spec"]})
}

/// The `istiod` Service: the ports the guide exposes.
pub fn istiod_service(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "istiod", "namespace": ns, "labels": {"app": ISTIOD_APP}},
           "spec": {"selector": {"app": ISTIOD_APP, "istio.io/rev": "default"},
                    "ports": [{"name": "grpc-xds", "port": 15010},
                              {"name": "https-dns", "port": 15012},
                              {"name": "https-webhook", "port": 443, "targetPort": 15017},
                              {"name": "http-monitoring", "port": 15014}]}})
}

/// A workload pod of the mesh (its sidecar is a process or a light client).
pub fn workload_pod(ns: &str, name: &str, app: &str, service_account: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns,
                        "labels": {"app": app, "security.istio.io/tlsMode": "istio"}},
           "spec": {"serviceAccountName": service_account,
                    "containers": [{"name": app, "image": format!("{app}:sample")},
                                   {"name": "istio-proxy", "image": "proxyv2:sample"}]}})
}

/// A Service of the mesh on `port`.
pub fn workload_service(ns: &str, app: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
           "spec": {"selector": {"app": app},
                    "ports": [{"name": "http", "port": port}]}})
}

/// Endpoints per EndpointSlice, as the EndpointSlice controller cuts them
/// (`--max-endpoints-per-slice`, default 100; the API allows 1000).
pub const ENDPOINTS_PER_SLICE: usize = 100;

/// Its EndpointSlices, [`ENDPOINTS_PER_SLICE`] endpoints each: nobody
/// generates them without a controller manager, and istiod reads endpoints
/// from them.
pub fn endpoint_slices(ns: &str, app: &str, port: u16, pods: &[(String, String)]) -> Vec<Value> {
    pods.chunks(ENDPOINTS_PER_SLICE)
        .enumerate()
        .map(|(i, chunk)| endpoint_slice(ns, &format!("{app}-real-{i}"), app, port, chunk))
        .collect()
}

fn endpoint_slice(ns: &str, name: &str, app: &str, port: u16, pods: &[(String, String)]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|(pod, ip)| {
            json!({"addresses": [ip], "conditions": {"ready": true},
                   "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": ns,
                        "labels": {"kubernetes.io/service-name": app,
                                   "endpointslice.kubernetes.io/managed-by": "proxy-conformance"}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
           "endpoints": endpoints})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istiod_pods_carry_what_discovery_selects() {
        let p = istiod_pod(ISTIO_NAMESPACE, "istiod-abc", "1.32.0-dev");
        assert_eq!(p["metadata"]["labels"]["app"], "istiod");
        assert_eq!(p["metadata"]["labels"]["istio.io/rev"], "default");
        assert_eq!(
            p["spec"]["containers"][0]["image"],
            "pilot-discovery:1.32.0-dev"
        );
        let d = istiod_deployment(ISTIO_NAMESPACE, 3, "1.32.0-dev");
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            d["spec"]["template"]["metadata"]["labels"]
        );
    }

    #[test]
    fn endpoint_slices_are_cut_as_the_controller_cuts_them() {
        let pods: Vec<(String, String)> = (0..1001)
            .map(|i| (format!("p{i}"), format!("10.244.{}.{}", i / 250, i % 250)))
            .collect();
        let slices = endpoint_slices(SAMPLE_NAMESPACE, "helloworld", 5000, &pods);
        assert_eq!(slices.len(), 11);
        assert_eq!(slices[10]["endpoints"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            slices[0]["metadata"]["labels"]["kubernetes.io/service-name"],
            "helloworld"
        );
    }
}
