//! A running external control plane as the conformance suite sees it
//! (`proxy-conformance run --topology cluster`): every Ready istiod pod
//! port-forwarded to 127.0.0.1 (the ground truth, asked directly), the root
//! CA their serving certificates chain to, the proxy under test's Service
//! port-forwarded too, and bearer tokens from the remote cluster's
//! TokenRequest API (the cluster whose API server istiod authenticates
//! callers against: the config cluster of the install guide).
//!
//! Every call goes through `kube`, bounded; errors name the object.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Client;
use kube::api::Api;

use crate::kubeops::{self, KubeError};

/// Where things are in the two clusters.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// istiod's namespace in the external cluster (and istioctl's `--istioNamespace`).
    pub namespace: String,
    /// The label selector of the istiod pods.
    pub istiod_selector: String,
    /// The proxy under test's Service and port in `namespace` of the external
    /// cluster, or `None` when the user gives its address.
    pub proxy_service: Option<(String, u16)>,
    /// Bound of each API call and wait.
    pub bound: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            namespace: "external-istiod".into(),
            istiod_selector: "app=istiod".into(),
            proxy_service: Some(("istioctl-proxy".into(), 9090)),
            bound: Duration::from_secs(30),
        }
    }
}

/// One istiod pod, reachable on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveReplica {
    pub pod: String,
    /// Its discovery container's image (the tag is the Istio release).
    pub image: String,
    /// 127.0.0.1:port forwarded to the pod's 15012 (TLS xDS).
    pub tls_addr: SocketAddr,
}

/// The external control plane, connected. Dropping it stops every port-forward.
#[derive(Debug)]
pub struct Live {
    pub replicas: Vec<LiveReplica>,
    /// PEM of the root every istiod serving certificate chains to.
    pub root_cert_pem: String,
    /// Where the proxy under test is reachable (`None` without `proxy_service`).
    pub proxy_addr: Option<SocketAddr>,
    forwards: Vec<tokio::task::JoinHandle<()>>,
}

impl Live {
    /// Keeps a port-forward running as long as this.
    pub fn keep(&mut self, forward: tokio::task::JoinHandle<()>) {
        self.forwards.push(forward);
    }

    /// A control plane whose replicas and proxy are reachable as they are (no
    /// port-forward): e.g. fake istiod replicas standing in for a cluster in
    /// the harness's own tests.
    pub fn reachable(
        replicas: Vec<LiveReplica>,
        root_cert_pem: String,
        proxy_addr: Option<SocketAddr>,
    ) -> Live {
        Live {
            replicas,
            root_cert_pem,
            proxy_addr,
            forwards: Vec::new(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for f in &self.forwards {
            f.abort();
        }
    }
}

/// The name in istiod's serving certificate that the harness checks: istiod
/// always adds `istiod.<ns>.svc` (with `istiod-remote` and `istio-pilot`) to
/// its DNS certificate's names (`1.12.9:pilot/pkg/bootstrap/server.go`
/// `initIstiodCerts`; `1.30.3:pilot/pkg/bootstrap/server.go` `getDNSNames`).
pub fn istiod_server_name(namespace: &str) -> String {
    format!("istiod.{namespace}.svc")
}

/// Finds the Ready istiod pods, forwards each one's 15012 (and the proxy's
/// Service) to loopback, and reads the root CA: from the remote cluster's
/// `istio-ca-root-cert` ConfigMap in `namespace` (istiod publishes it in
/// every namespace of its config cluster), else from the external cluster's
/// `cacerts` Secret (the shared root `cluster up` plants: the trust pitfall
/// of clusters.md).
pub async fn connect(
    external: &Client,
    remote: &Client,
    opts: &LiveOptions,
) -> Result<Live, KubeError> {
    let ns = &opts.namespace;
    let pods: Api<Pod> = Api::namespaced(external.clone(), ns);
    let object = format!("pods {ns} -l '{}'", opts.istiod_selector);
    let list = kubeops::bounded(object.clone(), "listed", opts.bound, async {
        pods.list(&kube::api::ListParams::default().labels(&opts.istiod_selector))
            .await
            .map_err(|source| KubeError::Api {
                object: object.clone(),
                action: "list",
                source: Box::new(source),
            })
    })
    .await?;
    let mut ready: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| kubeops::pod_ready(p))
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if ready.is_empty() {
        return Err(KubeError::Invalid {
            object,
            what: "no Ready istiod pod (is the external control plane up? `proxy-conformance cluster up`)".into(),
        });
    }
    let mut live = Live {
        replicas: Vec::new(),
        root_cert_pem: String::new(),
        proxy_addr: None,
        forwards: Vec::new(),
    };
    for pod in ready {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let image = discovery_image(pod);
        let (addr, task) = kubeops::port_forward_pod(external, ns, &name, 15012).await?;
        live.forwards.push(task);
        live.replicas.push(LiveReplica {
            pod: name,
            image,
            tls_addr: addr,
        });
    }
    if let Some((service, port)) = &opts.proxy_service {
        let (addr, task) = kubeops::port_forward_service_any(external, ns, service, *port).await?;
        live.forwards.push(task);
        live.proxy_addr = Some(addr);
    }
    live.root_cert_pem = root_cert(external, remote, ns, opts.bound).await?;
    Ok(live)
}

/// Restarts one istiod pod as a crash or a node drain would: deletes it and
/// waits (within `bound`, looking every `poll`) until its Deployment's
/// successor is Ready: a Ready pod matching the selector that was not there
/// before. Forwards the successor's 15012 to loopback.
pub async fn restart_pod(
    client: &Client,
    opts: &LiveOptions,
    pod: &str,
    poll: Duration,
    bound: Duration,
) -> Result<(LiveReplica, tokio::task::JoinHandle<()>), KubeError> {
    let ns = &opts.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = kube::api::ListParams::default().labels(&opts.istiod_selector);
    let object = format!("pods {ns} -l '{}'", opts.istiod_selector);
    let list = || async {
        pods.list(&selector).await.map_err(|source| KubeError::Api {
            object: object.clone(),
            action: "list",
            source: Box::new(source),
        })
    };
    let before: Vec<String> = list()
        .await?
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    pods.delete(pod, &kube::api::DeleteParams::default())
        .await
        .map_err(|source| KubeError::Api {
            object: format!("Pod {ns}/{pod}"),
            action: "delete",
            source: Box::new(source),
        })?;
    let successor = kubeops::bounded(
        format!("the successor of Pod {ns}/{pod}"),
        "Ready",
        bound,
        async {
            loop {
                let now = list().await?;
                if let Some(p) = now.items.iter().find(|p| {
                    kubeops::pod_ready(p)
                        && p.metadata
                            .name
                            .as_ref()
                            .is_some_and(|n| !before.contains(n))
                }) {
                    return Ok(p.clone());
                }
                tokio::time::sleep(poll).await;
            }
        },
    )
    .await?;
    let name = successor.metadata.name.clone().unwrap_or_default();
    let (addr, task) = kubeops::port_forward_pod(client, ns, &name, 15012).await?;
    Ok((
        LiveReplica {
            pod: name,
            image: discovery_image(&successor),
            tls_addr: addr,
        },
        task,
    ))
}

/// The image of the pod's `discovery` container (istiod's), else its first.
fn discovery_image(pod: &Pod) -> String {
    let containers = pod.spec.iter().flat_map(|s| &s.containers);
    let mut first = None;
    for c in containers {
        if c.name == "discovery" {
            return c.image.clone().unwrap_or_default();
        }
        first.get_or_insert_with(|| c.image.clone().unwrap_or_default());
    }
    first.unwrap_or_default()
}

/// The Istio release in an image reference (`docker.io/istio/pilot:1.22.8`,
/// `…/pilot:1.22.8-distroless`), if its tag is one.
pub fn release_of_image(image: &str) -> Option<String> {
    let (_, tag) = image.rsplit_once(':')?;
    // A registry port (`host:5000/pilot`) is not a tag.
    if tag.contains('/') {
        return None;
    }
    let release = tag.split('-').next()?;
    let parts: Vec<&str> = release.split('.').collect();
    (parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| release.to_string())
}

async fn root_cert(
    external: &Client,
    remote: &Client,
    ns: &str,
    bound: Duration,
) -> Result<String, KubeError> {
    let cm_object = format!("ConfigMap {ns}/istio-ca-root-cert (remote cluster)");
    let cms: Api<ConfigMap> = Api::namespaced(remote.clone(), ns);
    let from_cm = kubeops::bounded(cm_object.clone(), "read", bound, async {
        cms.get_opt("istio-ca-root-cert")
            .await
            .map_err(|source| KubeError::Api {
                object: cm_object.clone(),
                action: "get",
                source: Box::new(source),
            })
    })
    .await;
    let cm_problem = match from_cm {
        Ok(Some(cm)) => match cm.data.and_then(|d| d.get("root-cert.pem").cloned()) {
            Some(pem) if pem.contains("BEGIN CERTIFICATE") => return Ok(pem),
            _ => format!("{cm_object} has no root-cert.pem"),
        },
        Ok(None) => format!("{cm_object} does not exist"),
        Err(e) => e.to_string(),
    };
    let secret_object = format!("Secret {ns}/cacerts (external cluster)");
    let secrets: Api<Secret> = Api::namespaced(external.clone(), ns);
    let secret = kubeops::bounded(secret_object.clone(), "read", bound, async {
        secrets
            .get_opt("cacerts")
            .await
            .map_err(|source| KubeError::Api {
                object: secret_object.clone(),
                action: "get",
                source: Box::new(source),
            })
    })
    .await?;
    let pem = secret
        .and_then(|s| s.data)
        .and_then(|d: BTreeMap<_, _>| d.get("root-cert.pem").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    match pem {
        Some(pem) if pem.contains("BEGIN CERTIFICATE") => Ok(pem),
        _ => Err(KubeError::Invalid {
            object: format!("istiod's root CA in {ns}"),
            what: format!("not found: {cm_problem}, and {secret_object} has no root-cert.pem"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted_api::scripted;
    use serde_json::{Value, json};

    fn pod(name: &str, app: &str, ready: bool, image: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "external-istiod", "labels": {"app": app}},
            "spec": {"containers": [
                {"name": "discovery", "image": image,
                 "ports": [{"name": "grpc-xds", "containerPort": 15012}, {"name": "grpc", "containerPort": 9090}]}
            ]},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        })
    }

    fn list(items: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
    }

    const ROOT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[tokio::test]
    async fn forwards_every_ready_istiod_pod_and_the_proxy_and_finds_the_root() {
        let (external, ext_seen) = scripted(vec![
            (
                "GET",
                "/api/v1/namespaces/external-istiod/pods?&labelSelector=app%3Distiod",
                200,
                list(vec![
                    pod("istiod-b", "istiod", true, "docker.io/istio/pilot:1.22.8"),
                    pod("istiod-c", "istiod", false, "docker.io/istio/pilot:1.22.8"),
                    pod(
                        "istiod-a",
                        "istiod",
                        true,
                        "docker.io/istio/pilot:1.22.8-distroless",
                    ),
                ]),
            ),
            (
                "GET",
                "/api/v1/namespaces/external-istiod/services/istioctl-proxy",
                200,
                json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "istioctl-proxy", "namespace": "external-istiod"},
                       "spec": {"selector": {"app": "istioctl-proxy"},
                                "ports": [{"port": 9090, "targetPort": "grpc"}]}}),
            ),
            (
                "GET",
                "/api/v1/namespaces/external-istiod/pods?&labelSelector=app%3Distioctl-proxy",
                200,
                list(vec![pod(
                    "istioctl-proxy-1",
                    "istioctl-proxy",
                    true,
                    "istioctl-proxy:conformance",
                )]),
            ),
            (
                "GET",
                "/api/v1/namespaces/external-istiod/secrets/cacerts",
                200,
                cacerts(ROOT),
            ),
        ]);
        // The remote cluster has no istio-ca-root-cert yet: the planted root is used.
        let (remote, remote_seen) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/external-istiod/configmaps/istio-ca-root-cert",
            404,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
        )]);
        let live = connect(&external, &remote, &LiveOptions::default()).await;
        let (ext_seen, remote_seen) = (ext_seen.await, remote_seen.await);
        let live = live.unwrap_or_else(|e| panic!("{e}; requests: {ext_seen:#?} {remote_seen:#?}"));
        let pods: Vec<(&str, &str)> = live
            .replicas
            .iter()
            .map(|r| (r.pod.as_str(), r.image.as_str()))
            .collect();
        assert_eq!(
            pods,
            [
                ("istiod-a", "docker.io/istio/pilot:1.22.8-distroless"),
                ("istiod-b", "docker.io/istio/pilot:1.22.8")
            ],
            "Ready pods only, by name"
        );
        for r in &live.replicas {
            assert!(
                r.tls_addr.ip().is_loopback() && r.tls_addr.port() != 0,
                "{r:?}"
            );
        }
        assert!(live.proxy_addr.is_some_and(|a| a.port() != 0));
        assert_eq!(live.root_cert_pem, ROOT);
        // The forwards listen: a connection is accepted (the pod side fails
        // later, against this scripted server, and is only logged).
        let addr = live.replicas[0].tls_addr;
        tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        drop(live);
    }

    #[tokio::test]
    async fn no_ready_istiod_pod_is_an_error_that_says_what_to_do() {
        let (external, _) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/external-istiod/pods?&labelSelector=app%3Distiod",
            200,
            list(vec![pod(
                "istiod-c",
                "istiod",
                false,
                "docker.io/istio/pilot:1.22.8",
            )]),
        )]);
        let (remote, _) = scripted(vec![]);
        let err = connect(&external, &remote, &LiveOptions::default())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("external-istiod")
                && err.contains("no Ready istiod pod")
                && err.contains("cluster up"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_remote_clusters_root_wins_and_a_missing_root_names_both_places() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "istio-ca-root-cert", "namespace": "external-istiod"},
                        "data": {"root-cert.pem": ROOT}});
        let (external, _) = scripted(vec![]);
        let (remote, _) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/external-istiod/configmaps/istio-ca-root-cert",
            200,
            cm,
        )]);
        let got = root_cert(
            &external,
            &remote,
            "external-istiod",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got.ok().as_deref(), Some(ROOT));

        let not_found = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"});
        let (external, _) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/external-istiod/secrets/cacerts",
            404,
            not_found.clone(),
        )]);
        let (remote, _) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/external-istiod/configmaps/istio-ca-root-cert",
            404,
            not_found,
        )]);
        let err = root_cert(
            &external,
            &remote,
            "external-istiod",
            Duration::from_secs(5),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("istio-ca-root-cert") && err.contains("cacerts"),
            "{err}"
        );
    }

    const ISTIOD_PODS: &str = "/api/v1/namespaces/external-istiod/pods?&labelSelector=app%3Distiod";

    /// Two Ready istiod pods listed, then istiod-b deleted.
    fn restart_of_istiod_b() -> crate::scripted_api::Script {
        vec![
            (
                "GET",
                ISTIOD_PODS,
                200,
                list(vec![
                    pod("istiod-a", "istiod", true, "istio/pilot:1.30.3"),
                    pod("istiod-b", "istiod", true, "istio/pilot:1.30.3"),
                ]),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/external-istiod/pods/istiod-b?",
                200,
                pod("istiod-b", "istiod", true, "istio/pilot:1.30.3"),
            ),
        ]
    }

    #[tokio::test]
    async fn a_restart_deletes_the_pod_and_waits_for_its_ready_successor() {
        let mut script = restart_of_istiod_b();
        script.extend([
            // Not yet: the old pod terminating, the new one not Ready.
            (
                "GET",
                ISTIOD_PODS,
                200,
                list(vec![
                    pod("istiod-a", "istiod", true, "istio/pilot:1.30.3"),
                    pod("istiod-b", "istiod", true, "istio/pilot:1.30.3"),
                    pod("istiod-c", "istiod", false, "istio/pilot:1.30.3"),
                ]),
            ),
            (
                "GET",
                ISTIOD_PODS,
                200,
                list(vec![
                    pod("istiod-a", "istiod", true, "istio/pilot:1.30.3"),
                    pod("istiod-c", "istiod", true, "istio/pilot:1.30.3"),
                ]),
            ),
        ]);
        let (external, seen) = scripted(script);
        let got = restart_pod(
            &external,
            &LiveOptions::default(),
            "istiod-b",
            Duration::from_millis(10),
            Duration::from_secs(5),
        )
        .await;
        let seen = seen.await;
        let (successor, task) = got.unwrap_or_else(|e| panic!("{e}; requests: {seen:#?}"));
        task.abort();
        assert_eq!(successor.pod, "istiod-c");
        assert_eq!(successor.image, "istio/pilot:1.30.3");
        assert!(successor.tls_addr.ip().is_loopback());
    }

    #[tokio::test]
    async fn a_successor_that_never_comes_is_a_bounded_error_naming_the_pod() {
        let only_a = || list(vec![pod("istiod-a", "istiod", true, "istio/pilot:1.30.3")]);
        let mut script = restart_of_istiod_b();
        script.extend((0..1000).map(|_| ("GET", ISTIOD_PODS, 200, only_a())));
        let (external, _) = scripted(script);
        let err = restart_pod(
            &external,
            &LiveOptions::default(),
            "istiod-b",
            Duration::from_millis(5),
            Duration::from_millis(300),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("successor of Pod external-istiod/istiod-b") && err.contains("Ready"),
            "{err}"
        );
    }

    /// The Secret `cacerts` as the API server sends it (data in base64, by k8s-openapi).
    fn cacerts(root: &str) -> Value {
        use k8s_openapi::ByteString;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("cacerts".into()),
                namespace: Some("external-istiod".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "root-cert.pem".to_string(),
                ByteString(root.as_bytes().to_vec()),
            )])),
            ..Default::default()
        };
        let mut v = serde_json::to_value(&secret).unwrap_or_default();
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("Secret");
        v
    }

    #[test]
    fn releases_of_images() {
        for (image, want) in [
            ("docker.io/istio/pilot:1.22.8", Some("1.22.8")),
            (
                "gcr.io/istio-release/pilot:1.12.9-distroless",
                Some("1.12.9"),
            ),
            ("localhost:5000/istio/pilot:1.30.3", Some("1.30.3")),
            ("localhost:5000/istio/pilot", None),
            ("istio/pilot:latest", None),
            ("istio/pilot@sha256:abcd", None),
        ] {
            assert_eq!(release_of_image(image).as_deref(), want, "{image}");
        }
    }

    #[test]
    fn server_name_is_the_service() {
        assert_eq!(
            istiod_server_name("external-istiod"),
            "istiod.external-istiod.svc"
        );
    }
}
