//! Kubernetes discovery: pods `app=istiod` (plus `istio.io/rev=<rev>` when
//! given) in one namespace, Running and Ready, kept current by a watch (kube's
//! `watcher`, which re-lists and backs off on errors). Each pod is dialled
//! directly on `pod IP:port` (15012): no port-forward, no per-request client.

use super::{DiscoveryHandle, Replica, sorted};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Which pods are istiod replicas.
#[derive(Debug, Clone)]
pub struct PodSelector {
    pub namespace: String,
    pub revision: Option<String>,
    pub port: u16,
}

impl PodSelector {
    /// `app=istiod[,istio.io/rev=<rev>]`
    pub fn label_selector(&self) -> String {
        match &self.revision {
            Some(rev) => format!("app=istiod,istio.io/rev={rev}"),
            None => "app=istiod".to_string(),
        }
    }
}

/// Starts the pod watch; the set is published each time it changes.
pub fn start(client: Client, selector: PodSelector) -> DiscoveryHandle {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let api: Api<Pod> = Api::namespaced(client, &selector.namespace);
    let config = watcher::Config::default().labels(&selector.label_selector());
    let task = tokio::spawn(async move {
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut initial: Option<BTreeMap<String, Pod>> = None;
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let changed = match event {
                Ok(watcher::Event::Init) => {
                    initial = Some(BTreeMap::new());
                    false
                }
                Ok(watcher::Event::InitApply(pod)) => {
                    if let Some(buf) = initial.as_mut() {
                        buf.insert(pod_name(&pod), pod);
                    }
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    pods = initial.take().unwrap_or_default();
                    true
                }
                Ok(watcher::Event::Apply(pod)) => {
                    pods.insert(pod_name(&pod), pod);
                    true
                }
                Ok(watcher::Event::Delete(pod)) => {
                    pods.remove(&pod_name(&pod));
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kubernetes discovery: watch failed; retrying with backoff");
                    false
                }
            };
            if changed {
                let set = sorted(ready_replicas(pods.values(), selector.port));
                if **tx.borrow() != *set {
                    tracing::info!(
                        replicas = ?set.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                        "kubernetes discovery: replica set changed"
                    );
                    if tx.send(set).is_err() {
                        return;
                    }
                }
            }
        }
    });
    DiscoveryHandle::from_task(rx, task)
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Running, Ready, not terminating, with an IP: one replica each.
pub fn ready_replicas<'a>(pods: impl IntoIterator<Item = &'a Pod>, port: u16) -> Vec<Replica> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if !ready {
                return None;
            }
            let ip: std::net::IpAddr = status.pod_ip.as_ref()?.parse().ok()?;
            Some(Replica {
                name: p.metadata.name.clone()?,
                address: std::net::SocketAddr::new(ip, port).to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    fn pod(name: &str, ip: &str, phase: &str, ready: bool) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "istio-system", "labels": {"app": "istiod"}, "resourceVersion": "11"},
            "status": {
                "phase": phase, "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
            }
        })
    }

    #[test]
    fn only_running_ready_pods_with_ips() {
        let pods: Vec<Pod> = [
            pod("istiod-a", "10.0.0.1", "Running", true),
            pod("istiod-b", "10.0.0.2", "Running", false),
            pod("istiod-c", "10.0.0.3", "Pending", true),
            pod("istiod-d", "fd00::4", "Running", true),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let got = ready_replicas(&pods, 15012);
        assert_eq!(
            got,
            vec![
                Replica {
                    name: "istiod-a".into(),
                    address: "10.0.0.1:15012".into()
                },
                Replica {
                    name: "istiod-d".into(),
                    address: "[fd00::4]:15012".into()
                },
            ]
        );
        let sel = PodSelector {
            namespace: "x".into(),
            revision: Some("canary".into()),
            port: 1,
        };
        assert_eq!(sel.label_selector(), "app=istiod,istio.io/rev=canary");
    }

    fn json_response(v: serde_json::Value) -> Response<Body> {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&v).unwrap()))
            .unwrap()
    }

    /// A scripted API server (kube-rs's own test approach: tower-test): the
    /// list answers two pods, the watch then adds a third, makes one unready and
    /// deletes another; the replica set follows each step.
    #[tokio::test]
    async fn watch_keeps_the_set_current() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // 1. The initial list.
            let (req, send) = handle.next_request().await.expect("list request");
            let uri = req.uri().to_string();
            assert!(
                uri.starts_with("/api/v1/namespaces/istio-system/pods?"),
                "{uri}"
            );
            assert!(
                uri.contains("labelSelector=app%3Distiod%2Cistio.io%2Frev%3Ddefault"),
                "{uri}"
            );
            assert!(!uri.contains("watch=true"), "{uri}");
            send.send_response(json_response(json!({
                "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"},
                "items": [pod("istiod-1", "10.0.0.1", "Running", true), pod("istiod-2", "10.0.0.2", "Running", true)]
            })));
            // 2. The watch: a stream of events, once the test saw the listed set.
            let _ = go_rx.await;
            let (req, send) = handle.next_request().await.expect("watch request");
            let uri = req.uri().to_string();
            assert!(
                uri.contains("watch=true") && uri.contains("resourceVersion=10"),
                "{uri}"
            );
            let events = [
                json!({"type": "ADDED", "object": pod("istiod-3", "10.0.0.3", "Running", true)}),
                json!({"type": "MODIFIED", "object": pod("istiod-2", "10.0.0.2", "Running", false)}),
                json!({"type": "DELETED", "object": pod("istiod-1", "10.0.0.1", "Running", true)}),
            ];
            let mut body = Vec::new();
            for e in events {
                body.extend(serde_json::to_vec(&e).unwrap());
                body.push(b'\n');
            }
            send.send_response(Response::builder().body(Body::from(body)).unwrap());
            // Further watches are left unanswered (the test ends first).
            let _keep = handle.next_request().await;
            std::future::pending::<()>().await;
        });
        let client = Client::new(service, "istio-system");
        let mut h = start(
            client,
            PodSelector {
                namespace: "istio-system".into(),
                revision: Some("default".into()),
                port: 15012,
            },
        );
        let names = |s: &ReplicaSetRef| s.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        type ReplicaSetRef = Arc<Vec<Replica>>;
        let wait = |want: Vec<&'static str>| {
            let mut rx = h.replicas.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| names(s) == want))
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false)
            }
        };
        assert!(
            wait(vec!["istiod-1", "istiod-2"]).await,
            "listed set: {:?}",
            names(&h.replicas.borrow())
        );
        let _ = go_tx.send(());
        let reached = wait(vec!["istiod-3"]).await;
        if !reached {
            server.abort();
            let outcome = server.await;
            panic!(
                "final set: {:?}; API server script: {outcome:?}",
                names(&h.replicas.borrow())
            );
        }
        assert_eq!(h.replicas.borrow_and_update()[0].address, "10.0.0.3:15012");
        server.abort();
    }
}
