//! A scripted Kubernetes API server (tower-test) for the kube calls' tests:
//! each test names the requests it expects, in order, and what the server answers.

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

pub(crate) type Script = Vec<(&'static str, &'static str, u16, Value)>;

pub(crate) type Seen = tokio::sync::oneshot::Receiver<Vec<(String, String, Value)>>;

/// Serves `script` in order: (method, path prefix, status, body), then holds every further
/// request unanswered (a watch that never sends). Yields the requests seen (method, uri, body)
/// once the script is done. An unexpected request is answered 500 and recorded, so the test
/// fails with what was asked.
pub(crate) fn scripted(script: Script) -> (Client, Seen) {
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for (method, prefix, status, body) in script {
            let Some((req, send)) = handle.next_request().await else {
                break;
            };
            let (parts, b) = req.into_parts();
            let bytes = b
                .collect_bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let uri = parts.uri.to_string();
            let ok = parts.method.as_str() == method && uri.starts_with(prefix);
            seen.push((parts.method.to_string(), uri.clone(), sent));
            let (status, body) = if ok {
                (status, body)
            } else {
                (500, json!({"unexpected": uri, "wanted": prefix}))
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
        let _ = seen_tx.send(seen);
        let mut held = Vec::new();
        while let Some(r) = handle.next_request().await {
            held.push(r);
        }
    });
    (Client::new(service, "default"), seen_rx)
}
