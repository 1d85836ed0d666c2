//! What a caller may ask. In own-identity mode the replicas see the proxy,
//! not the caller, so the proxy applies istiod's rules itself (`crate::authz`);
//! the other modes leave it to the replicas, which see the caller's token (or
//! none).

use super::authenticate::Caller;
use super::state::State;
use crate::auth::Visibility;
use crate::authz::{self, DebugAsk};
use crate::merge;
use crate::upstream::ReplicaError;
use crate::wire;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use proto::type_url;
use tokio::time::Instant;
use tonic::Status;

/// The outcome of authorization.
pub(super) enum Authorized {
    /// Ask the replicas.
    Forward,
    /// Answer zero resources without asking (what istiod answers this caller).
    Nothing,
}

impl State {
    /// What a caller may ask (own-identity mode: `crate::authz`); the other
    /// modes leave it to the replicas, which see the caller's token (or none).
    pub(super) async fn authorize(
        &self,
        req: &DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Authorized, Status> {
        if self.defects.skips_authorization() {
            return Ok(Authorized::Forward);
        }
        match req.type_url.as_str() {
            type_url::DEBUG => {
                let Some(who) = &caller.debug_restricted else {
                    return Ok(Authorized::Forward);
                };
                let DebugAsk::Proxy { proxy_id } = authz::check_debug(&req.resource_names, who)?;
                let scope = Visibility::Namespace(who.namespace.clone());
                if let Some(other) = self
                    .foreign_match(req, caller, &proxy_id, &scope, deadline)
                    .await?
                {
                    tracing::warn!(caller = ?who, proxy_id = %proxy_id, matches = %other, "debug proxyID could reach another namespace's proxy: denied");
                    return Err(authz::debug_denied(
                        who,
                        &format!(
                            "proxyID {proxy_id:?} also matches a proxy outside namespace {:?}",
                            who.namespace
                        ),
                    ));
                }
                Ok(Authorized::Forward)
            }
            type_url::CONFIG_DUMP if caller.visibility != Visibility::All => {
                // istiod answers a malformed request or an invisible proxy
                // with zero resources (1.30.0:pilot/pkg/xds/statusgen.go).
                let [proxy_id] = req.resource_names.as_slice() else {
                    return Ok(Authorized::Nothing);
                };
                if !caller.visibility.sees(proxy_id) {
                    return Ok(Authorized::Nothing);
                }
                if let Some(other) = self
                    .foreign_match(req, caller, proxy_id, &caller.visibility, deadline)
                    .await?
                {
                    tracing::warn!(proxy_id = %proxy_id, matches = %other, "config_dump name could reach another namespace's proxy: answered empty");
                    return Ok(Authorized::Nothing);
                }
                Ok(Authorized::Forward)
            }
            _ => Ok(Authorized::Forward),
        }
    }

    /// A node the caller may not see that istiod's substring lookup of
    /// `proxy_id` could land on, from a fresh syncz of every replica under the
    /// proxy's identity. A replica that fails makes the check fail (deny).
    async fn foreign_match(
        &self,
        req: &DiscoveryRequest,
        caller: &Caller,
        proxy_id: &str,
        scope: &Visibility,
        deadline: Instant,
    ) -> Result<Option<String>, Status> {
        let replicas = self.current_replicas()?;
        let token = self.upstream_token(caller)?;
        let token = token.as_deref();
        let mut syncz = req.clone();
        syncz.type_url = type_url::SYNCZ.to_string();
        syncz.resource_names.clear();
        let syncz = self.upstream_request(syncz, token);
        let answers = self.ask_all(&replicas, &syncz, token, deadline).await?;
        let mut known = Vec::new();
        let mut failed = Vec::new();
        for a in &answers {
            match &a.result {
                Ok(resp) => {
                    for r in &resp.resources {
                        match wire::scan_any(r).and_then(|(_, value)| wire::client_config_id(value))
                        {
                            Ok(id) => known.push(id.to_string()),
                            Err(e) => failed.push((
                                &a.replica,
                                ReplicaError::Invalid(format!(
                                    "syncz resource is not a ClientConfig: {e}"
                                )),
                            )),
                        }
                    }
                }
                Err(e) => failed.push((&a.replica, e.clone())),
            }
        }
        if !failed.is_empty() {
            let status = merge::failure_status(&failed, answers.len());
            return Err(Status::unavailable(format!(
                "cannot check which proxies {proxy_id:?} names (denied until every replica answers): {}",
                status.message()
            )));
        }
        Ok(
            authz::foreign_match(proxy_id, known.iter().map(String::as_str), scope)
                .map(str::to_string),
        )
    }
}
