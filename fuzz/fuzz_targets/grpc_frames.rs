//! The bounded gRPC message reader: any bytes in any chunking never panic,
//! never hold more than twice what arrived (plus a fixed slack), and the
//! messages read are exactly the length-prefixed ones in the bytes.
#![no_main]

use istioctl_proxy::grpc_frames::Messages;
use libfuzzer_sys::fuzz_target;
use prost::bytes::Bytes;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut reader = Messages::new(1 << 16);
    let mut got = Vec::new();
    let mut arrived = 0usize;
    let mut failed = false;
    for chunk in body.chunks(step) {
        arrived += chunk.len();
        if reader.push(Bytes::copy_from_slice(chunk)).is_err() {
            failed = true;
            break;
        }
        assert!(
            reader.capacity() <= 2 * arrived + 64 * 1024,
            "{} bytes held for {arrived} arrived",
            reader.capacity()
        );
        loop {
            match reader.next_message() {
                Ok(Some(m)) => got.push(m),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    // The oracle: parse the same bytes whole, by the protocol's definition.
    let mut rest = body;
    let mut want = Vec::new();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest[0] != 0 || len > 1 << 16 {
            assert!(failed, "a prefix the reader must refuse was accepted");
            return;
        }
        if rest.len() < 5 + len {
            break;
        }
        want.push(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    if !failed {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(&g[..], w);
        }
    }
});
