//! What one proxy instance shares between its streams and requests.

use super::owners::OwnerTable;
use super::single_flight::Flights;
use crate::auth::TokenVerifier;
use crate::config::ProxyConfig;
use crate::defects::Defects;
use crate::discovery::ReplicaSet;
use crate::limits::AnswerSlots;
use crate::merge::Remembered;
use crate::upstream::Upstream;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Longest text of a client's making put into one log line.
pub(super) const LOG_MAX: usize = 256;

/// Shared state of one proxy instance.
pub(crate) struct State {
    pub config: ProxyConfig,
    pub upstream: Upstream,
    pub replicas: watch::Receiver<ReplicaSet>,
    pub verifier: TokenVerifier,
    /// Which replica has which proxy (config_dump routing). Written after a
    /// syncz answer is published (see `owners::learn_owners`), under this
    /// lock, which config_dump waits for.
    pub owners: Arc<tokio::sync::Mutex<OwnerTable>>,
    pub remembered: Mutex<Remembered>,
    pub shutdown: watch::Receiver<bool>,
    /// Answers in flight (`--max-inflight-answers`).
    pub answer_slots: AnswerSlots,
    /// Fan-outs shared by identical requests (see [`Flights`]).
    pub flights: Arc<Flights>,
    /// The deliberate defects' seams (none on in a correct proxy).
    pub defects: Defects,
}
