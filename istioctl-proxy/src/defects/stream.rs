//! The defects of one ADS stream: `serial-streams` (a global lock held from
//! the stream's start to its first message), `silent-on-bad-request` and
//! `fail-on-ack`.

use super::defect::{Defect, Set};
use crate::wire::Answer;
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::sync::OwnedMutexGuard;
use tonic::Status;

/// One stream's defects (made by [`super::Defects::stream_opened`]).
pub(crate) struct StreamSeam {
    on: Set,
    /// `serial-streams`: held until the stream's first message.
    serial: Option<OwnedMutexGuard<()>>,
    /// `fail-on-ack`: the nonces sent on this stream.
    sent: Vec<String>,
}

impl StreamSeam {
    pub(super) fn new(on: Set, serial: Option<OwnedMutexGuard<()>>) -> Self {
        StreamSeam {
            on,
            serial,
            sent: Vec::new(),
        }
    }

    /// What the stream read next came in: whether the stream ends here with
    /// status OK and no answer (`silent-on-bad-request`: on any read error).
    pub fn ends_silently(&mut self, next: &Result<Option<DiscoveryRequest>, Status>) -> bool {
        drop(self.serial.take());
        next.is_err() && self.on.has(Defect::SilentOnBadRequest)
    }

    /// The error that ends the stream instead of answering `req`
    /// (`fail-on-ack`: a request that ACKs one of the answers sent on it).
    pub fn refuses(&self, req: &DiscoveryRequest) -> Option<Status> {
        (self.on.has(Defect::FailOnAck) && self.sent.contains(&req.response_nonce)).then(|| {
            Status::invalid_argument("unexpected ACK on a debug stream (defect fail-on-ack)")
        })
    }

    /// An answer is about to go out on the stream.
    pub fn answered(&mut self, answer: &Result<Answer, Status>) {
        if let Ok(resp) = answer
            && self.on.has(Defect::FailOnAck)
        {
            self.sent.push(resp.nonce.clone());
        }
    }
}
