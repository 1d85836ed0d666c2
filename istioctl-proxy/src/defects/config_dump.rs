//! The two broken config_dump routings: to the first replica only
//! (`config-dump-first-replica-only`), and to every replica with an answer
//! only once all have answered (`config-dump-waits-for-every-replica`).

use crate::discovery::Replica;
use crate::fanout::ReplicaAnswer;
use crate::merge;
use crate::wire::Received;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Status;

/// What a broken routing needs from the proxy: asking replicas (the request,
/// the token and the deadline are the asker's).
pub(crate) trait AskReplicas {
    /// Asks `replicas` the way every request does.
    async fn ask(&self, replicas: &[Replica]) -> Result<Vec<ReplicaAnswer>, Status>;
    /// Asks `replicas` in parallel, each given `timeout`.
    async fn ask_each(&self, replicas: &[Replica], timeout: Duration) -> Vec<ReplicaAnswer>;
}

/// A broken config_dump routing (see [`super::Defects::config_dump_route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokenRoute {
    FirstReplicaOnly,
    WaitForEveryReplica,
}

impl BrokenRoute {
    /// The replica whose answer is passed through (`None`: an empty answer).
    pub async fn answer(
        self,
        asker: &impl AskReplicas,
        replicas: &[Replica],
        deadline: Instant,
    ) -> Result<Option<(Replica, Received)>, Status> {
        match self {
            BrokenRoute::FirstReplicaOnly => {
                let first = &replicas[..replicas.len().min(1)];
                let answers = asker.ask(first).await?;
                match answers.into_iter().next().map(|a| (a.replica, a.result)) {
                    Some((r, Ok(resp))) => Ok(Some((r, resp))),
                    Some((r, Err(e))) => Err(merge::failure_status(&[(&r, e)], 1)),
                    None => Ok(None),
                }
            }
            BrokenRoute::WaitForEveryReplica => {
                // Every replica, and only then an answer: bounded by the request
                // deadline alone, so istiod ≤1.19's silent replicas hold it up.
                let until_deadline = deadline.saturating_duration_since(Instant::now());
                let answers = asker.ask_each(replicas, until_deadline).await;
                Ok(answers.into_iter().find_map(|a| match a.result {
                    Ok(resp) if !resp.resources.is_empty() => Some((a.replica, resp)),
                    _ => None,
                }))
            }
        }
    }
}
