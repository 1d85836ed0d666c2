//! gRPC messages out of a replica's response body, bounded: a message whose
//! announced length is above the limit is refused at its 5-byte prefix, and
//! the buffer grows only with the bytes that arrived (tonic's decoder
//! reserves the announced length at the prefix, `tonic/src/codec/decode.rs`
//! `decode_chunk`: `00 ff ff ff ff` and silence made it allocate 4 GiB).
//!
//! Framing: <https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md>
//! (`Length-Prefixed-Message`: a compressed flag byte, a 4-byte big-endian length).

use prost::bytes::{Buf, Bytes, BytesMut};

/// Why a message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(
        "answer of {announced} bytes is larger than --max-replica-answer-bytes ({limit} bytes)"
    )]
    TooLarge { announced: u64, limit: usize },
    #[error("compressed answer (flag {0}), and no compression was offered")]
    Compressed(u8),
}

/// Reads length-prefixed gRPC messages from body chunks as they arrive.
#[derive(Debug)]
pub struct Messages {
    limit: usize,
    buf: BytesMut,
    /// The length of the message being read, once its prefix is in.
    want: Option<usize>,
}

impl Messages {
    pub fn new(limit: usize) -> Self {
        Messages {
            limit,
            buf: BytesMut::new(),
            want: None,
        }
    }

    /// Appends a chunk of the body (the buffer grows with what arrived,
    /// never to the announced length before the bytes are there).
    pub fn push(&mut self, mut chunk: Bytes) -> Result<(), FrameError> {
        // A whole message in one chunk with nothing buffered: kept as it is.
        if self.buf.is_empty() && self.want.is_none() && chunk.len() >= 5 {
            let len = self.prefix(&chunk[..5])?;
            if chunk.len() == 5 + len {
                chunk.advance(5);
                self.buf = BytesMut::from(chunk);
                self.want = Some(len);
                return Ok(());
            }
        }
        // Room doubles with what arrived, up to the announced length: at
        // most twice what is here, never what was only announced.
        if self.buf.capacity() - self.buf.len() < chunk.len() {
            let remaining = self.want.map_or(5, |w| w.saturating_sub(self.buf.len()));
            let grow = remaining.min(self.buf.len().max(64 * 1024));
            self.buf.reserve(grow.max(chunk.len()));
        }
        self.buf.extend_from_slice(&chunk);
        if self.want.is_none() && self.buf.len() >= 5 {
            let len = self.prefix(&self.buf[..5])?;
            self.buf.advance(5);
            self.want = Some(len);
        }
        Ok(())
    }

    fn prefix(&self, p: &[u8]) -> Result<usize, FrameError> {
        if p[0] != 0 {
            return Err(FrameError::Compressed(p[0]));
        }
        let announced = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        match usize::try_from(announced) {
            Ok(len) if len <= self.limit => Ok(len),
            _ => Err(FrameError::TooLarge {
                announced: u64::from(announced),
                limit: self.limit,
            }),
        }
    }

    /// The next whole message, if it has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.want else {
            return Ok(None);
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        let message = self.buf.split_to(len).freeze();
        self.want = None;
        if self.buf.len() >= 5 {
            let next = self.prefix(&self.buf[..5])?;
            self.buf.advance(5);
            self.want = Some(next);
        }
        Ok(Some(message))
    }

    /// Bytes held (tests: nothing reserved beyond what arrived).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(m: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(m.len() as u32).to_be_bytes());
        v.extend_from_slice(m);
        v
    }

    #[test]
    fn a_huge_announced_length_reserves_nothing() {
        let mut m = Messages::new(usize::MAX);
        m.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]))
            .unwrap();
        m.push(Bytes::from_static(b"abc")).unwrap();
        assert!(m.capacity() < 4096, "{}", m.capacity());
        assert_eq!(m.next_message(), Ok(None));
    }

    #[test]
    fn the_limit_is_named() {
        let mut m = Messages::new(1024);
        let e = m
            .push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("--max-replica-answer-bytes (1024 bytes)"),
            "{e}"
        );
        assert!(matches!(
            Messages::new(10).push(Bytes::from_static(&[1, 0, 0, 0, 1])),
            Err(FrameError::Compressed(1))
        ));
    }

    #[test]
    fn messages_split_anywhere_come_out_whole() {
        let mut wire = framed(b"hello");
        wire.extend(framed(b""));
        wire.extend(framed(&[7; 300]));
        for step in [1, 2, 3, 5, 7, 64, 1000] {
            let mut m = Messages::new(1000);
            let mut got = Vec::new();
            for c in wire.chunks(step) {
                m.push(Bytes::copy_from_slice(c)).unwrap();
                while let Some(msg) = m.next_message().unwrap() {
                    got.push(msg.to_vec());
                }
            }
            assert_eq!(got, vec![b"hello".to_vec(), vec![], vec![7; 300]], "{step}");
        }
        // One message in one chunk: no copy.
        let whole = Bytes::from(framed(b"xyz"));
        let mut m = Messages::new(10);
        m.push(whole.clone()).unwrap();
        let msg = m.next_message().unwrap().unwrap();
        assert_eq!(&msg[..], b"xyz");
    }
}
