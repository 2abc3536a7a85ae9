//! Fuzz target: the SSE decoder (`pushbridge::sse::Decoder`) on arbitrary bytes.
//!
//! The first three input bytes choose a split point and the `max_event_bytes` bound (small, to reach the
//! oversize paths, or large); the rest is the stream. Checks: no panic; fed in two chunks or one byte at a time
//! it gives the same items and last event id as fed whole; no event's data passes the bound; every decoded event
//! re-encoded with `encode_event` decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushbridge::sse::{Decoder, Item, encode_event};

fn decode<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Item>, String) {
    let mut decoder = Decoder::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut out);
    }
    (out, decoder.last_event_id().to_owned())
}

fuzz_target!(|input: &[u8]| {
    let Some((&[lo, hi, bound], stream)) = input.split_first_chunk::<3>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([lo, hi])) % (stream.len() + 1);
    let max = if bound & 0x80 == 0 {
        usize::from(bound)
    } else {
        1 << 20
    };

    let whole = decode(max, [stream]);
    let (head, tail) = stream.split_at(split);
    assert_eq!(decode(max, [head, tail]), whole, "split at {split}");
    assert_eq!(decode(max, stream.chunks(1)), whole, "one byte at a time");

    for item in &whole.0 {
        if let Item::Event(event) = item {
            assert!(event.data.len() <= max, "data over the bound");
            let bytes = encode_event(event.id.as_deref(), event.event.as_deref(), &event.data);
            let (again, _) = decode(usize::MAX, [&bytes[..]]);
            assert_eq!(again, vec![item.clone()], "re-encoded event differs");
        }
    }
});
