//! The proxy's view of the wire: a replica's `DiscoveryResponse` is decoded
//! with its resources left as the encoded `google.protobuf.Any` messages
//! (zero-copy slices of the buffer tonic received them into), the merge reads
//! only the few fields it needs with a hand-written field scanner, and the
//! merged answer is written with those bytes as they came, in chunks, as the
//! client's HTTP/2 window takes them (never one more contiguous copy).
//!
//! Wire format: <https://protobuf.dev/programming-guides/encoding/>. A
//! repeated message field and a repeated `bytes` field are both
//! length-delimited, so [`RawResponse`] reads `DiscoveryResponse.resources`
//! (`repeated google.protobuf.Any resources = 2`) as `repeated bytes`.

use prost::Message;
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};
use proto::envoy::envoy::config::core::v3::ControlPlane;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::envoy::google::protobuf::Any;
use std::sync::Arc;

/// `envoy.service.discovery.v3.DiscoveryResponse` as read from a replica:
/// every field the proxy uses, `resources` still encoded (each element is one
/// whole encoded `Any`). Fields not listed (canary, resource_errors) are
/// skipped, as the full decode dropped them too.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub resources: Vec<Bytes>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(message, optional, tag = "6")]
    pub control_plane: Option<ControlPlane>,
}

/// A replica's answer as received: its fields ([`RawResponse`], which it
/// dereferences to, read-only: resources changed apart from the buffer
/// could no longer be written as slices of it) and, when it came off the wire, the whole encoded
/// message its resources are slices of, so that runs of kept resources can
/// be written out as single slices of it, keys and lengths included (see
/// [`Piece::Encoded`]).
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub response: RawResponse,
    pub buffer: Option<Bytes>,
}

impl Received {
    /// Reads an encoded `DiscoveryResponse`, keeping `buffer`: the resources
    /// are slices of it (prost reads a `bytes` field of a `Bytes` buffer
    /// without copying).
    pub fn decode(buffer: Bytes) -> Result<Self, prost::DecodeError> {
        let response = RawResponse::decode(buffer.clone())?;
        Ok(Received {
            response,
            buffer: Some(buffer),
        })
    }
}

impl From<RawResponse> for Received {
    fn from(response: RawResponse) -> Self {
        Received {
            response,
            buffer: None,
        }
    }
}

impl std::ops::Deref for Received {
    type Target = RawResponse;
    fn deref(&self) -> &RawResponse {
        &self.response
    }
}

/// A malformed resource (the reason, for `ReplicaError::Invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(String);

impl Malformed {
    pub fn new(reason: impl Into<String>) -> Self {
        Malformed(reason.into())
    }
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Malformed {
    Malformed(format!("{what}: {e}"))
}

/// One field of a message, as the scanner met it.
enum Field<'a> {
    /// A length-delimited field's bytes.
    Bytes(&'a [u8]),
    /// A varint's value.
    Varint(u64),
    /// Anything else, skipped (and checked for framing).
    Skipped,
}

/// Walks the fields of one encoded message, allocating nothing. Framing
/// errors are reported as prost reports them.
struct Fields<'a> {
    buf: &'a [u8],
    /// prost's recursion budget left for this message (its `DecodeContext`):
    /// 100 for a message decoded on its own, one less per level of nesting.
    left: u32,
}

/// prost's recursion limit (`prost::RECURSION_LIMIT`).
const RECURSION_LIMIT: u32 = 100;

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            left: RECURSION_LIMIT,
        }
    }

    /// A message `levels` below the one decoded on its own.
    fn nested(buf: &'a [u8], levels: u32) -> Self {
        Fields {
            buf,
            left: RECURSION_LIMIT.saturating_sub(levels),
        }
    }

    /// Skips a field as `prost::encoding::skip_field` does with a context
    /// of `left` (so groups nest as deep as prost allows, no deeper).
    fn skip_field(&mut self, wire_type: u64, tag: u32, left: u32) -> Result<(), String> {
        if left == 0 {
            return Err("recursion limit reached".into());
        }
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.skip(8),
            5 => self.skip(4),
            2 => {
                let len = self.varint()?;
                if len > self.buf.len() as u64 {
                    return Err("buffer underflow".into());
                }
                self.skip(len as usize)
            }
            3 => loop {
                let (t, w) = self.key()?;
                if w == 4 {
                    if t != tag {
                        return Err("unexpected end group tag".into());
                    }
                    return Ok(());
                }
                self.skip_field(w, t, left - 1)?;
            },
            4 => Err("unexpected end group tag".into()),
            w => Err(format!("invalid wire type value: {w}")),
        }
    }

    /// A field key, checked as `prost::encoding::decode_key` checks it.
    fn key(&mut self) -> Result<(u32, u64), String> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(format!("invalid key value: {key}"));
        }
        let wire_type = key & 0x07;
        if wire_type > 5 {
            return Err(format!("invalid wire type value: {wire_type}"));
        }
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err("invalid tag value: 0".into());
        }
        Ok((tag, wire_type))
    }

    /// A varint (one-byte fast path; longer ones as prost decodes them).
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, String> {
        match self.buf.first() {
            Some(&b) if b < 0x80 => {
                self.buf = &self.buf[1..];
                Ok(u64::from(b))
            }
            _ => decode_varint(&mut self.buf).map_err(|e| e.to_string()),
        }
    }

    /// Skips `n` bytes (a fixed-width field).
    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.buf.len() < n {
            return Err("buffer underflow".into());
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    /// The next field (its number and content), `None` at the end. Keys are
    /// checked as prost checks them (`prost::encoding::decode_key`).
    #[inline(always)]
    fn next_field(&mut self) -> Result<Option<(u32, Field<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (tag, wire_type) = self.key()?;
        let field = match wire_type {
            0 => Field::Varint(self.varint()?),
            2 => {
                let len = self.varint()?;
                if len > self.buf.len() as u64 {
                    return Err("buffer underflow".into());
                }
                let (value, rest) = self.buf.split_at(len as usize);
                self.buf = rest;
                Field::Bytes(value)
            }
            w => {
                self.skip_field(w, tag, self.left)?;
                Field::Skipped
            }
        };
        Ok(Some((tag, field)))
    }
}

fn wrong_type(field: &str) -> String {
    format!("invalid wire type for {field}")
}

fn utf8<'a>(b: &'a [u8], field: &str) -> Result<&'a str, String> {
    std::str::from_utf8(b)
        .map_err(|_| format!("invalid string value for {field}: data is not UTF-8 encoded"))
}

/// An encoded `google.protobuf.Any`: its type URL and value (slices of it).
pub fn scan_any(any: &[u8]) -> Result<(&str, &[u8]), Malformed> {
    let (type_url, value) = scan_any_raw(any)?;
    let type_url =
        utf8(type_url, "Any.type_url").map_err(|e| malformed("undecodable resource", e))?;
    Ok((type_url, value))
}

/// [`scan_any`] with the type URL's bytes unchecked (the caller compares
/// them with the one it expects, which is UTF-8).
pub fn scan_any_raw(any: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let mut type_url: &[u8] = &[];
    let mut value: &[u8] = &[];
    // An Any is read as a resource of a DiscoveryResponse: one level down.
    let mut fields = Fields::nested(any, 1);
    let scanned: Result<(), String> = (|| {
        while let Some((tag, field)) = fields.next_field()? {
            match (tag, field) {
                // Every occurrence is a string istioctl's decoder checks
                // (Go's proto3 strings must be UTF-8), not only the last one
                // that wins: an earlier invalid one fails its decode too.
                (1, Field::Bytes(b)) => {
                    if !type_url.is_empty() {
                        utf8(type_url, "Any.type_url")?;
                    }
                    type_url = b
                }
                (2, Field::Bytes(b)) => value = b,
                (1, _) => return Err(wrong_type("Any.type_url")),
                (2, _) => return Err(wrong_type("Any.value")),
                _ => {}
            }
        }
        Ok(())
    })();
    scanned.map_err(|e| malformed("undecodable resource", e))?;
    Ok((type_url, value))
}

/// Newest update time of a syncz row (seconds, nanos).
pub type Stamp = Option<(i64, i32)>;

/// The node id of an encoded `envoy.service.status.v3.ClientConfig`
/// (`node` = 1, `Node.id` = 1): its top-level fields and its node's are
/// walked (so their framing is checked), nothing else is looked into.
/// Repeated occurrences of a singular field merge as protobuf says (the last
/// value of a scalar wins).
pub fn client_config_id(value: &[u8]) -> Result<&str, Malformed> {
    let scanned: Result<&str, String> = (|| {
        let mut id = "";
        let mut fields = Fields::new(value);
        while let Some((tag, field)) = fields.next_field()? {
            match (tag, field) {
                (1, Field::Bytes(node)) => {
                    let mut nf = Fields::nested(node, 1);
                    while let Some((t, f)) = nf.next_field()? {
                        match (t, f) {
                            (1, Field::Bytes(b)) => id = utf8(b, "Node.id")?,
                            (1, _) => return Err(wrong_type("Node.id")),
                            _ => {}
                        }
                    }
                }
                (1, _) => return Err(wrong_type("ClientConfig.node")),
                (3, Field::Bytes(_)) => {}
                (3, _) => return Err(wrong_type("ClientConfig.generic_xds_configs")),
                _ => {}
            }
        }
        Ok(id)
    })();
    scanned.map_err(|e| malformed("undecodable ClientConfig", e))
}

/// The newest `last_updated` of an encoded ClientConfig
/// (`generic_xds_configs` = 3, `GenericXdsConfig.last_updated` = 5,
/// `Timestamp.seconds` = 1 and `nanos` = 2); only read for a proxy that two
/// replicas report (it decides which copy is kept).
pub fn client_config_stamp(value: &[u8]) -> Result<Stamp, Malformed> {
    let scanned: Result<Stamp, String> = (|| {
        let mut newest: Stamp = None;
        let mut fields = Fields::new(value);
        while let Some((tag, field)) = fields.next_field()? {
            match (tag, field) {
                (3, Field::Bytes(generic)) => {
                    let mut stamp: Stamp = None;
                    let mut gf = Fields::nested(generic, 1);
                    while let Some((t, f)) = gf.next_field()? {
                        match (t, f) {
                            (5, Field::Bytes(ts)) => {
                                let (mut s, mut n) = stamp.unwrap_or((0, 0));
                                let mut tf = Fields::nested(ts, 2);
                                while let Some((tt, v)) = tf.next_field()? {
                                    match (tt, v) {
                                        (1, Field::Varint(v)) => s = v as i64,
                                        (2, Field::Varint(v)) => n = v as i32,
                                        (1 | 2, _) => return Err(wrong_type("Timestamp")),
                                        _ => {}
                                    }
                                }
                                stamp = Some((s, n));
                            }
                            (5, _) => return Err(wrong_type("GenericXdsConfig.last_updated")),
                            _ => {}
                        }
                    }
                    newest = newest.max(stamp);
                }
                (3, _) => return Err(wrong_type("ClientConfig.generic_xds_configs")),
                _ => {}
            }
        }
        Ok(newest)
    })();
    scanned.map_err(|e| malformed("undecodable ClientConfig", e))
}

/// [`client_config_id`] and [`client_config_stamp`] at once.
pub fn client_config_key(value: &[u8]) -> Result<(&str, Stamp), Malformed> {
    Ok((client_config_id(value)?, client_config_stamp(value)?))
}

/// An encoded `Any` made from a decoded one (marker rows, tests).
pub fn encode_any(any: &Any) -> Bytes {
    Bytes::from(any.encode_to_vec())
}

/// What every client of one merged answer gets alike (shared between the
/// callers of one fan-out, see `server::single_flight::Flights`).
#[derive(Debug, Default)]
pub struct Shared {
    /// The kept resources, exactly as the replicas sent them, in order.
    pub pieces: Vec<Piece>,
    /// How many resources the pieces hold.
    pub rows: usize,
    pub type_url: String,
    pub control_plane: Option<ControlPlane>,
    /// The `buffer-decoded-answers` defect's decoded copies of the replicas'
    /// answers, held as long as the answer (always empty otherwise).
    pub decoded_copies: DecodedCopies,
    /// Dropped with the last client's answer (the single flight's turn ends
    /// there: see `server::single_flight::Flights`).
    pub hold: Hold,
}

/// A part of an answer's `resources` (field 2 of `DiscoveryResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Resources as they lie in a replica's message: each one's field key
    /// and length, then its `Any`, back to back. Written as they are, as
    /// slices of the replica's buffer (no copy).
    Encoded(Bytes),
    /// One encoded `Any`; its key and length are written before it.
    Any(Bytes),
}

impl Piece {
    /// Its length in the answer.
    pub fn encoded_len(&self) -> usize {
        match self {
            Piece::Encoded(b) => b.len(),
            Piece::Any(a) => len_delimited_len(RESOURCES, a.len()),
        }
    }
}

/// Where resource `i` of `received` lies in its buffer with its field key
/// and length before it, if they are there as they would be written (a
/// replica may have written a longer varint than needed: then `None`, and
/// the resource is written with a fresh key and length).
fn encoded_span(received: &Received, i: usize) -> Option<std::ops::Range<usize>> {
    let buffer = received.buffer.as_ref()?;
    let resources = &received.resources;
    let resource = resources.get(i).filter(|r| !r.is_empty())?;
    // Pure address arithmetic: a live slice of another allocation cannot lie
    // within this one's range.
    let base = buffer.as_ptr() as usize;
    let offset = |b: &Bytes| (b.as_ptr() as usize).checked_sub(base);
    let at = offset(resource)?;
    let end = at.checked_add(resource.len())?;
    if end > buffer.len() {
        return None;
    }
    let n = prost::encoding::key_len(RESOURCES) + encoded_len_varint(resource.len() as u64);
    let start = at.checked_sub(n)?;
    // The previous resource ends exactly `n` bytes before this one: prost
    // read only this one's key and length in between, and they take the
    // shortest encoding's room, so they are that encoding (nothing to read;
    // this is the common case, and it spares a cache miss per resource).
    let right_after = i
        .checked_sub(1)
        .and_then(|p| resources.get(p))
        .and_then(|p| offset(p).map(|o| o + p.len()))
        == Some(start);
    if right_after {
        return Some(start..end);
    }
    let mut prefix = [0u8; 16];
    let mut w = &mut prefix[..];
    encode_key(RESOURCES, WireType::LengthDelimited, &mut w);
    encode_varint(resource.len() as u64, &mut w);
    (buffer[start..at] == prefix[..n]).then_some(start..end)
}

/// Appends the resources of `received` at `kept` (ascending indexes) to
/// `out`: consecutive ones that lie back to back in the replica's buffer as
/// one [`Piece::Encoded`] slice, others as [`Piece::Any`]. Returns how many.
pub fn pieces_of(
    received: &Received,
    kept: impl IntoIterator<Item = usize>,
    out: &mut Vec<Piece>,
) -> usize {
    let mut count = 0;
    let mut run: Option<std::ops::Range<usize>> = None;
    let flush = |run: &mut Option<std::ops::Range<usize>>, out: &mut Vec<Piece>| {
        if let (Some(r), Some(buffer)) = (run.take(), &received.buffer) {
            out.push(Piece::Encoded(buffer.slice(r)));
        }
    };
    for i in kept {
        let Some(resource) = received.resources.get(i) else {
            continue;
        };
        count += 1;
        let span = encoded_span(received, i);
        match (span, &mut run) {
            (Some(span), Some(r)) if r.end == span.start => r.end = span.end,
            (Some(span), _) => {
                flush(&mut run, out);
                run = Some(span);
            }
            (None, _) => {
                flush(&mut run, out);
                out.push(Piece::Any(resource.clone()));
            }
        }
    }
    flush(&mut run, out);
    count
}

/// Something dropped when the answer is (see [`Shared::hold`]).
#[derive(Default)]
pub struct Hold(pub Option<Box<dyn Send + Sync>>);

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Hold(..)" } else { "Hold" })
    }
}

/// Replicas' answers decoded in full (only the `buffer-decoded-answers`
/// defect makes them): every resource an owned `Any`, every syncz row a
/// decoded `ClientConfig`.
#[derive(Debug, Default)]
pub struct DecodedCopies {
    pub responses: Vec<DiscoveryResponse>,
    pub client_configs: Vec<proto::envoy::envoy::service::status::v3::ClientConfig>,
}

impl DecodedCopies {
    /// Decodes every answer (what does not decode is left out).
    pub fn of<'a>(answers: impl Iterator<Item = &'a RawResponse>) -> Self {
        let mut copies = DecodedCopies::default();
        for raw in answers {
            let mut resp = DiscoveryResponse {
                version_info: raw.version_info.clone(),
                type_url: raw.type_url.clone(),
                nonce: raw.nonce.clone(),
                control_plane: raw.control_plane.clone(),
                ..Default::default()
            };
            for r in &raw.resources {
                let Ok(any) = Any::decode(r.clone()) else {
                    continue;
                };
                if let Ok(cc) = proto::envoy::envoy::service::status::v3::ClientConfig::decode(
                    any.value.as_slice(),
                ) {
                    copies.client_configs.push(cc);
                }
                resp.resources.push(any);
            }
            copies.responses.push(resp);
        }
        copies
    }
}

/// One answer to one client: its own version and nonce, the shared rest.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub version_info: String,
    pub nonce: String,
    pub shared: Arc<Shared>,
}

/// Field numbers of `DiscoveryResponse`.
const VERSION_INFO: u32 = 1;
const RESOURCES: u32 = 2;
const TYPE_URL: u32 = 4;
const NONCE: u32 = 5;
const CONTROL_PLANE: u32 = 6;

fn len_delimited_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        len_delimited_len(tag, s.len())
    }
}

fn put_len_delimited(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

fn put_string(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        put_len_delimited(tag, s.as_bytes(), buf);
    }
}

impl Answer {
    /// The length of the encoded `DiscoveryResponse` (without gRPC framing).
    pub fn encoded_len(&self) -> usize {
        let s = &self.shared;
        string_len(VERSION_INFO, &self.version_info)
            + s.pieces.iter().map(Piece::encoded_len).sum::<usize>()
            + string_len(TYPE_URL, &s.type_url)
            + string_len(NONCE, &self.nonce)
            + s.control_plane
                .as_ref()
                .map_or(0, |cp| len_delimited_len(CONTROL_PLANE, cp.encoded_len()))
    }

    /// The whole encoded `DiscoveryResponse` in one buffer (tests, small answers).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut enc = Encoding::new(self.clone(), false);
        let mut out = Vec::with_capacity(self.encoded_len());
        while let Some(chunk) = enc.next_chunk(usize::MAX) {
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// The answer decoded as the client would (tests).
    pub fn to_response(&self) -> Result<DiscoveryResponse, prost::DecodeError> {
        DiscoveryResponse::decode(self.encode_to_vec().as_slice())
    }

    /// The resources, each one encoded `Any`.
    #[cfg(test)]
    pub fn resources(&self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.shared.rows);
        for piece in &self.shared.pieces {
            match piece {
                Piece::Any(a) => out.push(a.clone()),
                Piece::Encoded(b) => {
                    let mut fields = Fields::new(b);
                    while let Ok(Some((_, Field::Bytes(any)))) = fields.next_field() {
                        out.push(b.slice_ref(any));
                    }
                }
            }
        }
        out
    }
}

/// Where an [`Encoding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Head,
    /// In piece `index`, `offset` bytes of it written.
    Pieces {
        index: usize,
        offset: usize,
    },
    Tail,
    Done,
}

/// Runs of encoded resources at least this long are handed out as slices of
/// the replica's buffer; shorter ones (and single resources) are copied
/// together into a chunk, so that the client does not get a flood of tiny
/// HTTP/2 frames.
const SLICE_AT_LEAST: usize = 16 * 1024;

/// Writes one [`Answer`] (optionally with its gRPC message prefix) as chunks
/// of about a given size: long runs of resources as slices of the replicas'
/// buffers, the rest copied into the chunk being filled (only that chunk is
/// a copy; the rest stays in the replicas' buffers until it is written).
pub struct Encoding {
    answer: Answer,
    framed: bool,
    stage: Stage,
}

impl Encoding {
    pub fn new(answer: Answer, framed: bool) -> Self {
        Encoding {
            answer,
            framed,
            stage: Stage::Head,
        }
    }

    /// The next chunk, of at most `max` bytes, or of one resource when a
    /// single one is larger (a copied resource is never split; a slice of a
    /// replica's buffer may end anywhere).
    pub fn next_chunk(&mut self, max: usize) -> Option<Bytes> {
        if self.stage == Stage::Done {
            return None;
        }
        let max = max.max(1);
        let shared = self.answer.shared.clone();
        // What a copied chunk may hold (the buffer is sized once: growing copies).
        let limit = max.min(1 << 20);
        let mut buf = BytesMut::new();
        let fits = |buf: &BytesMut, need: usize| buf.is_empty() || buf.len() + need <= limit;
        // Room for `need` more: the first time, a whole chunk's.
        let room = |buf: &mut BytesMut, need: usize| {
            if buf.capacity() == 0 {
                buf.reserve(limit.max(need));
            } else {
                buf.reserve(need);
            }
        };
        loop {
            match self.stage {
                Stage::Head => {
                    room(
                        &mut buf,
                        5 + string_len(VERSION_INFO, &self.answer.version_info),
                    );
                    if self.framed {
                        let len = self.answer.encoded_len();
                        buf.put_u8(0);
                        // The caller checked the size against gRPC's 4 GiB frame limit.
                        buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
                    }
                    put_string(VERSION_INFO, &self.answer.version_info, &mut buf);
                    self.stage = Stage::Pieces {
                        index: 0,
                        offset: 0,
                    };
                }
                Stage::Pieces { index, offset } => match shared.pieces.get(index) {
                    None => self.stage = Stage::Tail,
                    Some(Piece::Encoded(run)) => {
                        let rest = run.len().saturating_sub(offset);
                        if rest >= SLICE_AT_LEAST {
                            if !buf.is_empty() {
                                break;
                            }
                            let n = rest.min(max);
                            self.stage = if n == rest {
                                Stage::Pieces {
                                    index: index + 1,
                                    offset: 0,
                                }
                            } else {
                                Stage::Pieces {
                                    index,
                                    offset: offset + n,
                                }
                            };
                            return Some(run.slice(offset..offset + n));
                        }
                        if !fits(&buf, rest) {
                            break;
                        }
                        room(&mut buf, rest);
                        buf.put_slice(&run[offset..]);
                        self.stage = Stage::Pieces {
                            index: index + 1,
                            offset: 0,
                        };
                    }
                    Some(Piece::Any(r)) => {
                        let need = len_delimited_len(RESOURCES, r.len());
                        if !fits(&buf, need) {
                            break;
                        }
                        room(&mut buf, need);
                        put_len_delimited(RESOURCES, r, &mut buf);
                        self.stage = Stage::Pieces {
                            index: index + 1,
                            offset: 0,
                        };
                    }
                },
                Stage::Tail => {
                    let cp_len = shared
                        .control_plane
                        .as_ref()
                        .map_or(0, |cp| len_delimited_len(CONTROL_PLANE, cp.encoded_len()));
                    let need = string_len(TYPE_URL, &shared.type_url)
                        + string_len(NONCE, &self.answer.nonce)
                        + cp_len;
                    if !fits(&buf, need) {
                        break;
                    }
                    room(&mut buf, need);
                    put_string(TYPE_URL, &shared.type_url, &mut buf);
                    put_string(NONCE, &self.answer.nonce, &mut buf);
                    if let Some(cp) = &shared.control_plane {
                        encode_key(CONTROL_PLANE, WireType::LengthDelimited, &mut buf);
                        encode_varint(cp.encoded_len() as u64, &mut buf);
                        // Encoding into a buffer with room cannot fail.
                        let _ = cp.encode(&mut buf);
                    }
                    self.stage = Stage::Done;
                }
                Stage::Done => break,
            }
            if buf.len() >= max {
                break;
            }
        }
        Some(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envoy::envoy::config::core::v3::Node;
    use proto::envoy::envoy::service::status::v3::ClientConfig;
    use proto::envoy::envoy::service::status::v3::client_config::GenericXdsConfig;
    use proto::envoy::google::protobuf::Timestamp;

    fn cc(id: &str, stamps: &[Option<(i64, i32)>]) -> ClientConfig {
        ClientConfig {
            node: Some(Node {
                id: id.into(),
                cluster: "c".into(),
                ..Default::default()
            }),
            generic_xds_configs: stamps
                .iter()
                .map(|s| GenericXdsConfig {
                    type_url: "t".into(),
                    last_updated: s.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn key_scan_matches_a_full_decode() {
        let cases = [
            cc("a.ns", &[]),
            cc("b.ns", &[None]),
            cc("c.ns", &[Some((5, 1)), Some((7, 0)), None, Some((7, -1))]),
            cc("", &[Some((-3, 9))]),
        ];
        for c in cases {
            let bytes = c.encode_to_vec();
            let (id, stamp) = client_config_key(&bytes).unwrap();
            assert_eq!(id, c.node.as_ref().unwrap().id);
            assert_eq!(stamp, crate::merge::last_updated(&c));
        }
    }

    #[test]
    fn malformed_bytes_fail_like_prost() {
        for bad in [
            &[0x0a, 0xff][..],
            &[0x0a, 0x02, 0x0a],
            &[0x1a, 0x02, 0x2a, 0x05],
        ] {
            assert!(client_config_key(bad).is_err(), "{bad:?}");
            assert!(ClientConfig::decode(bad).is_err(), "{bad:?}");
        }
        // Node.id that is not UTF-8.
        let bad = [0x0a, 0x03, 0x0a, 0x01, 0xff];
        assert!(client_config_key(&bad).is_err());
        assert!(ClientConfig::decode(&bad[..]).is_err());
        assert!(scan_any(&[0x0a, 0x01, 0xff]).is_err());
    }

    #[test]
    fn any_scan_and_answer_encoding_round_trip() {
        let any = Any {
            type_url: "type.googleapis.com/x".into(),
            value: cc("a.ns", &[Some((1, 2))]).encode_to_vec(),
        };
        let raw = encode_any(&any);
        let (t, v) = scan_any(&raw).unwrap();
        assert_eq!((t, v), (any.type_url.as_str(), any.value.as_slice()));
        let answer = Answer {
            version_info: "7".into(),
            nonce: "n".into(),
            shared: Arc::new(Shared {
                pieces: vec![Piece::Any(raw.clone()), Piece::Any(raw)],
                rows: 2,
                type_url: "tu".into(),
                control_plane: Some(ControlPlane {
                    identifier: "{}".into(),
                }),
                ..Default::default()
            }),
        };
        let expected = DiscoveryResponse {
            version_info: "7".into(),
            resources: vec![any.clone(), any],
            type_url: "tu".into(),
            nonce: "n".into(),
            control_plane: Some(ControlPlane {
                identifier: "{}".into(),
            }),
            ..Default::default()
        };
        assert_eq!(answer.encode_to_vec(), expected.encode_to_vec());
        assert_eq!(answer.encoded_len(), expected.encoded_len());
        // Chunked and framed: the same bytes behind a gRPC prefix.
        let mut enc = Encoding::new(answer.clone(), true);
        let mut framed = Vec::new();
        let mut chunks = 0;
        while let Some(c) = enc.next_chunk(16) {
            framed.extend_from_slice(&c);
            chunks += 1;
        }
        assert!(chunks > 2);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            expected.encoded_len()
        );
        assert_eq!(&framed[5..], expected.encode_to_vec().as_slice());
    }

    #[test]
    fn raw_response_slices_resources_without_copying() {
        let resp = DiscoveryResponse {
            version_info: "v".into(),
            resources: vec![Any {
                type_url: "t".into(),
                value: vec![1; 100],
            }],
            type_url: "tu".into(),
            nonce: "n".into(),
            ..Default::default()
        };
        let buf = Bytes::from(resp.encode_to_vec());
        let raw = RawResponse::decode(buf.clone()).unwrap();
        let r = &raw.resources[0];
        let inside = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        assert!(
            inside.contains(&(r.as_ptr() as usize)),
            "a slice of the received buffer"
        );
        assert_eq!(raw.type_url, "tu");
        assert_eq!(
            prost::bytes::Bytes::from(resp.resources[0].encode_to_vec()),
            *r
        );
    }

    #[test]
    fn kept_runs_are_slices_of_the_replica_buffer() {
        let anys: Vec<Any> = (0..6)
            .map(|i| Any {
                type_url: "t".into(),
                value: vec![i; 40 + usize::from(i) * 50],
            })
            .collect();
        let resp = DiscoveryResponse {
            version_info: "v".into(),
            resources: anys.clone(),
            type_url: "tu".into(),
            ..Default::default()
        };
        let received = Received::decode(Bytes::from(resp.encode_to_vec())).unwrap();
        let buffer = received.buffer.clone().unwrap();
        let inside = |b: &Bytes| {
            let (start, end) = (
                buffer.as_ptr() as usize,
                buffer.as_ptr() as usize + buffer.len(),
            );
            (start..=end).contains(&(b.as_ptr() as usize)) && b.as_ptr() as usize + b.len() <= end
        };
        // Rows 0-1 and 3-5 kept: two runs, both slices of the buffer.
        let mut pieces = Vec::new();
        let rows = pieces_of(&received, [0, 1, 3, 4, 5], &mut pieces);
        assert_eq!(rows, 5);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        for p in &pieces {
            let Piece::Encoded(run) = p else {
                panic!("a slice: {p:?}")
            };
            assert!(inside(run));
        }
        let answer = Answer {
            version_info: "7".into(),
            nonce: "n".into(),
            shared: Arc::new(Shared {
                pieces,
                rows,
                type_url: "tu".into(),
                ..Default::default()
            }),
        };
        let kept: Vec<Any> = [0, 1, 3, 4, 5].iter().map(|&i| anys[i].clone()).collect();
        assert_eq!(answer.to_response().unwrap().resources, kept);
        assert_eq!(answer.resources().len(), 5);
        // Chunks of 100 bytes, framed: the same message.
        let mut enc = Encoding::new(answer.clone(), true);
        let mut framed = Vec::new();
        while let Some(c) = enc.next_chunk(100) {
            framed.extend_from_slice(&c);
        }
        assert_eq!(&framed[5..], answer.encode_to_vec().as_slice());
        assert_eq!(framed.len() - 5, answer.encoded_len());

        // A length written with a longer varint than needed is read by
        // prost, and the resource is written with a fresh key and length.
        // Here: resource 0 so written, resource 1 as usual, resource 2 so
        // written right after it.
        let any = [0x0a, 0x01, b't'];
        let mut odd = vec![0x12, 0x83, 0x00];
        odd.extend_from_slice(&any);
        odd.extend_from_slice(&[0x12, 0x03]);
        odd.extend_from_slice(&any);
        odd.extend_from_slice(&[0x12, 0x83, 0x00]);
        odd.extend_from_slice(&any);
        let received = Received::decode(Bytes::from(odd)).unwrap();
        let mut pieces = Vec::new();
        assert_eq!(pieces_of(&received, [0, 1, 2], &mut pieces), 3);
        assert!(
            matches!(
                &pieces[..],
                [Piece::Any(_), Piece::Encoded(_), Piece::Any(_)]
            ),
            "{pieces:?}"
        );
        let answer = Answer {
            shared: Arc::new(Shared {
                pieces,
                rows: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            answer.to_response().unwrap().resources,
            vec![
                Any {
                    type_url: "t".into(),
                    value: vec![]
                };
                3
            ]
        );
        // Without the message's buffer (tests), every resource is a Piece::Any.
        let bare = Received::from(received.response.clone());
        let mut pieces = Vec::new();
        pieces_of(&bare, [0], &mut pieces);
        assert!(matches!(&pieces[..], [Piece::Any(_)]));
    }
}
