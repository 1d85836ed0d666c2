//! The ADS `StreamAggregatedResources` server istioctl talks to: any number of
//! requests per stream, each answered once, in order.

use crate::Defect;
use crate::auth::{AuthError, CallerIdentity, TokenVerifier, Visibility, bearer_token};
use crate::authz::{self, DebugAsk};
use crate::config::{FailurePolicy, IdentityMode, ProxyConfig};
use crate::discovery::{Replica, ReplicaSet};
use crate::fanout::{ReplicaAnswer, Strategy, fan_out, first_wanted};
use crate::limits::{AnswerSlots, ConnInfo, PermitStream, Tracked, bounded};
use crate::merge::{self, KeptRows, MergeFlaws, Remembered};
use crate::upstream::{ReplicaError, Upstream};
use crate::wire::{self, Answer, Received, Shared};
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use proto::node::string_value;
use proto::{IstioControlPlaneInstance, type_url};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How long a replica may stay silent on a config_dump request before it
/// counts as not having the proxy (istiod ≤1.19 never answers then).
const SILENT_REPLICA_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// Shared state of one proxy instance.
pub(crate) struct State {
    pub config: ProxyConfig,
    pub upstream: Upstream,
    pub replicas: watch::Receiver<ReplicaSet>,
    pub verifier: TokenVerifier,
    /// Which replica has which proxy (config_dump routing). Written after a
    /// syncz answer is published (see [`learn_owners`]), under this lock,
    /// which config_dump waits for.
    pub owners: Arc<tokio::sync::Mutex<OwnerTable>>,
    pub remembered: Mutex<Remembered>,
    pub shutdown: watch::Receiver<bool>,
    /// Answers in flight (`--max-inflight-answers`).
    pub answer_slots: AnswerSlots,
    /// The `SerialStreams` test defect's lock.
    pub serial: Arc<tokio::sync::Mutex<()>>,
    /// The `ForgetFailedReplicas` test defect's memory: replicas never asked again.
    pub forgotten: Mutex<std::collections::HashSet<String>>,
    /// Fan-outs shared by identical requests (see [`Flights`]).
    pub flights: Flights,
}

/// Which replica has which proxy (config_dump routing).
#[derive(Default)]
pub(crate) struct OwnerTable {
    /// node id (its bytes) → the replica a syncz answer showed it on last.
    owners: HashMap<Box<[u8]>, String, foldhash::fast::RandomState>,
    /// The digest of the last syncz answer learned from: the same rows on
    /// the same replicas again (a mesh at rest) are not learned again.
    learned: Option<u64>,
}

/// Past the request deadline, the merge of an answer that is already in may
/// still take this long (so late replicas are named rather than a bare timeout).
const MERGE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);
/// Longest type URL accepted (istioctl's are under 40 bytes).
const MAX_TYPE_URL: usize = 256;
/// Longest text of a client's making put into one log line.
const LOG_MAX: usize = 256;

/// Whether reading the request failed because of what the client sent
/// (undecodable, too big), not because the stream or connection ended.
fn is_bad_request(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Internal
            | tonic::Code::ResourceExhausted
            | tonic::Code::OutOfRange
            | tonic::Code::InvalidArgument
    )
}

/// The status a client gets for a request that could not be read: tonic says
/// `Internal` for undecodable bytes (including invalid UTF-8 in a string), which
/// is the client's fault: InvalidArgument. Messages are bounded.
fn inbound_error(status: Status) -> Status {
    let msg = bounded(status.message(), LOG_MAX);
    match status.code() {
        tonic::Code::Internal => Status::invalid_argument(format!(
            "the request is not a valid DiscoveryRequest: {msg}"
        )),
        tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => {
            Status::resource_exhausted(format!(
                "the request is larger than istioctl-proxy accepts (--max-request-bytes): {msg}"
            ))
        }
        code => Status::new(code, msg),
    }
}

/// How an answer handed to HTTP/2 ended.
enum Read {
    /// The client read it.
    Done,
    /// The client read nothing more for [`STALL`] while another request
    /// waited for an answer slot: it gives way.
    Stalled,
    /// Not read within the patience.
    TimedOut,
}

/// A client whose connection wrote nothing for this long (twice the tick)
/// while others wait for a slot is taken for one that does not read. A client
/// that reads, even over a slow link, opens its HTTP/2 window continuously.
const STALL: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits until the connection has written `target` bytes (the answer is
/// out), the client stalls while the slots are contended, or `patience` passed.
async fn wait_read(
    slots: &crate::limits::AnswerSlots,
    written: &crate::limits::Written,
    target: u64,
    patience: std::time::Duration,
) -> Read {
    let give_up = Instant::now() + patience;
    let reached = written.reach(target);
    tokio::pin!(reached);
    let tick = STALL / 2;
    let mut last = written.bytes();
    let mut still = 0;
    loop {
        tokio::select! {
            _ = &mut reached => return Read::Done,
            _ = tokio::time::sleep_until(give_up) => return Read::TimedOut,
            _ = tokio::time::sleep(tick) => {
                let now = written.bytes();
                if now == last {
                    still += 1;
                } else {
                    still = 0;
                    last = now;
                }
                if still >= 2 && slots.contended() {
                    return Read::Stalled;
                }
            }
        }
    }
}

/// Who is asking, as far as answering is concerned.
#[derive(Debug, Clone)]
struct Caller {
    /// The caller's own token (passthrough) to forward.
    forward_token: Option<String>,
    /// Which proxies syncz, connections and config_dump may show (istiod's
    /// StatusGen rule, allowed namespaces included).
    visibility: Visibility,
    /// `Some` when `istio.io/debug` is restricted for this caller (own-identity
    /// mode, caller outside the system namespace: istiod's DebugGen rule).
    debug_restricted: Option<CallerIdentity>,
}

/// The outcome of authorization.
enum Authorized {
    /// Ask the replicas.
    Forward,
    /// Answer zero resources without asking (what istiod answers this caller).
    Nothing,
}

/// The gRPC service (served through [`crate::ads::AdsServer`]).
pub(crate) struct AdsService {
    pub state: Arc<State>,
}

/// The answers of one ADS stream, in order.
pub(crate) type AnswerStream = PermitStream<ReceiverStream<Tracked<Result<Answer, Status>>>>;

impl AdsService {
    pub(crate) async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let state = self.state.clone();
        let caller = state.authenticate(request.metadata())?;
        let ext = request.extensions();
        let conn = ext
            .get::<ConnInfo>()
            .or_else(|| {
                ext.get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                    .map(|t| t.get_ref())
            })
            .cloned();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Tracked<Result<Answer, Status>>>(1);
        let mut shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            // Nonces sent on this stream (only the fail-on-ack defect reads them).
            let mut sent: Vec<String> = Vec::new();
            // Defect: a global lock from stream start until its first request.
            let mut serial = if state.config.has_defect(Defect::SerialStreams) {
                Some(state.serial.clone().lock_owned().await)
            } else {
                None
            };
            loop {
                let next = tokio::select! {
                    r = inbound.message() => r,
                    _ = shutdown.wait_for(|s| *s) => break,
                };
                drop(serial.take());
                let req = match next {
                    Ok(Some(req)) => req,
                    // Client finished.
                    Ok(None) => break,
                    // Undecodable, too big, or the client went away: say
                    // so (one bounded log line) and end the stream.
                    Err(_) if state.config.has_defect(Defect::SilentOnBadRequest) => break,
                    // The client reset the stream or the connection went
                    // away (istioctl never closes its stream): nothing to say.
                    Err(status) if !is_bad_request(&status) => {
                        tracing::debug!(code = ?status.code(), message = %bounded(status.message(), LOG_MAX), "client went away");
                        break;
                    }
                    Err(status) => {
                        let status = inbound_error(status);
                        tracing::warn!(code = ?status.code(), message = %bounded(status.message(), LOG_MAX), "bad request");
                        let _ = tx.send(Tracked::error(status)).await;
                        break;
                    }
                };
                if req.type_url.len() > MAX_TYPE_URL {
                    let status = Status::invalid_argument(format!(
                        "type URL of {} bytes is not one istioctl sends (at most {MAX_TYPE_URL}): {}",
                        req.type_url.len(),
                        bounded(&req.type_url, 64)
                    ));
                    tracing::warn!(message = %status.message(), "bad request");
                    let _ = tx.send(Tracked::error(status)).await;
                    break;
                }
                if state.config.has_defect(Defect::FailOnAck) && sent.contains(&req.response_nonce)
                {
                    let _ = tx
                        .send(Tracked::error(Status::invalid_argument(
                            "unexpected ACK on a debug stream (defect fail-on-ack)",
                        )))
                        .await;
                    break;
                }
                let deadline = Instant::now() + state.config.request_timeout;
                // Defect: no limit on answers in flight.
                let unbounded = state.config.has_defect(Defect::UnboundedAnswers);
                let permit = if unbounded {
                    None
                } else {
                    let Some(permit) = state.answer_slots.acquire(deadline).await else {
                        let status = Status::resource_exhausted(format!(
                            "istioctl-proxy is busy: {} answers are in flight (--max-inflight-answers); try again",
                            state.config.limits.max_inflight_answers
                        ));
                        tracing::warn!(message = %status.message(), "request refused");
                        let _ = tx.send(Tracked::error(status)).await;
                        break;
                    };
                    Some(permit)
                };
                let answer = match tokio::time::timeout_at(
                    deadline + MERGE_GRACE * 2,
                    state.answer(req, &caller, deadline),
                )
                .await
                {
                    Ok(a) => a,
                    Err(_) => {
                        let status = Status::deadline_exceeded(format!(
                            "istioctl-proxy: the request took longer than --request-timeout {}",
                            humantime::format_duration(state.config.request_timeout)
                        ));
                        tracing::warn!(message = %status.message(), "request failed");
                        Err(status)
                    }
                };
                if let Ok(resp) = &answer
                    && state.config.has_defect(Defect::FailOnAck)
                {
                    sent.push(resp.nonce.clone());
                }
                let failed = answer.is_err();
                let size = answer.as_ref().map_or(0, |r| r.encoded_len() as u64);
                let (taken_tx, taken_rx) = oneshot::channel();
                // The slot stays with this task (not with the answer handed
                // to HTTP/2, which hyper takes whole at once) until the client
                // has read the answer.
                let tracked = Tracked {
                    item: answer,
                    permit: None,
                    taken: Some(taken_tx),
                };
                if tx.send(tracked).await.is_err() || failed {
                    break;
                }
                let patience = state.config.request_timeout;
                if unbounded {
                    // Defect: wait as long as the client likes.
                    if taken_rx.await.is_err() {
                        break;
                    }
                    continue;
                }
                // The client must read its answer in time; one that does not
                // would make the proxy hold it (and its memory) forever:
                // close its connection, which drops the answer.
                let read = match &conn {
                    Some(c) => {
                        let target = c.written.owe(size);
                        wait_read(&state.answer_slots, &c.written, target, patience).await
                    }
                    // No connection info (not served through `limits::incoming`):
                    // the answer was at least handed over.
                    None => match tokio::time::timeout(patience, taken_rx).await {
                        Ok(_) => Read::Done,
                        Err(_) => Read::TimedOut,
                    },
                };
                let why = match read {
                    Read::Done => {
                        drop(permit);
                        continue;
                    }
                    Read::TimedOut => "did not read its answer in time",
                    Read::Stalled => "stopped reading its answer while other requests wait",
                };
                tracing::warn!(after = ?patience, size, "a client {why}; closing its connection");
                if let Some(c) = &conn {
                    c.kill.kill();
                }
                break;
            }
        });
        Ok(Response::new(PermitStream::new(ReceiverStream::new(rx))))
    }
}

impl State {
    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        if self.config.has_defect(Defect::CrashOnMissingToken)
            && metadata.get("authorization").is_none()
        {
            // The sample indexes the header's fields without checking: deliberately the same.
            panic!("index out of range: no authorization header (defect crash-on-missing-token)");
        }
        let unauthenticated = |e: AuthError| Status::unauthenticated(e.to_string());
        match &self.config.identity {
            IdentityMode::Anonymous { .. } => Ok(Caller {
                forward_token: None,
                visibility: Visibility::All,
                debug_restricted: None,
            }),
            IdentityMode::Passthrough => {
                let token = bearer_token(metadata)
                    .map_err(unauthenticated)?
                    .ok_or_else(|| unauthenticated(AuthError::Missing))?;
                self.verifier.verify(&token).map_err(unauthenticated)?;
                // The replicas see the caller's own token and apply their rules.
                Ok(Caller {
                    forward_token: Some(token),
                    visibility: Visibility::All,
                    debug_restricted: None,
                })
            }
            IdentityMode::OwnIdentity(own) => {
                let token = bearer_token(metadata)
                    .map_err(unauthenticated)?
                    .ok_or_else(|| unauthenticated(AuthError::Missing))?;
                let who = self.verifier.verify(&token).map_err(unauthenticated)?;
                let visibility =
                    Visibility::of(&who, &own.system_namespace, &own.allowed_namespaces);
                tracing::debug!(caller = ?who, ?visibility, "authenticated caller");
                // DebugGen exempts the system namespace only, not the allowed
                // ones (1.30.0:pilot/pkg/xds/debuggen.go parseAndValidateDebugRequest).
                let debug_restricted = (who.namespace != own.system_namespace).then_some(who);
                Ok(Caller {
                    forward_token: None,
                    visibility,
                    debug_restricted,
                })
            }
        }
    }

    /// The token replicas are called with.
    fn upstream_token(&self, caller: &Caller) -> Result<Option<String>, Status> {
        let file = match &self.config.identity {
            IdentityMode::Passthrough => return Ok(caller.forward_token.clone()),
            IdentityMode::Anonymous { token_file } => token_file.as_ref(),
            IdentityMode::OwnIdentity(own) => own.token_file.as_ref(),
        };
        match file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| {
                    tracing::error!(path = %path.display(), error = %e, "cannot read the proxy's token file");
                    Status::internal(format!(
                        "istioctl-proxy cannot read its own token file {}: {e}",
                        path.display()
                    ))
                }),
        }
    }

    /// When the proxy calls with its own credentials, the node claims the
    /// proxy's service account (istiod checks the claim against the
    /// authenticated identity): the one its token names, else the configured one.
    fn upstream_request(&self, mut req: DiscoveryRequest, token: Option<&str>) -> DiscoveryRequest {
        let from_token = || token.and_then(crate::auth::unverified_identity);
        let claim = match &self.config.identity {
            IdentityMode::Passthrough => None,
            IdentityMode::Anonymous { .. } => from_token(),
            IdentityMode::OwnIdentity(own) => {
                Some(from_token().unwrap_or_else(|| crate::auth::CallerIdentity {
                    namespace: own.namespace.clone(),
                    service_account: own.service_account.clone(),
                }))
            }
        };
        if let (Some(claim), Some(node)) = (claim, req.node.as_mut()) {
            let md = node.metadata.get_or_insert_with(Default::default);
            md.fields
                .insert("NAMESPACE".into(), string_value(&claim.namespace));
            md.fields.insert(
                "SERVICE_ACCOUNT".into(),
                string_value(&claim.service_account),
            );
        }
        req
    }

    fn current_replicas(&self) -> Result<ReplicaSet, Status> {
        let set = self.replicas.borrow().clone();
        self.upstream.retain(&set);
        if set.is_empty() {
            return Err(Status::unavailable(
                "istioctl-proxy has discovered no istiod replicas (yet)",
            ));
        }
        Ok(set)
    }

    /// Answers one request.
    async fn answer(
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

    /// What a caller may ask (own-identity mode: `crate::authz`); the other
    /// modes leave it to the replicas, which see the caller's token (or none).
    async fn authorize(
        &self,
        req: &DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Authorized, Status> {
        if self.config.has_defect(Defect::AuthzSynczOnly) {
            // The pre-audit code: config_dump's own visibility check only.
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

    fn strategy(&self) -> Strategy {
        if self.config.has_defect(Defect::SequentialFailFast) {
            Strategy::SequentialFailFast
        } else {
            Strategy::Parallel
        }
    }

    async fn ask_all(
        &self,
        replicas: &[Replica],
        req: &DiscoveryRequest,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<ReplicaAnswer>, Status> {
        // Defect: replicas that failed once are not asked again.
        let forget = self.config.has_defect(Defect::ForgetFailedReplicas);
        let remembered: Vec<Replica>;
        let asked = if forget {
            let forgotten = self.forgotten.lock().map(|f| f.clone()).unwrap_or_default();
            remembered = replicas
                .iter()
                .filter(|r| !forgotten.contains(&r.name))
                .cloned()
                .collect();
            &remembered[..]
        } else {
            replicas
        };
        let answers = fan_out(
            &self.upstream,
            asked,
            req,
            token,
            self.config.replica_timeout,
            deadline,
            self.strategy(),
        )
        .await;
        if !forget {
            return Ok(answers);
        }
        // ...and their silence is left out of the answer. (Replicas that
        // answered, even with garbage, count as answering: the merge judges
        // their answers, which syncz answers are read on arrival.)
        let (failed, answered): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .partition(|a| matches!(&a.result, Err(e) if !matches!(e, ReplicaError::Invalid(_))));
        if let Ok(mut f) = self.forgotten.lock() {
            f.extend(failed.into_iter().map(|a| a.replica.name));
        }
        Ok(answered)
    }

    /// A fan-out type (syncz, connections, debug): every replica asked, the
    /// answers merged. Identical requests share one fan-out (see [`Flights`]).
    async fn fan_out_and_merge(
        self: &Arc<Self>,
        req: DiscoveryRequest,
        caller: &Caller,
        deadline: Instant,
    ) -> Result<Answer, Status> {
        let token = self.upstream_token(caller)?;
        let request = self.upstream_request(req, token.as_deref());
        let visibility = if request.type_url == type_url::CONNECTIONS
            && self.config.has_defect(Defect::AuthzSynczOnly)
        {
            Visibility::All
        } else {
            caller.visibility.clone()
        };
        if self.config.has_defect(Defect::UnboundedAnswers) {
            // Defect: no backpressure on answers, none shared either: every
            // request computes and holds its own.
            let params = FlightParams {
                request,
                token,
                visibility,
                deadline,
            };
            return self.merged_now(&params).await.map(merge::answer_for_client);
        }
        let key = FlightKey::new(&request, &token, &visibility);
        let mut result = self.join_flight(key, || FlightParams {
            request,
            token,
            visibility,
            deadline,
        });
        let shared = match result.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        match shared {
            Some(Ok(shared)) => Ok(merge::answer_for_client(shared)),
            Some(Err(status)) => Err(status),
            None => Err(Status::internal(
                "istioctl-proxy: the fan-out ended without an answer",
            )),
        }
    }

    /// Joins the open flight of `key` (one whose requests to the replicas
    /// have not gone out yet) or opens one.
    fn join_flight(
        self: &Arc<Self>,
        key: FlightKey,
        params: impl FnOnce() -> FlightParams,
    ) -> watch::Receiver<Option<FlightResult>> {
        let mut lanes = self.flights.lanes();
        let lane = lanes.entry(key.clone()).or_default();
        if let Some(open) = &lane.open {
            return open.result.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight {
            params: params(),
            result: tx,
        });
        lane.open = Some(flight.clone());
        let idle = lane.idle.clone();
        drop(lanes);
        tokio::spawn(self.clone().fly(key, flight, idle));
        rx
    }

    /// Runs one flight: waits until no flight of its key is running (or
    /// until only a replica deadline is left before its creator's request
    /// deadline), closes it to newcomers, asks the replicas, merges, publishes.
    async fn fly(self: Arc<Self>, key: FlightKey, flight: Arc<Flight>, idle: Arc<Notify>) {
        let params = &flight.params;
        let latest = params
            .deadline
            .checked_sub(self.config.replica_timeout)
            .unwrap_or_else(Instant::now);
        loop {
            let notified = idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.flights.try_start(&key, &flight, latest) {
                break;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(latest) => {}
            }
        }
        // The turn ends when the last member's answer is out (or dropped),
        // so flights of one key never hold two answers' memory at once; on
        // an error, now.
        let landing = Landing {
            state: self.clone(),
            key,
        };
        let result = self.merged_now(params).await.map(|shared| {
            let mut shared = Arc::try_unwrap(shared).unwrap_or_else(|a| Shared {
                pieces: a.pieces.clone(),
                rows: a.rows,
                type_url: a.type_url.clone(),
                control_plane: a.control_plane.clone(),
                ..Default::default()
            });
            shared.hold = wire::Hold(Some(Box::new(landing)));
            Arc::new(shared)
        });
        flight.result.send_replace(Some(result));
    }

    /// Asks every replica now and merges their answers (one flight's work).
    async fn merged_now(self: &Arc<Self>, params: &FlightParams) -> FlightResult {
        let replicas = self.current_replicas()?;
        let token = params.token.as_deref();
        let answers = self
            .ask_all(&replicas, &params.request, token, params.deadline)
            .await?;
        let policy = match self.strategy() {
            Strategy::SequentialFailFast => FailurePolicy::Fail,
            Strategy::Parallel => self.config.on_replica_failure,
        };
        let flaws = MergeFlaws {
            no_dedupe: self.config.has_defect(Defect::NoDedupe),
            drop_last_replica: self.config.has_defect(Defect::DropLastReplicaSilently),
            keep_replica_id: self.config.has_defect(Defect::KeepReplicaControlPlaneId),
        };
        let known = self
            .remembered
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let requested = params.request.type_url.clone();
        let visibility = params.visibility.clone();
        let state = self.clone();
        let decode_copies = self.config.has_defect(Defect::BufferDecodedAnswers);
        let rows: usize = answers
            .iter()
            .filter_map(|a| a.result.as_ref().ok())
            .map(|r| r.resources.len())
            .sum();
        let merge = move || {
            let (mut shared, outcome) =
                merge::merge(&requested, &answers, policy, &visibility, &known, flaws)?;
            state.remember_control_planes(outcome.seen);
            if decode_copies {
                // Defect: a decoded copy of every answer, held with the answer.
                shared.decoded_copies = wire::DecodedCopies::of(
                    answers
                        .iter()
                        .filter_map(|a| a.result.as_ref().ok())
                        .map(|r| &r.response),
                );
            }
            Ok::<_, Status>((Arc::new(shared), answers, outcome.kept))
        };
        let inline = rows <= crate::fanout::INLINE_ROWS;
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

    /// `istio.io/debug/config_dump` for `pod.ns`: the owning replica's answer.
    async fn config_dump(
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
        if self.config.has_defect(Defect::ConfigDumpFirstReplicaOnly) {
            let first = &replicas[..1];
            let answers = self.ask_all(first, &upstream_req, token, deadline).await?;
            return match answers.into_iter().next().map(|a| (a.replica, a.result)) {
                Some((r, Ok(resp))) => Ok(self.passthrough(&requested, Some(&r), Some(resp))),
                Some((r, Err(e))) => Err(merge::failure_status(&[(&r, e)], 1)),
                None => Ok(self.passthrough(&requested, None, None)),
            };
        }
        if self
            .config
            .has_defect(Defect::ConfigDumpWaitsForEveryReplica)
        {
            // Every replica, and only then an answer: bounded by the request
            // deadline alone, so istiod ≤1.19's silent replicas hold it up.
            let until_deadline = deadline.saturating_duration_since(Instant::now());
            let answers = fan_out(
                &self.upstream,
                &replicas,
                &upstream_req,
                token,
                until_deadline,
                deadline,
                Strategy::Parallel,
            )
            .await;
            return Ok(answers
                .into_iter()
                .find_map(|a| match a.result {
                    Ok(resp) if !resp.resources.is_empty() => {
                        Some(self.passthrough(&requested, Some(&a.replica), Some(resp)))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| self.passthrough(&requested, None, None)));
        }
        // The owner: remembered from an earlier syncz, else learned now from
        // one (cheap, and every replica answers syncz, unlike config_dump).
        let mut owner = self.remembered_owner(&proxy_id, &replicas).await;
        if owner.is_none() {
            let syncz = DiscoveryRequest {
                type_url: type_url::SYNCZ.to_string(),
                resource_names: Vec::new(),
                ..upstream_req.clone()
            };
            if let Err(e) = self.fan_out_and_merge(syncz, caller, deadline).await {
                tracing::info!(proxy = %proxy_id, error = %e.message(), "syncz to find the config_dump owner failed");
            }
            owner = self.remembered_owner(&proxy_id, &replicas).await;
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
            self.owners.lock().await.owners.insert(
                proxy_id.clone().into_bytes().into_boxed_slice(),
                a.replica.name.clone(),
            );
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

    /// The replica a syncz answer last showed `proxy_id` on, if still discovered.
    async fn remembered_owner(&self, proxy_id: &str, replicas: &[Replica]) -> Option<Replica> {
        let name = self
            .owners
            .lock()
            .await
            .owners
            .get(proxy_id.as_bytes())
            .cloned()?;
        replicas.iter().find(|r| r.name == name).cloned()
    }

    /// One replica's answer (or an empty one), under the `<external>` identity.
    fn passthrough(
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

/// Writes the owners of a syncz answer's kept rows into the owner table
/// (only changed entries: no allocation for a proxy whose owner is known;
/// nothing when the answer kept the same rows as the last one learned).
fn learn_owners(
    mut table: tokio::sync::OwnedMutexGuard<OwnerTable>,
    answers: &[ReplicaAnswer],
    kept: &KeptRows,
) {
    if table.learned == Some(kept.digest) {
        return;
    }
    table.learned = Some(kept.digest);
    let owners = &mut table.owners;
    for (id, replica) in kept.owners(answers) {
        match owners.get_mut(id.as_bytes()) {
            Some(known) if known == replica => {}
            Some(known) => *known = replica.to_string(),
            None => {
                owners.insert(id.as_bytes().into(), replica.to_string());
            }
        }
    }
}

/// What a flight publishes: the merge every member shares, or the error.
type FlightResult = Result<Arc<Shared>, Status>;

/// Single flight: identical fan-out requests share one fan-out and one
/// merged answer (the resources are held once, whatever the number of
/// clients; each client gets its own version and nonce).
///
/// Identical means: the same upstream request (type URL, resource names,
/// node, as the replicas would see it), the same token to call them with and
/// the same caller visibility. Callers whose visibility differs never share
/// (nothing is filtered after sharing, so nothing can leak between them).
///
/// Freshness: a request joins only an *open* flight, one that has not sent
/// its requests to the replicas yet, so every answer reflects what the
/// replicas knew after the request arrived, never before. At most one flight
/// per key is open; it starts when the previous flight of its key is over,
/// its answer written out to its last client (the requests that arrived
/// meanwhile go out together, and two answers of one key are never held at
/// once), or at the latest when only a replica timeout is left before its
/// creator's request deadline (so a slow fan-out or a client that does not
/// read never costs a later one its time).
#[derive(Default)]
pub(crate) struct Flights {
    lanes: Mutex<HashMap<FlightKey, Lane>>,
    /// Flights started so far (tests).
    started: std::sync::atomic::AtomicUsize,
}

/// The flights of one key.
#[derive(Default)]
struct Lane {
    /// Flights asking the replicas now.
    running: usize,
    /// The flight newcomers join, not started yet.
    open: Option<Arc<Flight>>,
    /// Told when no flight of this key runs any more.
    idle: Arc<Notify>,
}

struct Flight {
    params: FlightParams,
    result: watch::Sender<Option<FlightResult>>,
}

/// What a flight asks, with whose credentials, for whom, until when (its
/// creator's deadline).
struct FlightParams {
    request: DiscoveryRequest,
    token: Option<String>,
    visibility: Visibility,
    deadline: Instant,
}

/// What makes two fan-outs identical (see [`Flights`]). The node's metadata
/// is a map, so it is keyed in sorted order (its encoding is not canonical).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    type_url: String,
    resource_names: Vec<String>,
    node: Vec<u8>,
    metadata: Vec<(String, Vec<u8>)>,
    token: Option<String>,
    visibility: Visibility,
}

impl FlightKey {
    fn new(req: &DiscoveryRequest, token: &Option<String>, visibility: &Visibility) -> Self {
        use prost::Message;
        let mut node = req.node.clone().unwrap_or_default();
        let mut metadata: Vec<(String, Vec<u8>)> = node
            .metadata
            .take()
            .map(|md| {
                md.fields
                    .into_iter()
                    .map(|(k, v)| (k, v.encode_to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        metadata.sort();
        FlightKey {
            type_url: req.type_url.clone(),
            resource_names: req.resource_names.clone(),
            node: node.encode_to_vec(),
            metadata,
            token: token.clone(),
            visibility: visibility.clone(),
        }
    }
}

impl Flights {
    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, Lane>> {
        // A panic elsewhere leaves the map consistent (every change is one step).
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `flight` if no flight of its key is running or `latest` has
    /// come; a started flight is closed to newcomers.
    fn try_start(&self, key: &FlightKey, flight: &Arc<Flight>, latest: Instant) -> bool {
        let mut lanes = self.lanes();
        let lane = lanes.entry(key.clone()).or_default();
        if lane.running > 0 && Instant::now() < latest {
            return false;
        }
        lane.running += 1;
        if lane.open.as_ref().is_some_and(|o| Arc::ptr_eq(o, flight)) {
            lane.open = None;
        }
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Flights running now, and started so far (tests).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let running = self.lanes().values().map(|l| l.running).sum();
        (
            running,
            self.started.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// A flight's turn's end (its answer's last client is served, the flight
/// failed, or its task panicked): the next flight of its key may start, and
/// an unused lane goes.
struct Landing {
    state: Arc<State>,
    key: FlightKey,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut lanes = self.state.flights.lanes();
        if let Some(lane) = lanes.get_mut(&self.key) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 {
                lane.idle.notify_waiters();
                if lane.open.is_none() {
                    lanes.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ProxyConfig;
    use fake_istiod::{FakeIstiod, Fault, Scenario, StartOptions};
    use futures::StreamExt;
    use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
    use proto::envoy::envoy::service::status::v3::ClientConfig;
    use proto::node::IstioctlNode;
    use std::net::SocketAddr;
    use std::time::Duration;

    async fn syncz(addr: SocketAddr) -> DiscoveryResponse {
        let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client =
            AggregatedDiscoveryServiceClient::new(ch).max_decoding_message_size(usize::MAX);
        let req = DiscoveryRequest {
            type_url: proto::type_url::SYNCZ.into(),
            node: Some(IstioctlNode::new("10.1.2.3".parse().unwrap(), "istio-system").to_node()),
            ..Default::default()
        };
        let outbound = futures::stream::once(async move { req }).chain(futures::stream::pending());
        let mut inbound = client
            .stream_aggregated_resources(outbound)
            .await
            .unwrap()
            .into_inner();
        inbound.message().await.unwrap().unwrap()
    }

    fn ids(resp: &DiscoveryResponse) -> Vec<String> {
        use prost::Message;
        resp.resources
            .iter()
            .map(|a| {
                ClientConfig::decode(a.value.as_slice())
                    .unwrap()
                    .node
                    .unwrap()
                    .id
            })
            .collect()
    }

    /// Identical requests that arrive while a fan-out is out share the next
    /// one, and that one is fresh: it sees a proxy that connected after the
    /// running fan-out had asked the replicas.
    #[tokio::test]
    async fn identical_requests_share_one_fresh_fan_out() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/three-replicas.yaml");
        let mut scenario = Scenario::load(path).unwrap();
        scenario.auth.debug_endpoint_auth = false;
        let slow = scenario.replicas[0].name.clone();
        let fast = scenario.replicas[1].name.clone();
        let mut fresh = scenario.proxies[0].clone();
        fresh.id = "arrived-late.default".into();
        fresh.replica = fast.clone();
        let fake = FakeIstiod::start(scenario, StartOptions::ephemeral())
            .await
            .unwrap();
        fake.set_fault(&slow, Fault::Delay(Duration::from_millis(800)))
            .await
            .unwrap();
        let replicas = fake
            .replicas()
            .iter()
            .map(|r| format!("{}={}", r.name, r.plaintext_addr))
            .collect();
        let mut config = ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), replicas);
        config.replica_timeout = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        let proxy = crate::start(config).await.unwrap();
        let addr = proxy.local_addr();
        let flights = &proxy.state.flights;

        let first = tokio::spawn(syncz(addr));
        // Bounded wait until the first fan-out runs (has asked the replicas).
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while flights.counts().0 == 0 {
            assert!(tokio::time::Instant::now() < until, "no fan-out started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fake.upsert_proxy(fresh).await.unwrap();
        let later: Vec<_> = (0..3).map(|_| tokio::spawn(syncz(addr))).collect();
        let first = first.await.unwrap();
        let mut answers = Vec::new();
        for l in later {
            answers.push(l.await.unwrap());
        }
        for a in &answers {
            assert!(
                ids(a).contains(&"arrived-late.default".to_string()),
                "a request that came after the fan-out went out got its stale answer"
            );
            assert_eq!(
                ids(a).len(),
                ids(&first).len()
                    + usize::from(!ids(&first).contains(&"arrived-late.default".to_string()))
            );
            assert_ne!(a.nonce, first.nonce, "every answer has its own nonce");
        }
        assert_ne!(answers[0].nonce, answers[1].nonce);
        assert_eq!(
            flights.counts().1,
            2,
            "the three later requests shared one fan-out (started after the first one's)"
        );
        proxy.shutdown().await;
        fake.shutdown().await;
    }
}
