//! `/healthz` (the process serves) and `/readyz` (at least one istiod replica
//! is known) over plain HTTP, for Kubernetes probes.

use crate::discovery::ReplicaSet;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

pub(crate) fn router(replicas: watch::Receiver<ReplicaSet>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let n = replicas.borrow().len();
                async move {
                    if n == 0 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: no istiod replicas discovered\n".to_string(),
                        )
                    } else {
                        (StatusCode::OK, format!("ready: {n} istiod replicas\n"))
                    }
                }
            }),
        )
}
