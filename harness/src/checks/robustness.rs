//! Shared by the `robustness` profile's checks: raw gRPC messages on the ADS
//! stream (bytes no well-behaved client would send), raw TCP connections, and
//! a bounded "is a normal client still answered" probe. Loopback only; every
//! loop is bounded in count and time.

use crate::client::{self, ClientError, ClientOptions};
use crate::runner::context::CheckContext;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// How long a hostile exchange may take before the check gives up on it.
pub const EXCHANGE_BOUND: Duration = Duration::from_secs(10);
/// A normal istioctl client must be answered within this long during or
/// right after an attack.
pub const NORMAL_CLIENT_BOUND: Duration = Duration::from_secs(10);

/// A codec for raw message bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Raw;
#[derive(Debug)]
pub struct RawEnc;
#[derive(Debug)]
pub struct RawDec;

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

/// What a raw exchange came to.
#[derive(Debug)]
pub enum RawOutcome {
    /// A message came back (its length).
    Answered(usize),
    /// The stream ended with this status (`Ok` = closed with no answer).
    Status(tonic::Code, String),
    /// Could not connect or start the call.
    Transport(String),
    /// Nothing within the bound.
    TimedOut,
}

impl std::fmt::Display for RawOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawOutcome::Answered(n) => write!(f, "answered with a {n}-byte message"),
            RawOutcome::Status(tonic::Code::Ok, _) => {
                write!(f, "closed the stream with status OK and no answer")
            }
            RawOutcome::Status(c, m) => {
                let m: String = m.chars().take(200).collect();
                write!(f, "gRPC status {c:?}: {m}")
            }
            RawOutcome::Transport(e) => write!(f, "transport error: {e}"),
            RawOutcome::TimedOut => write!(f, "no answer within {EXCHANGE_BOUND:?}"),
        }
    }
}

const ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// Sends raw `messages` on one ADS stream (with istioctl's credentials) and
/// waits (bounded) for the first answer or the stream's end.
pub async fn raw_exchange(opts: &ClientOptions, messages: Vec<Vec<u8>>) -> RawOutcome {
    let fut = async {
        let channel = match client::connect(opts).await {
            Ok(c) => c,
            Err(e) => return RawOutcome::Transport(e.to_string()),
        };
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        if let Err(e) = grpc.ready().await {
            return RawOutcome::Transport(e.to_string());
        }
        let (_keep_open, rx) = tokio::sync::oneshot::channel::<()>();
        let out = futures::stream::iter(messages)
            .chain(futures::stream::once(rx).filter_map(|_| async { None }));
        let mut req = tonic::Request::new(out);
        if let Some(t) = opts.credentials.token()
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            req.metadata_mut().insert("authorization", v);
        }
        let path = http::uri::PathAndQuery::from_static(ADS_PATH);
        let mut inbound = match grpc.streaming(req, path, Raw).await {
            Ok(r) => r.into_inner(),
            Err(s) => return RawOutcome::Status(s.code(), s.message().to_string()),
        };
        match inbound.message().await {
            Ok(Some(m)) => RawOutcome::Answered(m.len()),
            Ok(None) => RawOutcome::Status(tonic::Code::Ok, String::new()),
            Err(s) => RawOutcome::Status(s.code(), s.message().to_string()),
        }
    };
    tokio::time::timeout(EXCHANGE_BOUND, fut)
        .await
        .unwrap_or(RawOutcome::TimedOut)
}

/// A length-delimited protobuf field (wire type 2).
pub fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut m = varint(u64::from(number) << 3 | 2);
    m.extend(varint(bytes.len() as u64));
    m.extend_from_slice(bytes);
    m
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// Whether a normal istioctl client is answered, within the bound; `Err`
/// says how it was not.
pub async fn normal_client_answered(ctx: &CheckContext) -> Result<Duration, String> {
    normal_client_answered_within(ctx, NORMAL_CLIENT_BOUND).await
}

/// [`normal_client_answered`] with another bound.
pub async fn normal_client_answered_within(
    ctx: &CheckContext,
    bound: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut opts = ctx.istioctl();
    opts.timeout = bound;
    match client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
        Ok(_) => Ok(started.elapsed()),
        Err(ClientError::Timeout { .. }) => Err(format!(
            "a normal istioctl client got no answer within {bound:?}"
        )),
        Err(e) => Err(format!(
            "a normal istioctl client failed after {:?}: {e}",
            started.elapsed()
        )),
    }
}

/// Raises this process's soft open-file limit to the hard limit (attacks with
/// thousands of connections need it); returns the limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    istioctl_proxy::limits::raise_fd_limit()
}
