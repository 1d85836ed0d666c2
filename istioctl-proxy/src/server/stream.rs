//! One ADS stream: requests read in order and answered one at a time, each
//! under an answer slot (`--max-inflight-answers`) until its client has read
//! it; hostile or broken input ends the stream with a bounded error.

use super::fan_out::MERGE_GRACE;
use super::state::{LOG_MAX, State};
use crate::limits::{AnswerSlots, ConnInfo, PermitStream, Tracked, Written, bounded};
use crate::wire::Answer;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Longest type URL accepted (istioctl's are under 40 bytes).
const MAX_TYPE_URL: usize = 256;

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
    slots: &AnswerSlots,
    written: &Written,
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
            // The defects' say on this stream (none in a correct proxy).
            let mut defects = state.defects.stream_opened().await;
            let bounded_answers = state.defects.answers_bounded();
            loop {
                let next = tokio::select! {
                    r = inbound.message() => r,
                    _ = shutdown.wait_for(|s| *s) => break,
                };
                if defects.ends_silently(&next) {
                    break;
                }
                let req = match next {
                    Ok(Some(req)) => req,
                    // Client finished.
                    Ok(None) => break,
                    // The client reset the stream or the connection went
                    // away (istioctl never closes its stream): nothing to say.
                    Err(status) if !is_bad_request(&status) => {
                        tracing::debug!(code = ?status.code(), message = %bounded(status.message(), LOG_MAX), "client went away");
                        break;
                    }
                    // Undecodable or too big: say so (one bounded log
                    // line) and end the stream.
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
                if let Some(status) = defects.refuses(&req) {
                    let _ = tx.send(Tracked::error(status)).await;
                    break;
                }
                let deadline = Instant::now() + state.config.request_timeout;
                let permit = if bounded_answers {
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
                } else {
                    None
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
                defects.answered(&answer);
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
                if !bounded_answers {
                    // As long as the client likes.
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
