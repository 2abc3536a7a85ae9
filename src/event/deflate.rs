//! Raw deflate of one WebSocket message payload for permessage-deflate with `server_no_context_takeover`
//! (RFC 7692 §7.2.1): compressed from an empty window, sync-flushed, the trailing `00 00 ff ff` removed. The
//! same bytes are valid for every subscriber, so each event is compressed once.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// Payloads shorter than this are sent uncompressed: below it deflate saves a few bytes at best (measured on JSON
/// envelopes of mixed text and numbers: 40 → 38 bytes, 60 → 53, 100 → 83, 128 → 100, 256 → 183), not worth an
/// inflate call on the client nor the cached copy.
pub const MIN_DEFLATE_BYTES: usize = 128;
/// Compression level (zlib's default trade-off; the cost is paid once per event, not per subscriber).
pub const LEVEL: u32 = 6;

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// One compressor per thread, reset between messages (its tables are large; allocating them per event costs
    /// more than compressing a small event).
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
}

/// The compressed payload, or `None` when it would not be worth sending compressed (too short, or no smaller).
pub fn deflate(payload: &[u8]) -> Option<Bytes> {
    if payload.len() < MIN_DEFLATE_BYTES {
        return None;
    }
    COMPRESSOR.with(|compressor| {
        let mut compressor = compressor.try_borrow_mut().ok()?;
        compressor.reset();
        let out = run(&mut compressor, payload);
        compressor.reset();
        let mut out = out?;
        if !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        (out.len() < payload.len()).then(|| Bytes::from(out))
    })
}

fn run(compressor: &mut Compress, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let start = compressor.total_in();
    loop {
        let consumed = usize::try_from(compressor.total_in() - start).ok()?;
        let status = compressor
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .ok()?;
        let done = compressor.total_in() - start == payload.len() as u64;
        // Room left after the call: the flush is complete.
        if done && out.len() < out.capacity() {
            return Some(out);
        }
        match status {
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(64)),
            Status::StreamEnd => return Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(compressed: &[u8]) -> Vec<u8> {
        let mut input = compressed.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        Decompress::new(false)
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn round_trip_and_threshold() {
        let json = format!(
            r#"{{"id":"1","event":"message","data":"{}"}}"#,
            r#"{\"price\":101.5,\"symbol\":\"ACME\"}"#.repeat(30)
        );
        let compressed = deflate(json.as_bytes()).unwrap();
        assert!(compressed.len() * 3 < json.len(), "{}", compressed.len());
        assert_eq!(inflate(&compressed), json.as_bytes());
        // Reset between messages: the same input gives the same bytes.
        assert_eq!(deflate(json.as_bytes()).unwrap(), compressed);
        assert_eq!(deflate(&json.as_bytes()[..MIN_DEFLATE_BYTES - 1]), None);
        // Incompressible input is sent as it is.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert_eq!(deflate(&noise), None);
        // A large payload grows the output buffer.
        let big = json.repeat(200);
        assert_eq!(inflate(&deflate(big.as_bytes()).unwrap()), big.as_bytes());
    }
}
