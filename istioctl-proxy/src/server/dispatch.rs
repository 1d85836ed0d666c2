//! One request: authorized, then sent where its type goes; the types
//! istioctl's debug commands do not send are refused.

use super::authenticate::Caller;
use super::authorize::Authorized;
use super::state::{LOG_MAX, State};
use crate::limits::bounded;
use crate::wire::Answer;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use proto::type_url;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::Status;

impl State {
    /// Answers one request.
    pub(super) async fn answer(
        self: &Arc<Self>,
        req: DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Answer, Status> {
        let requested = req.type_url.clone();
        tracing::debug!(type_url = %requested, resources = %bounded(&format!("{:?}", req.resource_names), LOG_MAX), "request");
        let result = match self.authorize(&req, caller, deadline).await {
            Err(denied) => Err(denied),
            Ok(Authorized::Nothing) => Ok(self.passthrough(&requested, None, None)),
            Ok(Authorized::Forward) => self.dispatch(req, caller, deadline).await,
        };
        match &result {
            Ok(resp) => {
                tracing::info!(type_url = %requested, resources = resp.shared.rows, "answered")
            }
            Err(s) => {
                tracing::warn!(type_url = %requested, code = ?s.code(), message = %s.message(), "request failed")
            }
        }
        result
    }

    /// Where a request type goes: a fan-out to every replica, or
    /// config_dump to the replica that owns the proxy; other types are refused.
    async fn dispatch(
        self: &Arc<Self>,
        req: DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Answer, Status> {
        let requested = req.type_url.clone();
        match requested.as_str() {
            type_url::SYNCZ | type_url::CONNECTIONS | type_url::DEBUG => {
                self.fan_out_and_merge(req, caller, deadline).await
            }
            type_url::CONFIG_DUMP => self.config_dump(req, caller, deadline).await,
            other => Err(Status::unimplemented(format!(
                "istioctl-proxy does not serve type URL {other:?}; supported: {}",
                type_url::DEBUG_TYPES.join(", ")
            ))),
        }
    }
}
