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
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::Client;
use serde_json::Value;

use crate::manifests::object_name;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "proxy-conformance";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{object}: {action} failed: {source}")]
    Api { object: String, action: &'static str, source: kube::Error },
    #[error("{object}: not {what} within {bound:?}")]
    Timeout { object: String, what: String, bound: Duration },
    #[error("{object}: {what}")]
    Invalid { object: String, what: String },
}

impl KubeError {
    /// What to try, for the step's error message.
    pub fn hint(&self) -> &'static str {
        match self {
            KubeError::Api { source: kube::Error::Api(e), .. } if e.code == 400 || e.code == 422 => {
                "the API server rejected the object (strict field validation: an unknown or misspelt field, or a wrong Kubernetes version for this Istio line)"
            }
            KubeError::Api { source: kube::Error::Api(e), .. } if e.code == 404 => {
                "the kind is not served: is its CRD installed, and is the Kubernetes version right for this Istio line?"
            }
            KubeError::Api { .. } => "is the cluster reachable (kubectl cluster-info --context ...)?",
            KubeError::Timeout { .. } => "look at the object's events and the pods' logs in the exported cluster logs",
            KubeError::Invalid { .. } => "the manifest is not a Kubernetes object",
        }
    }
}

fn gvk_of(doc: &Value) -> Result<GroupVersionKind, KubeError> {
    let object = object_name(doc);
    let api_version = doc["apiVersion"].as_str().ok_or_else(|| KubeError::Invalid { object: object.clone(), what: "no apiVersion".into() })?;
    let kind = doc["kind"].as_str().ok_or_else(|| KubeError::Invalid { object: object.clone(), what: "no kind".into() })?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

/// Applies documents in a safe order: CRDs first, each Established (bounded) before the rest.
/// `default_ns` is used for namespaced objects without a namespace (like `kubectl apply -n`).
pub async fn apply_documents(client: &Client, docs: &[Value], default_ns: Option<&str>, bound: Duration) -> Result<Vec<String>, KubeError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force().validation_strict();
    let (crds, rest): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| d["kind"] == "CustomResourceDefinition");
    let mut applied = Vec::new();
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd_names = Vec::new();
    for d in crds {
        let object = object_name(d);
        let name = d["metadata"]["name"].as_str().ok_or_else(|| KubeError::Invalid { object: object.clone(), what: "no metadata.name".into() })?;
        crd_api.patch(name, &pp, &Patch::Apply(d)).await.map_err(|source| KubeError::Api { object: object.clone(), action: "server-side apply", source })?;
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
                .map_err(|source| KubeError::Api { object: object.clone(), action: "discovery of its kind", source })?;
            kinds.insert(gvk.clone(), found);
        }
        let (ar, caps) = &kinds[&gvk];
        let name = d["metadata"]["name"].as_str().ok_or_else(|| KubeError::Invalid { object: object.clone(), what: "no metadata.name".into() })?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), ar),
            Scope::Namespaced => {
                let ns = d["metadata"]["namespace"].as_str().or(default_ns).unwrap_or("default");
                Api::namespaced_with(client.clone(), ns, ar)
            }
        };
        let mut doc = d.clone();
        if caps.scope == Scope::Namespaced && doc["metadata"]["namespace"].is_null() {
            doc["metadata"]["namespace"] = Value::from(default_ns.unwrap_or("default"));
        }
        api.patch(name, &pp, &Patch::Apply(&doc)).await.map_err(|source| KubeError::Api { object: object_name(&doc), action: "server-side apply", source })?;
        applied.push(object_name(&doc));
    }
    Ok(applied)
}

async fn bounded<T, F>(object: String, what: &str, bound: Duration, fut: F) -> Result<T, KubeError>
where
    F: std::future::Future<Output = Result<T, KubeError>>,
{
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => Err(KubeError::Timeout { object, what: what.into(), bound }),
    }
}

pub async fn wait_crds_established(client: &Client, names: &[String], bound: Duration) -> Result<(), KubeError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        let object = format!("CustomResourceDefinition {name}");
        bounded(object.clone(), "Established", bound, async {
            await_condition(api.clone(), name, conditions::is_crd_established())
                .await
                .map(|_| ())
                .map_err(|e| KubeError::Invalid { object: object.clone(), what: format!("watch failed: {e}") })
        })
        .await?;
    }
    Ok(())
}

/// All `replicas` updated and available for the current generation (stricter than
/// `is_deployment_completed`, which only looks at the Progressing reason).
pub fn deployment_available(replicas: i32) -> impl Fn(Option<&Deployment>) -> bool {
    move |d| {
        let Some(d) = d else { return false };
        let (Some(status), Some(generation)) = (&d.status, d.metadata.generation) else { return false };
        status.observed_generation.unwrap_or(0) >= generation
            && status.updated_replicas.unwrap_or(0) >= replicas
            && status.available_replicas.unwrap_or(0) >= replicas
    }
}

pub async fn wait_deployment_available(client: &Client, ns: &str, name: &str, replicas: u32, bound: Duration) -> Result<(), KubeError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let object = format!("Deployment {ns}/{name}");
    let replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
    bounded(object.clone(), &format!("available with {replicas} replicas"), bound, async {
        await_condition(api, name, deployment_available(replicas))
            .await
            .map(|_| ())
            .map_err(|e| KubeError::Invalid { object: object.clone(), what: format!("watch failed: {e}") })
    })
    .await
}

pub async fn wait_webhook_ca_bundle(client: &Client, name: &str, bound: Duration) -> Result<(), KubeError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let object = format!("MutatingWebhookConfiguration {name}");
    let cond = |m: Option<&MutatingWebhookConfiguration>| {
        m.and_then(|m| m.webhooks.as_ref())
            .is_some_and(|w| !w.is_empty() && w.iter().all(|h| h.client_config.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty())))
    };
    bounded(object.clone(), "patched with a caBundle", bound, async {
        await_condition(api, name, cond).await.map(|_| ()).map_err(|e| KubeError::Invalid { object: object.clone(), what: format!("watch failed: {e}") })
    })
    .await
}

/// The first LoadBalancer ingress IP of a Service.
pub async fn load_balancer_ip(client: &Client, ns: &str, name: &str, bound: Duration) -> Result<String, KubeError> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let object = format!("Service {ns}/{name}");
    let ip = |s: &Service| -> Option<String> { s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?.ip.clone() };
    let svc = bounded(object.clone(), "given a LoadBalancer IP (is MetalLB or cloud-provider-kind running?)", bound, async {
        await_condition(api, name, |s: Option<&Service>| s.and_then(ip).is_some())
            .await
            .map_err(|e| KubeError::Invalid { object: object.clone(), what: format!("watch failed: {e}") })
    })
    .await?;
    svc.as_ref().and_then(ip).ok_or_else(|| KubeError::Invalid { object, what: "deleted while waiting for its LoadBalancer IP".into() })
}

/// Every pod matching `selector` in `ns` is Ready with `containers` containers, and there is at least one.
pub async fn wait_pods_ready(client: &Client, ns: &str, selector: &str, containers: usize, bound: Duration) -> Result<(), KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let object = format!("pods {ns} -l '{selector}'");
    let ready = |p: &Pod| {
        let n = p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
        let ok = p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        n == containers && ok
    };
    bounded(object.clone(), &format!("Ready with {containers} containers each"), bound, async {
        let mut pods: BTreeMap<String, bool> = BTreeMap::new();
        let mut init: BTreeMap<String, bool> = BTreeMap::new();
        let mut stream = watcher(api, watcher::Config::default().labels(selector)).boxed();
        while let Some(ev) = stream.try_next().await.map_err(|e| KubeError::Invalid { object: object.clone(), what: format!("watch failed: {e}") })? {
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
        Err(KubeError::Invalid { object: object.clone(), what: "watch ended".into() })
    })
    .await
}

/// A token for `ns/sa` from the TokenRequest API (audience `istio-ca`: what istiod accepts).
pub async fn token_request(client: &Client, ns: &str, sa: &str, audience: &str, ttl: Duration) -> Result<String, KubeError> {
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
    let body = serde_json::to_vec(&req).map_err(|e| KubeError::Invalid { object: object.clone(), what: format!("TokenRequest: {e}") })?;
    let resp: TokenRequest = api
        .create_subresource("token", sa, &PostParams::default(), body)
        .await
        .map_err(|source| KubeError::Api { object: object.clone(), action: "TokenRequest", source })?;
    resp.status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or(KubeError::Invalid { object, what: "TokenRequest answered without a token".into() })
}
