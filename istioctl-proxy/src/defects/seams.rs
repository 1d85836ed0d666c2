//! The seams: the only points where the proxy asks whether a deliberate
//! defect changes what it does. Each takes what the correct proxy would do
//! (or asks nothing) and returns what this one does: the correct thing
//! unless a defect is on, which it never is without `test-defects`.
//!
//! | seam                      | called from          | defects                                  |
//! |---------------------------|----------------------|------------------------------------------|
//! | `resolves_dns_once`       | start                | dns-once                                 |
//! | `serving`                 | start                | cap-4-mib, unbounded-requests, tiny-connection-cap, die-on-garbage, unbounded-answers |
//! | `stream_opened` (+ [`StreamSeam`]) | a stream    | serial-streams, silent-on-bad-request, fail-on-ack |
//! | `answers_bounded`         | a stream, fan-out    | unbounded-answers                        |
//! | `before_authentication`   | authentication       | crash-on-missing-token                   |
//! | `skips_authorization`, `visibility` | authorization, fan-out | authz-syncz-only               |
//! | `replicas_to_ask`, `forget_failed`  | asking replicas        | forget-failed-replicas         |
//! | `strategy`                | asking replicas      | sequential-fail-fast                     |
//! | `checks`                  | answers on arrival   | forward-unchecked                        |
//! | `merge_flaws`, `decoded_copies` | the merge      | no-dedupe, drop-last-replica-silently, keep-replica-control-plane-id, buffer-decoded-answers |
//! | `config_dump_route` (+ [`BrokenRoute`]) | config_dump | config-dump-first-replica-only, config-dump-waits-for-every-replica |

use super::config_dump::BrokenRoute;
use super::defect::{Defect, Set};
use super::stream::StreamSeam;
use crate::auth::Visibility;
use crate::discovery::Replica;
use crate::fanout::{ReplicaAnswer, Strategy};
use crate::limits::{Limits, Serving};
use crate::merge::{Checks, MergeFlaws};
use crate::upstream::{HTTP2_WINDOW, ReplicaError};
use crate::wire::DecodedCopies;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// gRPC's default message limit, the `cap-4-mib` defect's answer limit.
const GRPC_DEFAULT_MAX: usize = 4 * 1024 * 1024;

/// The defects of one proxy instance, and what the stateful ones remember.
#[derive(Debug, Default)]
pub(crate) struct Defects {
    on: Set,
    /// `serial-streams`: the lock a stream holds from its start to its first request.
    serial: Arc<tokio::sync::Mutex<()>>,
    /// `forget-failed-replicas`: replicas never asked again.
    forgotten: Mutex<HashSet<String>>,
}

impl Defects {
    /// The defects in `list` (ignored without `test-defects`).
    pub fn new(list: &[Defect]) -> Self {
        Defects {
            on: Set::of(list),
            ..Default::default()
        }
    }

    fn has(&self, d: Defect) -> bool {
        self.on.has(d)
    }

    /// Whether DNS discovery resolves once, at start, and never again (`dns-once`).
    pub fn resolves_dns_once(&self) -> bool {
        self.has(Defect::DnsOnce)
    }

    /// How the listener serves, from the correct settings; `limits` are the
    /// proxy's (`tiny-connection-cap` lowers them); `tls`: the listener's transport.
    pub fn serving(&self, correct: Serving, limits: &mut Limits, tls: bool) -> Serving {
        let mut serving = correct;
        if self.has(Defect::Cap4MiB) {
            serving.max_answer_bytes = GRPC_DEFAULT_MAX;
        }
        if self.has(Defect::UnboundedRequests) {
            serving.max_request_bytes = usize::MAX;
            serving.client_windows = (HTTP2_WINDOW, HTTP2_WINDOW);
        }
        if self.has(Defect::TinyConnectionCap) {
            limits.max_connections = 32;
            limits.idle_timeout = Duration::from_secs(3600);
        }
        if self.has(Defect::DieOnGarbage) {
            serving.die_on_garbage = Some(tls);
        }
        // Answers handed to HTTP/2 as fast as it takes them.
        serving.bounded_answers = self.answers_bounded();
        serving
    }

    /// A stream starts: its defects (`serial-streams` waits for the lock here).
    pub async fn stream_opened(&self) -> StreamSeam {
        let serial = if self.has(Defect::SerialStreams) {
            Some(self.serial.clone().lock_owned().await)
        } else {
            None
        };
        StreamSeam::new(self.on, serial)
    }

    /// Whether answers are bounded: `unbounded-answers` takes no answer slot,
    /// waits as long as the client likes for it to read its answer, shares no
    /// fan-out (every request computes and holds its own) and hands answers
    /// to HTTP/2 as fast as it takes them.
    pub fn answers_bounded(&self) -> bool {
        !self.has(Defect::UnboundedAnswers)
    }

    /// Before the caller is authenticated: `crash-on-missing-token` panics
    /// without an `authorization` header (the sample indexes the header's
    /// fields without checking: deliberately the same).
    pub fn before_authentication(&self, metadata: &tonic::metadata::MetadataMap) {
        if self.has(Defect::CrashOnMissingToken) && metadata.get("authorization").is_none() {
            panic!("index out of range: no authorization header (defect crash-on-missing-token)");
        }
    }

    /// Whether authorization is skipped (`authz-syncz-only`: the pre-audit
    /// code, config_dump's own visibility check only).
    pub fn skips_authorization(&self) -> bool {
        self.has(Defect::AuthzSynczOnly)
    }

    /// What a fan-out of `type_url` may show a caller who sees `caller`
    /// (`authz-syncz-only`: connections unfiltered).
    pub fn visibility(&self, type_url: &str, caller: &Visibility) -> Visibility {
        if type_url == proto::type_url::CONNECTIONS && self.has(Defect::AuthzSynczOnly) {
            Visibility::All
        } else {
            caller.clone()
        }
    }

    /// The replicas to ask of `replicas` (`forget-failed-replicas`: not the
    /// ones that failed once).
    pub fn replicas_to_ask<'a>(&self, replicas: &'a [Replica]) -> Cow<'a, [Replica]> {
        if !self.has(Defect::ForgetFailedReplicas) {
            return Cow::Borrowed(replicas);
        }
        let forgotten = self.forgotten.lock().map(|f| f.clone()).unwrap_or_default();
        Cow::Owned(
            replicas
                .iter()
                .filter(|r| !forgotten.contains(&r.name))
                .cloned()
                .collect(),
        )
    }

    /// The answers of the replicas asked, as the proxy goes on with them
    /// (`forget-failed-replicas`: the failed ones are remembered, and their
    /// silence is left out of the answer. Replicas that answered, even with
    /// garbage, count as answering: the merge judges their answers, which
    /// syncz answers are read on arrival).
    pub fn forget_failed(&self, answers: Vec<ReplicaAnswer>) -> Vec<ReplicaAnswer> {
        if !self.has(Defect::ForgetFailedReplicas) {
            return answers;
        }
        let (failed, answered): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .partition(|a| matches!(&a.result, Err(e) if !matches!(e, ReplicaError::Invalid(_))));
        if let Ok(mut f) = self.forgotten.lock() {
            f.extend(failed.into_iter().map(|a| a.replica.name));
        }
        answered
    }

    /// How replicas are asked (`sequential-fail-fast`: the sample's way).
    pub fn strategy(&self) -> Strategy {
        if self.has(Defect::SequentialFailFast) {
            Strategy::SequentialFailFast
        } else {
            Strategy::Parallel
        }
    }

    /// How replicas' answers are checked on arrival (`forward-unchecked`:
    /// the envelope, framing, type URL and node id only, as before issue 22).
    pub fn checks(&self) -> Checks {
        if self.has(Defect::ForwardUnchecked) {
            Checks::Framing
        } else {
            Checks::Full
        }
    }

    /// The merge's flaws (`no-dedupe`, `drop-last-replica-silently`,
    /// `keep-replica-control-plane-id`).
    pub fn merge_flaws(&self) -> MergeFlaws {
        MergeFlaws {
            no_dedupe: self.has(Defect::NoDedupe),
            drop_last_replica: self.has(Defect::DropLastReplicaSilently),
            keep_replica_id: self.has(Defect::KeepReplicaControlPlaneId),
        }
    }

    /// What a merged answer holds besides itself (`buffer-decoded-answers`:
    /// a decoded copy of every replica's answer; else nothing).
    pub fn decoded_copies(&self, answers: &[ReplicaAnswer]) -> DecodedCopies {
        if !self.has(Defect::BufferDecodedAnswers) {
            return DecodedCopies::default();
        }
        DecodedCopies::of(
            answers
                .iter()
                .filter_map(|a| a.result.as_ref().ok())
                .map(|r| &r.response),
        )
    }

    /// How config_dump is routed when a defect breaks it (`None`: to the
    /// proxy's owner, the correct way).
    pub fn config_dump_route(&self) -> Option<BrokenRoute> {
        if self.has(Defect::ConfigDumpFirstReplicaOnly) {
            Some(BrokenRoute::FirstReplicaOnly)
        } else if self.has(Defect::ConfigDumpWaitsForEveryReplica) {
            Some(BrokenRoute::WaitForEveryReplica)
        } else {
            None
        }
    }
}

#[cfg(all(test, feature = "test-defects"))]
mod tests {
    use super::*;

    fn serving() -> Serving {
        Serving {
            max_request_bytes: 64 * 1024,
            max_answer_bytes: usize::MAX,
            client_windows: (1, 2),
            bounded_answers: true,
            die_on_garbage: None,
        }
    }

    #[test]
    fn no_defect_changes_nothing() {
        let d = Defects::new(&[]);
        let mut limits = Limits::default();
        assert_eq!(d.serving(serving(), &mut limits, true), serving());
        assert_eq!(limits, Limits::default());
        assert_eq!(d.strategy(), Strategy::Parallel);
        assert_eq!(d.merge_flaws(), MergeFlaws::default());
        assert!(d.answers_bounded());
        assert!(!d.skips_authorization());
        assert!(d.config_dump_route().is_none());
        let ns = Visibility::Namespace("bookinfo".into());
        assert_eq!(d.visibility(proto::type_url::CONNECTIONS, &ns), ns);
    }

    #[test]
    fn serving_defects() {
        let d = Defects::new(&[
            Defect::Cap4MiB,
            Defect::UnboundedRequests,
            Defect::TinyConnectionCap,
            Defect::DieOnGarbage,
            Defect::UnboundedAnswers,
        ]);
        let mut limits = Limits::default();
        let s = d.serving(serving(), &mut limits, false);
        assert_eq!(s.max_answer_bytes, GRPC_DEFAULT_MAX);
        assert_eq!(s.max_request_bytes, usize::MAX);
        assert_eq!(s.client_windows, (HTTP2_WINDOW, HTTP2_WINDOW));
        assert_eq!(s.die_on_garbage, Some(false));
        assert!(!s.bounded_answers);
        assert_eq!(limits.max_connections, 32);
    }
}
