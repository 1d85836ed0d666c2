//! `istio.io/debug/config_dump` for `pod.ns`: routed to the replica that
//! owns the proxy (remembered from syncz, else asked of every replica), its
//! answer passed through under the `<external>` identity.

use super::authenticate::Caller;
use super::state::State;
use crate::defects::AskReplicas;
use crate::discovery::Replica;
use crate::fanout::{ReplicaAnswer, Strategy, fan_out, first_wanted};
use crate::merge;
use crate::upstream::ReplicaError;
use crate::wire::{self, Answer, Received, Shared};
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use proto::{IstioControlPlaneInstance, type_url};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Status;

/// How long a replica may stay silent on a config_dump request before it
/// counts as not having the proxy (istiod ≤1.19 never answers then).
const SILENT_REPLICA_BOUND: Duration = Duration::from_secs(1);

impl State {
    /// `istio.io/debug/config_dump` for `pod.ns`: the owning replica's answer.
    pub(super) async fn config_dump(
        self: &Arc<Self>,
        req: DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Answer, Status> {
        let replicas = self.current_replicas()?;
        let proxy_id = req.resource_names.first().cloned().unwrap_or_default();
        let requested = req.type_url.clone();
        let token = self.upstream_token(caller)?;
        let token = token.as_deref();
        let upstream_req = self.upstream_request(req, token);
        if !caller.visibility.sees(&proxy_id) {
            // Outside the caller's namespace: as if unknown (istiod shows nothing).
            return Ok(self.passthrough(&requested, None, None));
        }
        if let Some(route) = self.defects.config_dump_route() {
            let asker = Asker {
                state: self,
                request: &upstream_req,
                token,
                deadline,
            };
            return Ok(match route.answer(&asker, &replicas, deadline).await? {
                Some((r, resp)) => self.passthrough(&requested, Some(&r), Some(resp)),
                None => self.passthrough(&requested, None, None),
            });
        }
        // The owner: remembered from an earlier syncz, else learned now from
        // one (cheap, and every replica answers syncz, unlike config_dump).
        let mut owner = self.owners.lock().await.owner_of(&proxy_id, &replicas);
        if owner.is_none() {
            let syncz = DiscoveryRequest {
                type_url: type_url::SYNCZ.to_string(),
                resource_names: Vec::new(),
                ..upstream_req.clone()
            };
            if let Err(e) = self.fan_out_and_merge(syncz, caller, deadline).await {
                tracing::info!(proxy = %proxy_id, error = %e.message(), "syncz to find the config_dump owner failed");
            }
            owner = self.owners.lock().await.owner_of(&proxy_id, &replicas);
        }
        if let Some(owner) = owner {
            let answers = self
                .ask_all(std::slice::from_ref(&owner), &upstream_req, token, deadline)
                .await?;
            if let Some(ReplicaAnswer {
                result: Ok(resp), ..
            }) = answers.into_iter().next()
                && !resp.resources.is_empty()
            {
                return Ok(self.passthrough(&requested, Some(&owner), Some(resp)));
            }
            tracing::info!(proxy = %proxy_id, replica = %owner.name, "remembered owner no longer has the proxy; asking every replica");
        }
        // No replica lists it (or its owner lost it): ask everyone, take the
        // first dump at once. istiod ≤1.19 sends NO answer for a proxy it does
        // not have (`1.19.0:pilot/pkg/xds/statusgen.go`, `pushXds` sends
        // nothing), so a replica silent for `SILENT_REPLICA_BOUND` counts as
        // not having it, not as failed; istioctl itself would wait 30 s.
        let (found, answers) = first_wanted(
            &self.upstream,
            &replicas,
            &upstream_req,
            token,
            self.config.replica_timeout.min(SILENT_REPLICA_BOUND),
            deadline,
            |resp| !resp.resources.is_empty(),
        )
        .await;
        if let Some(a) = found {
            self.owners
                .lock()
                .await
                .remember(&proxy_id, &a.replica.name);
            let resp = a.result.ok();
            return Ok(self.passthrough(&requested, Some(&a.replica), resp));
        }
        let failed: Vec<(&Replica, ReplicaError)> = answers
            .iter()
            .filter_map(|a| match &a.result {
                Ok(_) | Err(ReplicaError::Timeout(_)) => None,
                Err(e) => Some((&a.replica, e.clone())),
            })
            .collect();
        if failed.is_empty() {
            // Nobody has it: zero resources, like istiod 1.20+.
            Ok(self.passthrough(&requested, None, None))
        } else {
            // The owner may be among the failed: never answer "not found" then.
            let status = merge::failure_status(&failed, answers.len());
            Err(Status::unavailable(format!(
                "proxy {proxy_id:?} was not found on the replicas that answered, and {}",
                status.message()
            )))
        }
    }

    /// One replica's answer (or an empty one), under the `<external>` identity.
    pub(super) fn passthrough(
        &self,
        requested: &str,
        replica: Option<&Replica>,
        resp: Option<Received>,
    ) -> Answer {
        let mut resp = resp.unwrap_or_default();
        let mut pieces = Vec::new();
        let rows = wire::pieces_of(&resp, 0..resp.resources.len(), &mut pieces);
        let info = resp
            .control_plane
            .as_ref()
            .and_then(|cp| serde_json::from_str::<IstioControlPlaneInstance>(&cp.identifier).ok())
            .or_else(|| {
                let name = &replica?.name;
                self.remembered
                    .lock()
                    .ok()?
                    .control_planes
                    .get(name)
                    .cloned()
            })
            .map(|cp| cp.info);
        Answer {
            version_info: if resp.version_info.is_empty() {
                merge::version_info()
            } else {
                std::mem::take(&mut resp.response.version_info)
            },
            nonce: merge::fresh_nonce(),
            shared: Arc::new(Shared {
                pieces,
                rows,
                type_url: requested.to_string(),
                control_plane: Some(merge::external_for(info)),
                ..Default::default()
            }),
        }
    }
}

/// How a broken config_dump routing (a defect) asks the replicas: the
/// request, token and deadline of the config_dump it answers.
struct Asker<'a> {
    state: &'a State,
    request: &'a DiscoveryRequest,
    token: Option<&'a str>,
    deadline: Instant,
}

impl AskReplicas for Asker<'_> {
    async fn ask(&self, replicas: &[Replica]) -> Result<Vec<ReplicaAnswer>, Status> {
        self.state
            .ask_all(replicas, self.request, self.token, self.deadline)
            .await
    }

    async fn ask_each(&self, replicas: &[Replica], timeout: Duration) -> Vec<ReplicaAnswer> {
        fan_out(
            &self.state.upstream,
            replicas,
            self.request,
            self.token,
            timeout,
            self.deadline,
            Strategy::Parallel,
        )
        .await
    }
}
