//! Sending one request to many replicas: in parallel with a deadline per
//! replica and one for the whole request; or (defect / bench baseline only)
//! sequentially, failing fast, like the blog's sample.

use crate::discovery::Replica;
use crate::merge::{self, Checks, Prepared};
use crate::upstream::{ReplicaError, Upstream};
use crate::wire::Received;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use std::time::Duration;
use tokio::time::Instant;

/// One replica's outcome.
#[derive(Debug, Clone)]
pub struct ReplicaAnswer {
    pub replica: Replica,
    pub result: Result<Received, ReplicaError>,
    /// A syncz answer's rows, read and sorted as soon as it arrived (while
    /// other replicas may still be answering): see [`merge::prepare_syncz`].
    pub prepared: Option<Prepared>,
}

impl ReplicaAnswer {
    fn new(replica: Replica, got: Result<Got, ReplicaError>) -> Self {
        match got {
            Ok((resp, prepared)) => ReplicaAnswer {
                replica,
                result: Ok(resp),
                prepared,
            },
            Err(e) => ReplicaAnswer {
                replica,
                result: Err(e),
                prepared: None,
            },
        }
    }
}

/// Answers of at most this many resources are read (and merged) on the
/// async thread that received them: well under a millisecond of work, less
/// than a hand-off to a blocking thread costs on a busy machine.
pub const INLINE_ROWS: usize = 2_000;

/// An answer and, for syncz, its prepared rows.
type Got = (Received, Option<Prepared>);

/// How to fan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// All replicas at once (the proxy's only real strategy).
    Parallel,
    /// One after another, stop at the first failure, 2 s each: the sample's
    /// strategy, kept as a conformance defect and a bench baseline.
    SequentialFailFast,
}

/// The sample's per-replica timeout.
pub const SAMPLE_REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every replica; answers come back in `replicas` order.
pub async fn fan_out(
    upstream: &Upstream,
    replicas: &[Replica],
    request: &DiscoveryRequest,
    token: Option<&str>,
    replica_timeout: Duration,
    deadline: Instant,
    strategy: Strategy,
) -> Vec<ReplicaAnswer> {
    match strategy {
        // Every replica at once: `first_wanted` with no answer wanted waits
        // for all of them (or the request's deadline).
        Strategy::Parallel => {
            first_wanted(
                upstream,
                replicas,
                request,
                token,
                replica_timeout,
                deadline,
                |_| false,
            )
            .await
            .1
        }
        Strategy::SequentialFailFast => sequential(upstream, replicas, request, token).await,
    }
}

async fn ask_one(
    upstream: &Upstream,
    replica: &Replica,
    request: DiscoveryRequest,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Got, ReplicaError> {
    let syncz = request.type_url == proto::type_url::SYNCZ;
    let config_dump = request.type_url == proto::type_url::CONFIG_DUMP;
    let checks = upstream.checks;
    let asked = async {
        let resp = upstream.ask(replica, request, token).await?;
        if config_dump && checks == Checks::Full {
            // Every section as istioctl's comparator reads it.
            crate::validate::config_dump(&resp.resources)
                .map_err(|bad| ReplicaError::Invalid(format!("config_dump: {bad}")))?;
        }
        if !syncz {
            return Ok((resp, None));
        }
        if resp.resources.len() <= INLINE_ROWS {
            let p = merge::prepare_syncz(&resp, checks)?;
            return Ok((resp, Some(p)));
        }
        // Off the async threads: a replica's answer can hold 100,000 rows,
        // checked here while the other replicas still answer.
        let prepared = tokio::task::spawn_blocking(move || {
            let p = merge::prepare_syncz(&resp, checks);
            (resp, p)
        })
        .await;
        match prepared {
            Ok((resp, Ok(p))) => Ok((resp, Some(p))),
            Ok((_, Err(e))) => Err(e),
            Err(e) => Err(ReplicaError::Invalid(format!(
                "reading the answer failed: {e}"
            ))),
        }
    };
    match tokio::time::timeout(timeout, asked).await {
        Ok(r) => r,
        Err(_) => Err(ReplicaError::Timeout(timeout)),
    }
}

async fn sequential(
    upstream: &Upstream,
    replicas: &[Replica],
    request: &DiscoveryRequest,
    token: Option<&str>,
) -> Vec<ReplicaAnswer> {
    let mut out = Vec::with_capacity(replicas.len());
    let mut failed = false;
    for replica in replicas {
        let result = if failed {
            Err(ReplicaError::NotAsked)
        } else {
            ask_one(
                upstream,
                replica,
                request.clone(),
                token,
                SAMPLE_REPLICA_TIMEOUT,
            )
            .await
        };
        failed |= result.is_err();
        out.push(ReplicaAnswer::new(replica.clone(), result));
    }
    out
}

/// Asks every replica at once and returns as soon as one answer is `wanted`
/// (the config_dump owner's): that answer first, then every other replica's
/// outcome so far (a replica still asking shows as
/// [`ReplicaError::Timeout`] of `replica_timeout` once it ran out, or
/// [`ReplicaError::RequestDeadline`] when the request's deadline came first).
pub async fn first_wanted(
    upstream: &Upstream,
    replicas: &[Replica],
    request: &DiscoveryRequest,
    token: Option<&str>,
    replica_timeout: Duration,
    deadline: Instant,
    wanted: impl Fn(&Received) -> bool,
) -> (Option<ReplicaAnswer>, Vec<ReplicaAnswer>) {
    let mut results: Vec<Option<Result<Got, ReplicaError>>> = vec![None; replicas.len()];
    let mut pending: FuturesUnordered<_> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let req = request.clone();
            async move { (i, ask_one(upstream, r, req, token, replica_timeout).await) }
        })
        .collect();
    let overall = tokio::time::sleep_until(deadline);
    tokio::pin!(overall);
    let mut found = None;
    loop {
        tokio::select! {
            next = pending.next() => match next {
                Some((i, Ok(got))) if wanted(&got.0) => {
                    found = Some(ReplicaAnswer::new(replicas[i].clone(), Ok(got)));
                    break;
                }
                Some((i, r)) => results[i] = Some(r),
                None => break,
            },
            _ = &mut overall => break,
        }
    }
    let rest = replicas
        .iter()
        .zip(results)
        .filter(|(r, _)| found.as_ref().is_none_or(|f| f.replica.name != r.name))
        .map(|(replica, r)| {
            ReplicaAnswer::new(
                replica.clone(),
                r.unwrap_or(Err(ReplicaError::RequestDeadline)),
            )
        })
        .collect();
    (found, rest)
}
