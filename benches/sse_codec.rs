//! SSE codec throughput (WHATWG HTML §9.2.6 decoder, §9.2.5 encoder): `sse::Decoder::feed` over a realistic
//! upstream stream (10 000 events of about 200 bytes, fed in 4 KiB chunks, and in 64-byte chunks to show the cost
//! of lines split across reads) and `sse::encode_event` for one such event. Reported in bytes/s.
//!
//! `cargo bench --bench sse_codec`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pushbridge::sse::{Decoder, Item, encode_event};

const EVENTS: usize = 10_000;
const DATA_BYTES: usize = 160;

/// One event's data: a JSON-ish payload of about `DATA_BYTES` bytes, as an application would send.
fn payload(i: usize) -> String {
    let mut data = format!(
        r#"{{"seq":{i},"symbol":"ACME","price":{}.{:02},"note":""#,
        100 + i % 50,
        i % 100
    );
    while data.len() < DATA_BYTES - 2 {
        data.push('x');
    }
    data.push_str(r#""}"#);
    data
}

/// The whole stream: `id:`, `event:` and `data:` lines per event, about 200 bytes each.
fn stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..EVENTS {
        out.extend_from_slice(&encode_event(
            Some(&i.to_string()),
            Some("tick"),
            &payload(i),
        ));
    }
    out
}

fn decode(c: &mut Criterion) {
    let input = stream();
    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(input.len() as u64));
    for chunk in [4096, 64] {
        group.bench_function(format!("{EVENTS}_events_{chunk}B_chunks"), |b| {
            let mut out = Vec::with_capacity(EVENTS);
            b.iter(|| {
                let mut decoder = Decoder::new(1 << 20);
                out.clear();
                for piece in input.chunks(chunk) {
                    decoder.feed(black_box(piece), &mut out);
                }
                assert_eq!(out.len(), EVENTS);
                black_box(matches!(out.last(), Some(Item::Event(_))))
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let data = payload(12_345);
    let frame = encode_event(Some("12345"), Some("tick"), &data);
    let mut group = c.benchmark_group("sse_encode");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("one_200B_event", |b| {
        b.iter(|| {
            encode_event(
                black_box(Some("12345")),
                black_box(Some("tick")),
                black_box(&data),
            )
        });
    });
    let multiline = data.replace(',', "\n");
    group.bench_function("one_200B_event_multiline", |b| {
        b.iter(|| {
            encode_event(
                black_box(Some("12345")),
                black_box(Some("tick")),
                black_box(&multiline),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
