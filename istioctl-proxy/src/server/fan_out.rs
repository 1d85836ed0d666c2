//! The fan-out types (syncz, connections, debug): every replica asked (a
//! deadline per replica and one per request), the answers merged off the
//! async threads when large; a syncz answer teaches config_dump routing who
//! owns which proxy.

use super::authenticate::Caller;
use super::owners::learn_owners;
use super::single_flight::{FlightKey, FlightResult};
use super::state::State;
use crate::auth::Visibility;
use crate::config::FailurePolicy;
use crate::discovery::{Replica, ReplicaSet};
use crate::fanout::{INLINE_ROWS, ReplicaAnswer, Strategy, fan_out};
use crate::merge;
use crate::wire::Answer;
use proto::IstioControlPlaneInstance;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::Status;

/// Past the request deadline, the merge of an answer that is already in may
/// still take this long (so late replicas are named rather than a bare timeout).
pub(super) const MERGE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// What one fan-out asks, with whose credentials, for whom, until when.
struct FanOut {
    request: DiscoveryRequest,
    token: Option<String>,
    visibility: Visibility,
    deadline: Instant,
}

impl State {
    /// The replicas discovered now (their channels kept, others dropped).
    pub(super) fn current_replicas(&self) -> Result<ReplicaSet, Status> {
        let set = self.replicas.borrow().clone();
        self.upstream.retain(&set);
        if set.is_empty() {
            return Err(Status::unavailable(
                "istioctl-proxy has discovered no istiod replicas (yet)",
            ));
        }
        Ok(set)
    }

    /// Asks `replicas` (as the fan-out seams have it) and returns their answers.
    pub(super) async fn ask_all(
        &self,
        replicas: &[Replica],
        req: &DiscoveryRequest,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<ReplicaAnswer>, Status> {
        let asked = self.defects.replicas_to_ask(replicas);
        let answers = fan_out(
            &self.upstream,
            &asked,
            req,
            token,
            self.config.replica_timeout,
            deadline,
            self.defects.strategy(),
        )
        .await;
        Ok(self.defects.forget_failed(answers))
    }

    /// A fan-out type (syncz, connections, debug): every replica asked, the
    /// answers merged. Identical requests share one fan-out (see [`Flights`]).
    ///
    /// [`Flights`]: super::single_flight::Flights
    pub(super) async fn fan_out_and_merge(
        self: &Arc<Self>,
        req: DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Answer, Status> {
        let token = self.upstream_token(caller)?;
        let request = self.upstream_request(req, token.as_deref());
        let visibility = self
            .defects
            .visibility(&request.type_url, &caller.visibility);
        let ask = FanOut {
            request,
            token,
            visibility,
            deadline,
        };
        if !self.defects.answers_bounded() {
            // No backpressure on answers, none shared either: every
            // request computes and holds its own.
            return self.merged_now(&ask).await.map(merge::answer_for_client);
        }
        let key = FlightKey::new(&ask.request, &ask.token, &ask.visibility);
        // A flight starts at the latest when only a replica timeout is left
        // before its creator's request deadline.
        let latest = deadline
            .checked_sub(self.config.replica_timeout)
            .unwrap_or_else(Instant::now);
        let state = self.clone();
        self.flights
            .join(
                key,
                latest,
                move || async move { state.merged_now(&ask).await },
            )
            .await
            .map(merge::answer_for_client)
    }

    /// Asks every replica now and merges their answers (one flight's work).
    async fn merged_now(self: &Arc<Self>, params: &FanOut) -> FlightResult {
        let replicas = self.current_replicas()?;
        let token = params.token.as_deref();
        let answers = self
            .ask_all(&replicas, &params.request, token, params.deadline)
            .await?;
        // One line per refused answer and request: how many rows were bad
        // and the first (never a line per row).
        for a in &answers {
            if let Err(crate::upstream::ReplicaError::Invalid(why)) = &a.result {
                tracing::warn!(replica = %a.replica.name, reason = %why, "a replica's answer was refused, not forwarded");
            }
        }
        let policy = match self.defects.strategy() {
            Strategy::SequentialFailFast => FailurePolicy::Fail,
            Strategy::Parallel => self.config.on_replica_failure,
        };
        let flaws = self.defects.merge_flaws();
        let known = self
            .remembered
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let requested = params.request.type_url.clone();
        let visibility = params.visibility.clone();
        let state = self.clone();
        let rows: usize = answers
            .iter()
            .filter_map(|a| a.result.as_ref().ok())
            .map(|r| r.resources.len())
            .sum();
        let merge = move || {
            let (mut shared, outcome) =
                merge::merge(&requested, &answers, policy, &visibility, &known, flaws)?;
            state.remember_control_planes(outcome.seen);
            shared.decoded_copies = state.defects.decoded_copies(&answers);
            Ok::<_, Status>((Arc::new(shared), answers, outcome.kept))
        };
        let inline = rows <= INLINE_ROWS;
        let merged = if inline {
            // A small mesh: merged here (well under a millisecond), sparing
            // a thread hop, which costs more on a busy machine.
            merge()
        } else {
            // Off the async threads and under the request deadline: merging a
            // mesh of a million proxies takes a while.
            let merging = tokio::task::spawn_blocking(merge);
            // A fan-out that used the whole deadline (and names the late replicas)
            // still gets its short merge.
            let merge_deadline = params.deadline.max(Instant::now() + MERGE_GRACE);
            match tokio::time::timeout_at(merge_deadline, merging).await {
                Ok(Ok(merged)) => merged,
                Ok(Err(e)) => Err(Status::internal(format!("merging the answers failed: {e}"))),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "istioctl-proxy: merging the replicas' answers took longer than --request-timeout {}",
                    humantime::format_duration(self.config.request_timeout)
                ))),
            }
        };
        let (shared, answers, kept) = merged?;
        if let Some(kept) = kept {
            // config_dump routing learns the kept rows' owners after the
            // answer is out (it is not on the answer's path), under the lock
            // taken now, so a config_dump that follows waits for it.
            let owners = self.owners.clone().lock_owned().await;
            if inline {
                learn_owners(owners, &answers, &kept);
            } else {
                tokio::task::spawn_blocking(move || learn_owners(owners, &answers, &kept));
            }
        }
        Ok(shared)
    }

    /// Remembers the ControlPlanes a merge saw.
    fn remember_control_planes(&self, seen: Vec<(String, IstioControlPlaneInstance)>) {
        if let Ok(mut r) = self.remembered.lock() {
            for (name, cp) in seen {
                r.control_planes.insert(name, cp);
            }
        }
    }
}
