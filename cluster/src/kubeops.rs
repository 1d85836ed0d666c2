//! Every Kubernetes API call of the bench, through the `kube` crate: server-side
//! apply with strict field validation (CRDs first and Established before the
//! rest), bounded waits through `kube::runtime`, TokenRequest. Each error names
//! the object.
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::watcher;
use serde_json::Value;

use crate::manifests::object_name;

/// A client for one context of the kubeconfig (`KUBECONFIG` or `~/.kube/config`).
pub async fn client_for_context(context: &str) -> Result<Client, KubeError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let object = format!("kubeconfig context {context}");
    let invalid = |what: String| KubeError::Invalid {
        object: object.clone(),
        what,
    };
    let kc = Kubeconfig::read().map_err(|e| {
        invalid(format!(
            "cannot read the kubeconfig ({e}): is KUBECONFIG set, or ~/.kube/config present?"
        ))
    })?;
    let opts = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| invalid(format!("{e} (kubectl config get-contexts lists them)")))?;
    Client::try_from(cfg).map_err(|e| invalid(format!("no client: {e}")))
}

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "proxy-conformance";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{object}: {action} failed: {source}")]
    Api {
        object: String,
        action: &'static str,
        source: Box<kube::Error>,
    },
    #[error("{object}: not {what} within {bound:?}")]
    Timeout {
        object: String,
        what: String,
        bound: Duration,
    },
    #[error("{object}: {what}")]
    Invalid { object: String, what: String },
}

impl KubeError {
    /// What to try, for the step's error message.
    pub fn hint(&self) -> &'static str {
        match self {
            KubeError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(e) if e.code == 400 || e.code == 422 => {
                    "the API server rejected the object (strict field validation: an unknown or misspelt field, or a wrong Kubernetes version for this Istio line)"
                }
                kube::Error::Api(e) if e.code == 404 => {
                    "the object or its kind is not there: is its CRD installed, and is the Kubernetes version right for this Istio line?"
                }
                _ => "is the cluster reachable (kubectl cluster-info --context ...)?",
            },
            KubeError::Timeout { .. } => {
                "look at the object's events and the pods' logs in the exported cluster logs"
            }
            KubeError::Invalid { .. } => "the manifest is not a Kubernetes object",
        }
    }
}

fn gvk_of(doc: &Value) -> Result<GroupVersionKind, KubeError> {
    let object = object_name(doc);
    let api_version = doc["apiVersion"]
        .as_str()
        .ok_or_else(|| KubeError::Invalid {
            object: object.clone(),
            what: "no apiVersion".into(),
        })?;
    let kind = doc["kind"].as_str().ok_or_else(|| KubeError::Invalid {
        object: object.clone(),
        what: "no kind".into(),
    })?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

/// Applies documents in a safe order: CRDs first, each Established (bounded) before the rest.
/// `default_ns` is used for namespaced objects without a namespace (like `kubectl apply -n`).
pub async fn apply_documents(
    client: &Client,
    docs: &[Value],
    default_ns: Option<&str>,
    bound: Duration,
) -> Result<Vec<String>, KubeError> {
    let pp = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict();
    let (crds, rest): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|d| d["kind"] == "CustomResourceDefinition");
    let mut applied = Vec::new();
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd_names = Vec::new();
    for d in crds {
        let object = object_name(d);
        let name = d["metadata"]["name"]
            .as_str()
            .ok_or_else(|| KubeError::Invalid {
                object: object.clone(),
                what: "no metadata.name".into(),
            })?;
        crd_api
            .patch(name, &pp, &Patch::Apply(d))
            .await
            .map_err(|source| KubeError::Api {
                object: object.clone(),
                action: "server-side apply",
                source: Box::new(source),
            })?;
        crd_names.push(name.to_string());
        applied.push(object);
    }
    wait_crds_established(client, &crd_names, bound).await?;
    let mut kinds: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> = HashMap::new();
    for d in rest {
        let object = object_name(d);
        let gvk = gvk_of(d)?;
        if !kinds.contains_key(&gvk) {
            let found = kube::discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|source| KubeError::Api {
                    object: object.clone(),
                    action: "discovery of its kind",
                    source: Box::new(source),
                })?;
            kinds.insert(gvk.clone(), found);
        }
        let (ar, caps) = &kinds[&gvk];
        let name = d["metadata"]["name"]
            .as_str()
            .ok_or_else(|| KubeError::Invalid {
                object: object.clone(),
                what: "no metadata.name".into(),
            })?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), ar),
            Scope::Namespaced => {
                let ns = d["metadata"]["namespace"]
                    .as_str()
                    .or(default_ns)
                    .unwrap_or("default");
                Api::namespaced_with(client.clone(), ns, ar)
            }
        };
        let mut doc = d.clone();
        if caps.scope == Scope::Namespaced && doc["metadata"]["namespace"].is_null() {
            doc["metadata"]["namespace"] = Value::from(default_ns.unwrap_or("default"));
        }
        api.patch(name, &pp, &Patch::Apply(&doc))
            .await
            .map_err(|source| KubeError::Api {
                object: object_name(&doc),
                action: "server-side apply",
                source: Box::new(source),
            })?;
        applied.push(object_name(&doc));
    }
    Ok(applied)
}

pub(crate) async fn bounded<T, F>(
    object: String,
    what: &str,
    bound: Duration,
    fut: F,
) -> Result<T, KubeError>
where
    F: std::future::Future<Output = Result<T, KubeError>>,
{
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => Err(KubeError::Timeout {
            object,
            what: what.into(),
            bound,
        }),
    }
}

/// Waits (within `bound`) until `cond` holds for `name`; errors name `object`.
async fn wait_until<K>(
    api: Api<K>,
    name: &str,
    object: String,
    what: &str,
    bound: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>, KubeError>
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    let watched = object.clone();
    bounded(object, what, bound, async move {
        await_condition(api, name, cond)
            .await
            .map_err(|e| KubeError::Invalid {
                object: watched,
                what: format!("watch failed: {e}"),
            })
    })
    .await
}

pub async fn wait_crds_established(
    client: &Client,
    names: &[String],
    bound: Duration,
) -> Result<(), KubeError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        wait_until(
            api.clone(),
            name,
            format!("CustomResourceDefinition {name}"),
            "Established",
            bound,
            conditions::is_crd_established(),
        )
        .await?;
    }
    Ok(())
}

/// All `replicas` updated and available for the current generation (stricter than
/// `is_deployment_completed`, which only looks at the Progressing reason).
pub fn deployment_available(replicas: i32) -> impl Fn(Option<&Deployment>) -> bool {
    move |d| {
        let Some(d) = d else { return false };
        let (Some(status), Some(generation)) = (&d.status, d.metadata.generation) else {
            return false;
        };
        status.observed_generation.unwrap_or(0) >= generation
            && status.updated_replicas.unwrap_or(0) >= replicas
            && status.available_replicas.unwrap_or(0) >= replicas
    }
}

pub async fn wait_deployment_available(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: u32,
    bound: Duration,
) -> Result<(), KubeError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let object = format!("Deployment {ns}/{name}");
    let replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
    wait_until(
        api,
        name,
        object,
        &format!("available with {replicas} replicas"),
        bound,
        deployment_available(replicas),
    )
    .await
    .map(|_| ())
}

pub async fn wait_webhook_ca_bundle(
    client: &Client,
    name: &str,
    bound: Duration,
) -> Result<(), KubeError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let object = format!("MutatingWebhookConfiguration {name}");
    let cond = |m: Option<&MutatingWebhookConfiguration>| {
        m.and_then(|m| m.webhooks.as_ref()).is_some_and(|w| {
            !w.is_empty()
                && w.iter().all(|h| {
                    h.client_config
                        .ca_bundle
                        .as_ref()
                        .is_some_and(|b| !b.0.is_empty())
                })
        })
    };
    wait_until(api, name, object, "patched with a caBundle", bound, cond)
        .await
        .map(|_| ())
}

/// The first LoadBalancer ingress IP of a Service.
pub async fn load_balancer_ip(
    client: &Client,
    ns: &str,
    name: &str,
    bound: Duration,
) -> Result<String, KubeError> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let object = format!("Service {ns}/{name}");
    let ip = |s: &Service| -> Option<String> {
        s.status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .first()?
            .ip
            .clone()
    };
    let svc = wait_until(
        api,
        name,
        object.clone(),
        "given a LoadBalancer IP (is MetalLB or cloud-provider-kind running?)",
        bound,
        |s: Option<&Service>| s.and_then(ip).is_some(),
    )
    .await?;
    svc.as_ref().and_then(ip).ok_or_else(|| KubeError::Invalid {
        object,
        what: "deleted while waiting for its LoadBalancer IP".into(),
    })
}

/// Every pod matching `selector` in `ns` is Ready with `containers` containers, and there is at least one.
pub async fn wait_pods_ready(
    client: &Client,
    ns: &str,
    selector: &str,
    containers: usize,
    bound: Duration,
) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let object = format!("pods {ns} -l '{selector}'");
    let ready = |p: &Pod| {
        p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0) == containers && pod_ready(p)
    };
    bounded(
        object.clone(),
        &format!("Ready with {containers} containers each"),
        bound,
        async {
            let mut pods: BTreeMap<String, bool> = BTreeMap::new();
            let mut init: BTreeMap<String, bool> = BTreeMap::new();
            let mut stream = watcher(api, watcher::Config::default().labels(selector)).boxed();
            while let Some(ev) = stream.try_next().await.map_err(|e| KubeError::Invalid {
                object: object.clone(),
                what: format!("watch failed: {e}"),
            })? {
                match ev {
                    watcher::Event::Init => init.clear(),
                    watcher::Event::InitApply(p) => {
                        init.insert(p.metadata.name.clone().unwrap_or_default(), ready(&p));
                    }
                    watcher::Event::InitDone => pods = std::mem::take(&mut init),
                    watcher::Event::Apply(p) => {
                        pods.insert(p.metadata.name.clone().unwrap_or_default(), ready(&p));
                    }
                    watcher::Event::Delete(p) => {
                        pods.remove(&p.metadata.name.clone().unwrap_or_default());
                    }
                }
                if !pods.is_empty() && pods.values().all(|r| *r) {
                    return Ok(());
                }
            }
            Err(KubeError::Invalid {
                object: object.clone(),
                what: "watch ended".into(),
            })
        },
    )
    .await
}

/// `pod.namespace` of every pod (all namespaces) that is Running with an `istio-proxy` container:
/// the rows `istioctl proxy-status` must show.
pub async fn pods_with_sidecar(
    client: &Client,
) -> Result<std::collections::BTreeSet<String>, KubeError> {
    let api: Api<Pod> = Api::all(client.clone());
    let pods = api
        .list(&Default::default())
        .await
        .map_err(|source| KubeError::Api {
            object: "pods (all namespaces)".into(),
            action: "list",
            source: Box::new(source),
        })?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.containers.iter().any(|c| c.name == "istio-proxy"))
        })
        .map(|p| {
            format!(
                "{}.{}",
                p.metadata.name.as_deref().unwrap_or("?"),
                p.metadata.namespace.as_deref().unwrap_or("?")
            )
        })
        .collect())
}

/// `kubectl port-forward service/NAME LOCAL:PORT` through kube's `ws` feature: picks a Running,
/// Ready pod behind the Service, resolves the Service port's targetPort (number or name), binds
/// 127.0.0.1:`local`, and opens one pod port-forward per accepted connection. Runs until the
/// returned task is aborted.
pub async fn port_forward_service(
    client: &Client,
    ns: &str,
    service: &str,
    local: u16,
    port: u16,
) -> Result<tokio::task::JoinHandle<()>, KubeError> {
    let (pods, pod_name, target) = service_target(client, ns, service, port).await?;
    let listener = listen(local).await?;
    Ok(forward(listener, pods, pod_name, target))
}

/// [`port_forward_service`] on a free port of 127.0.0.1: where it listens, and the task.
pub async fn port_forward_service_any(
    client: &Client,
    ns: &str,
    service: &str,
    port: u16,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), KubeError> {
    let (pods, pod_name, target) = service_target(client, ns, service, port).await?;
    let listener = listen(0).await?;
    let addr = local_addr(&listener)?;
    Ok((addr, forward(listener, pods, pod_name, target)))
}

/// `kubectl port-forward pod/NAME :PORT`: a free port of 127.0.0.1 forwarded to the pod's
/// `port`, one pod port-forward per accepted connection. Runs until the task is aborted.
pub async fn port_forward_pod(
    client: &Client,
    ns: &str,
    pod: &str,
    port: u16,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listener = listen(0).await?;
    let addr = local_addr(&listener)?;
    Ok((addr, forward(listener, pods, pod.to_string(), port)))
}

async fn listen(local: u16) -> Result<tokio::net::TcpListener, KubeError> {
    tokio::net::TcpListener::bind(("127.0.0.1", local))
        .await
        .map_err(|e| KubeError::Invalid {
            object: format!("localhost:{local}"),
            what: format!("cannot listen: {e} (is another port-forward running?)"),
        })
}

fn local_addr(l: &tokio::net::TcpListener) -> Result<std::net::SocketAddr, KubeError> {
    l.local_addr().map_err(|e| KubeError::Invalid {
        object: "a port-forward's listener".into(),
        what: format!("no local address: {e}"),
    })
}

/// A Ready pod behind the Service and the container port its `port` targets.
async fn service_target(
    client: &Client,
    ns: &str,
    service: &str,
    port: u16,
) -> Result<(Api<Pod>, String, u16), KubeError> {
    let object = format!("Service {ns}/{service}");
    let svc: Service = Api::<Service>::namespaced(client.clone(), ns)
        .get(service)
        .await
        .map_err(|source| KubeError::Api {
            object: object.clone(),
            action: "get",
            source: Box::new(source),
        })?;
    let spec = svc.spec.unwrap_or_default();
    let selector: Vec<String> = spec
        .selector
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if selector.is_empty() {
        return Err(KubeError::Invalid {
            object,
            what: "has no selector: nothing to forward to".into(),
        });
    }
    let sp = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.port == i32::from(port));
    let sp = sp.ok_or_else(|| KubeError::Invalid {
        object: object.clone(),
        what: format!("has no port {port}"),
    })?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&kube::api::ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|source| KubeError::Api {
            object: format!("pods of {object}"),
            action: "list",
            source: Box::new(source),
        })?;
    let pod = list
        .items
        .iter()
        .find(|p| pod_ready(p))
        .ok_or_else(|| KubeError::Invalid {
            object: object.clone(),
            what: "no Ready pod behind it".into(),
        })?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let target: u16 = match sp.target_port {
        None => port,
        Some(IntOrString::Int(n)) => u16::try_from(n).unwrap_or(port),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| KubeError::Invalid {
                object: format!("Pod {ns}/{pod_name}"),
                what: format!("no container port named {name}"),
            })?,
    };
    Ok((pods, pod_name, target))
}

/// Accepts on `listener` until aborted; each connection gets its own pod port-forward.
fn forward(
    listener: tokio::net::TcpListener,
    pods: Api<Pod>,
    pod_name: String,
    target: u16,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let pods = pods.clone();
            let pod_name = pod_name.clone();
            tokio::spawn(async move {
                let mut pf = match pods.portforward(&pod_name, &[target]).await {
                    Ok(pf) => pf,
                    Err(e) => {
                        tracing::warn!(pod = %pod_name, "port-forward failed: {e}");
                        return;
                    }
                };
                if let Some(mut upstream) = pf.take_stream(target) {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
            });
        }
    })
}

/// How many proxies one istiod pod has connected: `GET /debug/syncz` on its monitoring port 15014
/// (InitDebug on the monitoring mux: 1.12.9:pilot/pkg/bootstrap/server.go:625,
/// 1.30.3:pilot/pkg/bootstrap/server.go:675) through a pod port-forward, which arrives from
/// localhost inside the pod and so needs no token (1.30.3:pilot/pkg/xds/debug.go:244
/// allowAuthenticatedOrLocalhost; the same in 1.12.9).
pub async fn syncz_count(
    client: &Client,
    ns: &str,
    pod: &str,
    bound: Duration,
) -> Result<usize, KubeError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let object = format!("Pod {ns}/{pod}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    bounded(
        object.clone(),
        "answering /debug/syncz on 15014",
        bound,
        async {
            let mut pf =
                pods.portforward(pod, &[15014])
                    .await
                    .map_err(|source| KubeError::Api {
                        object: object.clone(),
                        action: "port-forward 15014",
                        source: Box::new(source),
                    })?;
            let mut stream = pf.take_stream(15014).ok_or_else(|| KubeError::Invalid {
                object: object.clone(),
                what: "port-forward gave no stream".into(),
            })?;
            // HTTP/1.0: the body ends with the connection, never chunked.
            let io = |e: std::io::Error| KubeError::Invalid {
                object: object.clone(),
                what: format!("/debug/syncz: {e}"),
            };
            stream
                .write_all(b"GET /debug/syncz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .await
                .map_err(io)?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.map_err(io)?;
            syncz_entries(&raw).map_err(|what| KubeError::Invalid {
                object: object.clone(),
                what,
            })
        },
    )
    .await
}

/// The number of proxies in a raw HTTP/1.0 answer of `/debug/syncz` (a JSON array).
pub fn syncz_entries(raw: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("/debug/syncz: no HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        return Err(format!("/debug/syncz answered {status:?}"));
    }
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("/debug/syncz: not JSON: {e}"))?;
    v.as_array()
        .map(Vec::len)
        .ok_or_else(|| "/debug/syncz: not a JSON list".to_string())
}

/// Names of the Ready pods matching `selector`.
pub async fn ready_pods(
    client: &Client,
    ns: &str,
    selector: &str,
) -> Result<Vec<String>, KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .map_err(|source| KubeError::Api {
            object: format!("pods {ns} -l '{selector}'"),
            action: "list",
            source: Box::new(source),
        })?;
    Ok(list
        .items
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect())
}

/// Ready and not being deleted.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes the pods matching `selector` (their Deployments make new ones: a re-roll).
pub async fn delete_pods(client: &Client, ns: &str, selector: &str) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.delete_collection(
        &Default::default(),
        &kube::api::ListParams::default().labels(selector),
    )
    .await
    .map(|_| ())
    .map_err(|source| KubeError::Api {
        object: format!("pods {ns} -l '{selector}'"),
        action: "delete",
        source: Box::new(source),
    })
}

/// Plays kubelet for a pod no kubelet runs (the real-istio topology's
/// processes): writes its status as Running and Ready with this pod IP, the
/// fields istiod and the proxies' discovery read.
pub async fn write_pod_running(
    client: &Client,
    ns: &str,
    pod: &str,
    ip: &str,
) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = chrono_now();
    let status = serde_json::json!({
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": ip,
            "startTime": now,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ],
        }
    });
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(|_| ())
        .map_err(|source| KubeError::Api {
            object: format!("Pod {ns}/{pod}"),
            action: "write status",
            source: Box::new(source),
        })
}

/// Now, as Kubernetes writes its timestamps.
fn chrono_now() -> Value {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    serde_json::to_value(Time(k8s_openapi::chrono::Utc::now())).unwrap_or(Value::Null)
}

/// Deletes one pod, at once (no grace: nothing runs in it to stop).
pub async fn delete_pod(client: &Client, ns: &str, pod: &str) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match api.delete(pod, &now).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            object: format!("Pod {ns}/{pod}"),
            action: "delete",
            source: Box::new(source),
        }),
    }
}

/// A token for `ns/sa` from the TokenRequest API (audience `istio-ca`: what istiod accepts).
pub async fn token_request(
    client: &Client,
    ns: &str,
    sa: &str,
    audience: &str,
    ttl: Duration,
) -> Result<String, KubeError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let object = format!("ServiceAccount {ns}/{sa}");
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.into()],
            expiration_seconds: Some(i64::try_from(ttl.as_secs()).unwrap_or(3600)),
            ..Default::default()
        },
        ..Default::default()
    };
    let body = serde_json::to_vec(&req).map_err(|e| KubeError::Invalid {
        object: object.clone(),
        what: format!("TokenRequest: {e}"),
    })?;
    let resp: TokenRequest = api
        .create_subresource("token", sa, &PostParams::default(), body)
        .await
        .map_err(|source| KubeError::Api {
            object: object.clone(),
            action: "TokenRequest",
            source: Box::new(source),
        })?;
    resp.status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or(KubeError::Invalid {
            object,
            what: "TokenRequest answered without a token".into(),
        })
}

/// The kube calls against a scripted API server (tower-test): each test names
/// the requests it expects, in order, and what the server answers.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::scripted_api::scripted;

    fn crd(established: bool) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gateways.networking.istio.io", "resourceVersion": "5"},
            "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                     "names": {"kind": "Gateway", "plural": "gateways"},
                     "versions": [{"name": "v1beta1", "served": true, "storage": true}]},
            "status": {"conditions": [{"type": "Established", "status": if established {"True"} else {"False"}}]}
        })
    }

    fn status(code: u16, reason: &str, message: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message})
    }

    #[tokio::test]
    async fn apply_puts_crds_first_waits_established_then_applies_the_rest() {
        let gw = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
                        "metadata": {"name": "external-istiod-gw"}, "spec": {"selector": {"istio": "ingressgateway"}}});
        let mut crd_doc = crd(false);
        crd_doc.as_object_mut().unwrap().remove("status");
        let (client, seen) = scripted(vec![
            (
                "PATCH",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gateways.networking.istio.io?",
                200,
                crd(false),
            ),
            (
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?",
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "6"}, "items": [crd(true)]}),
            ),
            (
                "GET",
                "/apis/networking.istio.io/v1beta1",
                200,
                json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "networking.istio.io/v1beta1",
                "resources": [{"name": "gateways", "singularName": "gateway", "namespaced": true, "kind": "Gateway",
                               "verbs": ["get", "list", "watch", "create", "patch"]}]}),
            ),
            (
                "PATCH",
                "/apis/networking.istio.io/v1beta1/namespaces/external-istiod/gateways/external-istiod-gw?",
                200,
                gw.clone(),
            ),
        ]);
        // The Gateway comes first in the file: the CRD is still applied first.
        let applied = apply_documents(
            &client,
            &[gw, crd_doc],
            Some("external-istiod"),
            Duration::from_secs(5),
        )
        .await;
        let seen = seen.await.unwrap();
        let applied = applied.unwrap_or_else(|e| panic!("{e}; requests: {seen:#?}"));
        assert_eq!(
            applied,
            [
                "CustomResourceDefinition gateways.networking.istio.io",
                "Gateway external-istiod/external-istiod-gw"
            ]
        );
        let patch = &seen[0].1;
        assert!(
            patch.contains("fieldManager=proxy-conformance")
                && patch.contains("force=true")
                && patch.contains("fieldValidation=Strict"),
            "{patch}"
        );
        assert!(
            seen[1]
                .1
                .contains("fieldSelector=metadata.name%3Dgateways.networking.istio.io"),
            "{}",
            seen[1].1
        );
        assert_eq!(
            seen[3].2["metadata"]["namespace"], "external-istiod",
            "the default namespace is filled in"
        );
    }

    #[tokio::test]
    async fn a_rejected_apply_names_the_object_and_says_what_to_try() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sample"}, "specc": {}});
        let (client, seen) = scripted(vec![
            (
                "GET",
                "/api/v1",
                200,
                json!({"kind": "APIResourceList", "groupVersion": "v1",
                "resources": [{"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["get", "patch"]}]}),
            ),
            (
                "PATCH",
                "/api/v1/namespaces/sample?",
                422,
                status(422, "Invalid", ".specc: field not declared in schema"),
            ),
        ]);
        let e = apply_documents(&client, &[ns], None, Duration::from_secs(5))
            .await
            .unwrap_err();
        drop(seen);
        let text = e.to_string();
        assert!(
            text.starts_with("Namespace sample: server-side apply failed"),
            "{text}"
        );
        assert!(text.contains("field not declared in schema"), "{text}");
        assert!(e.hint().contains("strict field validation"), "{}", e.hint());
    }

    fn deployment(available: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "istiod", "namespace": "external-istiod", "generation": 2, "resourceVersion": "9"},
               "spec": {"selector": {"matchLabels": {"app": "istiod"}}, "template": {}},
               "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": available}})
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_condition_holds() {
        let (client, seen) = scripted(vec![(
            "GET",
            "/apis/apps/v1/namespaces/external-istiod/deployments?",
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "9"}, "items": [deployment(3)]}),
        )]);
        wait_deployment_available(
            &client,
            "external-istiod",
            "istiod",
            3,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        drop(seen);
    }

    #[tokio::test]
    async fn a_wait_is_bounded_and_names_the_object() {
        // 2 of 3 available, and the watch that follows never answers.
        let (client, seen) = scripted(vec![(
            "GET",
            "/apis/apps/v1/namespaces/external-istiod/deployments?",
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "9"}, "items": [deployment(2)]}),
        )]);
        let e = wait_deployment_available(
            &client,
            "external-istiod",
            "istiod",
            3,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        drop(seen);
        assert!(matches!(e, KubeError::Timeout { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "Deployment external-istiod/istiod: not available with 3 replicas within 300ms"
        );
    }

    #[test]
    fn availability_needs_the_current_generation() {
        let mut d: Deployment = serde_json::from_value(deployment(3)).unwrap();
        assert!(deployment_available(3)(Some(&d)));
        assert!(!deployment_available(4)(Some(&d)));
        d.metadata.generation = Some(3);
        assert!(
            !deployment_available(3)(Some(&d)),
            "a rollout not yet observed"
        );
        assert!(!deployment_available(1)(None));
    }

    #[tokio::test]
    async fn token_request_for_istio_ca() {
        let (client, seen) = scripted(vec![(
            "POST",
            "/api/v1/namespaces/external-istiod/serviceaccounts/default/token?",
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": ["istio-ca"]}, "status": {"token": "eyJ.x.y", "expirationTimestamp": "2030-01-01T00:00:00Z"}}),
        )]);
        let t = token_request(
            &client,
            "external-istiod",
            "default",
            "istio-ca",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        let seen = seen.await.unwrap();
        assert_eq!(t, "eyJ.x.y");
        assert_eq!(seen[0].2["spec"]["audiences"], json!(["istio-ca"]));
        assert_eq!(seen[0].2["spec"]["expirationSeconds"], 600);
    }

    #[tokio::test]
    async fn a_refused_token_request_names_the_service_account() {
        let (client, seen) = scripted(vec![(
            "POST",
            "/api/v1/namespaces/external-istiod/serviceaccounts/nope/token?",
            404,
            status(404, "NotFound", "serviceaccounts \"nope\" not found"),
        )]);
        let e = token_request(
            &client,
            "external-istiod",
            "nope",
            "istio-ca",
            Duration::from_secs(600),
        )
        .await
        .unwrap_err();
        drop(seen);
        assert!(
            e.to_string()
                .starts_with("ServiceAccount external-istiod/nope: TokenRequest failed"),
            "{e}"
        );
    }

    #[test]
    fn syncz_answers() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[{\"proxy\":\"a.sample\"},{\"proxy\":\"b.sample\"}]";
        assert_eq!(syncz_entries(ok), Ok(2));
        assert_eq!(syncz_entries(b"HTTP/1.0 200 OK\r\n\r\n[]"), Ok(0));
        assert!(
            syncz_entries(b"HTTP/1.0 401 Unauthorized\r\n\r\n")
                .unwrap_err()
                .contains("401")
        );
        assert!(syncz_entries(b"garbage").is_err());
    }

    #[tokio::test]
    async fn port_forward_errors_name_the_service_or_pod() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istioctl-proxy", "namespace": "external-istiod"},
                         "spec": {"selector": {"app": "istioctl-proxy"}, "ports": [{"port": 9090, "targetPort": "grpc-tls"}]}});
        let unready = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "istioctl-proxy-1", "namespace": "external-istiod"},
                             "spec": {"containers": [{"name": "istioctl-proxy"}]},
                             "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let (client, seen) = scripted(vec![
            (
                "GET",
                "/api/v1/namespaces/external-istiod/services/istioctl-proxy",
                200,
                svc.clone(),
            ),
            (
                "GET",
                "/api/v1/namespaces/external-istiod/pods?",
                200,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [unready]}),
            ),
        ]);
        let e = port_forward_service(&client, "external-istiod", "istioctl-proxy", 0, 9090)
            .await
            .unwrap_err();
        let seen = seen.await.unwrap();
        assert_eq!(
            e.to_string(),
            "Service external-istiod/istioctl-proxy: no Ready pod behind it"
        );
        assert!(
            seen[1].1.contains("labelSelector=app%3Distioctl-proxy"),
            "{}",
            seen[1].1
        );

        let (client, _seen) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/external-istiod/services/istioctl-proxy",
            200,
            svc,
        )]);
        let e = port_forward_service(&client, "external-istiod", "istioctl-proxy", 0, 8080)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service external-istiod/istioctl-proxy: has no port 8080"
        );
    }

    #[tokio::test]
    async fn load_balancer_ip_waits_for_the_ingress() {
        let svc = |ip: &str| {
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system", "resourceVersion": "3"}, "spec": {},
                "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
        };
        let (client, seen) = scripted(vec![(
            "GET",
            "/api/v1/namespaces/istio-system/services?",
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "3"}, "items": [svc("172.18.255.200")]}),
        )]);
        let ip = load_balancer_ip(
            &client,
            "istio-system",
            "istio-ingressgateway",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        drop(seen);
        assert_eq!(ip, "172.18.255.200");
    }
}
