//! What each replica was asked: every xDS request (state of the world and
//! Delta), in arrival order, with the caller as the replica authenticated it
//! and what became of it. Kept in the library itself, so a test (or a check
//! of the harness) reads what a proxy under test sent instead of the proxy's
//! internals; bounded, so floods and large meshes do not grow it without limit.

use crate::auth::Identity;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Requests kept per replica; older ones are only counted.
pub const KEPT_PER_REPLICA: usize = 10_000;
/// Longest type URL, node id or resource name kept (bytes, cut on a
/// character boundary): a flood of huge ids must not be copied 10,000 times.
pub const MAX_FIELD_LEN: usize = 256;
/// Resource names kept per request.
pub const MAX_NAMES: usize = 8;

/// Which port the request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 15010.
    Plaintext,
    /// 15012.
    Tls,
}

/// Which ADS method carried the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `StreamAggregatedResources`.
    StateOfTheWorld,
    /// `DeltaAggregatedResources`.
    Delta,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still being answered (a delay fault), or the caller went away first.
    Pending,
    /// An answer was sent.
    Answered,
    /// Deliberately no answer: the hang fault, or istiod ≤1.19's silence on a
    /// config_dump for a proxy it does not have.
    Silent,
    /// The stream ended with this gRPC status.
    Refused(tonic::Code),
}

/// One request as a replica received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The request's type URL; empty when the stream was refused before a
    /// request was read (authentication happens at stream start).
    pub type_url: String,
    /// The node id (the first request's on a Delta stream); empty as above.
    pub node_id: String,
    /// The first [`MAX_NAMES`] resource names (Delta: `resource_names_subscribe`).
    pub resource_names: Vec<String>,
    /// The caller as the replica authenticated it (`None`: unauthenticated,
    /// e.g. plaintext without `plaintext_requires_auth`, or refused).
    pub caller: Option<Identity>,
    pub transport: Transport,
    pub method: Method,
    pub outcome: Outcome,
    /// When the request arrived.
    pub at: Instant,
}

/// The requests of one replica: the last [`KEPT_PER_REPLICA`], and a count.
#[derive(Debug)]
pub struct ReplicaLog {
    inner: Mutex<Log>,
}

#[derive(Debug)]
struct Log {
    kept: VecDeque<Asked>,
    /// Sequence number of `kept[0]`.
    first_seq: u64,
    /// Requests recorded since the last clear, kept or not.
    total: u64,
    limit: usize,
}

/// A recorded request whose outcome may still change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl ReplicaLog {
    fn new(limit: usize) -> Self {
        ReplicaLog {
            inner: Mutex::new(Log {
                kept: VecDeque::new(),
                first_seq: 0,
                total: 0,
                limit: limit.max(1),
            }),
        }
    }

    /// Records a request on arrival.
    pub(crate) fn record(&self, asked: Asked) -> Ticket {
        let Ok(mut log) = self.inner.lock() else {
            return Ticket(u64::MAX);
        };
        let seq = log.first_seq + log.kept.len() as u64;
        log.kept.push_back(asked);
        log.total += 1;
        if log.kept.len() > log.limit {
            log.kept.pop_front();
            log.first_seq += 1;
        }
        Ticket(seq)
    }

    /// Sets the outcome of a recorded request (nothing if it was dropped or cleared).
    pub(crate) fn finish(&self, ticket: Ticket, outcome: Outcome) {
        let Ok(mut log) = self.inner.lock() else {
            return;
        };
        let Some(i) = ticket.0.checked_sub(log.first_seq) else {
            return;
        };
        if let Some(a) = usize::try_from(i).ok().and_then(|i| log.kept.get_mut(i)) {
            a.outcome = outcome;
        }
    }

    fn snapshot(&self) -> (Vec<Asked>, u64) {
        match self.inner.lock() {
            Ok(log) => (log.kept.iter().cloned().collect(), log.total),
            Err(_) => (Vec::new(), 0),
        }
    }

    fn clear(&self) {
        if let Ok(mut log) = self.inner.lock() {
            // Tickets handed out before stay unique: sequence numbers go on.
            log.first_seq += log.kept.len() as u64;
            log.kept.clear();
            log.total = 0;
        }
    }
}

/// Every replica's log, by replica name; logs outlive scenario reloads.
#[derive(Debug)]
pub(crate) struct Recorder {
    logs: Mutex<BTreeMap<String, Arc<ReplicaLog>>>,
    limit: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::with_limit(KEPT_PER_REPLICA)
    }
}

impl Recorder {
    pub(crate) fn with_limit(limit: usize) -> Self {
        Recorder {
            logs: Mutex::new(BTreeMap::new()),
            limit,
        }
    }

    /// The log of `replica`, created on first use.
    pub(crate) fn replica(&self, replica: &str) -> Arc<ReplicaLog> {
        match self.logs.lock() {
            Ok(mut logs) => logs
                .entry(replica.to_string())
                .or_insert_with(|| Arc::new(ReplicaLog::new(self.limit)))
                .clone(),
            // A poisoned map: record into a log nobody reads rather than fail requests.
            Err(_) => Arc::new(ReplicaLog::new(1)),
        }
    }

    fn get(&self, replica: &str) -> Option<Arc<ReplicaLog>> {
        self.logs.lock().ok()?.get(replica).cloned()
    }

    /// The kept requests of `replica`, oldest first.
    pub(crate) fn asked(&self, replica: &str) -> Vec<Asked> {
        self.get(replica)
            .map(|l| l.snapshot().0)
            .unwrap_or_default()
    }

    /// How many requests `replica` received since the last clear (kept or not).
    pub(crate) fn count(&self, replica: &str) -> u64 {
        self.get(replica)
            .map(|l| l.snapshot().1)
            .unwrap_or_default()
    }

    pub(crate) fn all(&self) -> BTreeMap<String, Vec<Asked>> {
        let logs: Vec<(String, Arc<ReplicaLog>)> = match self.logs.lock() {
            Ok(logs) => logs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return BTreeMap::new(),
        };
        logs.into_iter()
            .map(|(name, log)| (name, log.snapshot().0))
            .collect()
    }

    pub(crate) fn clear(&self) {
        let logs: Vec<Arc<ReplicaLog>> = match self.logs.lock() {
            Ok(logs) => logs.values().cloned().collect(),
            Err(_) => return,
        };
        for log in logs {
            log.clear();
        }
    }
}

/// `s` cut to at most [`MAX_FIELD_LEN`] bytes on a character boundary.
pub(crate) fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_LEN {
        return s.to_string();
    }
    let mut end = MAX_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The first [`MAX_NAMES`] names, each clipped.
pub(crate) fn clip_names(names: &[String]) -> Vec<String> {
    names.iter().take(MAX_NAMES).map(|n| clip(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(type_url: &str) -> Asked {
        Asked {
            type_url: type_url.into(),
            node_id: String::new(),
            resource_names: Vec::new(),
            caller: None,
            transport: Transport::Plaintext,
            method: Method::StateOfTheWorld,
            outcome: Outcome::Pending,
            at: Instant::now(),
        }
    }

    #[test]
    fn keeps_the_last_requests_and_counts_all() {
        let r = Recorder::with_limit(3);
        let log = r.replica("a");
        let tickets: Vec<Ticket> = (0..5).map(|i| log.record(asked(&i.to_string()))).collect();
        // The first two were dropped: finishing them changes nothing.
        log.finish(tickets[0], Outcome::Answered);
        log.finish(tickets[4], Outcome::Refused(tonic::Code::Unavailable));
        let kept = r.asked("a");
        let urls: Vec<&str> = kept.iter().map(|a| a.type_url.as_str()).collect();
        assert_eq!(urls, ["2", "3", "4"]);
        assert_eq!(kept[0].outcome, Outcome::Pending);
        assert_eq!(kept[2].outcome, Outcome::Refused(tonic::Code::Unavailable));
        assert_eq!(r.count("a"), 5);
        assert!(r.asked("b").is_empty());
    }

    #[test]
    fn clear_forgets_and_old_tickets_touch_nothing() {
        let r = Recorder::with_limit(3);
        let log = r.replica("a");
        let old = log.record(asked("x"));
        r.clear();
        assert_eq!(r.count("a"), 0);
        let new = log.record(asked("y"));
        log.finish(old, Outcome::Answered);
        assert_eq!(r.asked("a")[0].outcome, Outcome::Pending);
        log.finish(new, Outcome::Silent);
        assert_eq!(r.asked("a")[0].outcome, Outcome::Silent);
        assert_eq!(r.all().len(), 1);
    }

    #[test]
    fn long_fields_are_clipped_on_a_character_boundary() {
        let s = "é".repeat(200);
        let c = clip(&s);
        assert!(c.len() <= MAX_FIELD_LEN && s.starts_with(&c), "{}", c.len());
        let names: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(clip_names(&names).len(), MAX_NAMES);
    }
}
