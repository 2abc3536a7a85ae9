//! Hub fan-out: the time from `Stream::publish` of one event until N subscribers (1, 100, 10 000) have each taken
//! it and its SSE frame, through the public hub API. Two variants side by side in each group: `shared_frame` takes
//! the once-encoded `Event::sse_frame()` (what the transports do), `encode_per_subscriber` calls
//! `sse::encode_event` for every subscriber (what sharing the frame saves).
//!
//! - `fanout_try_next`: subscribers polled in a loop on one thread (`Subscription::try_next`): the pure CPU cost.
//! - `fanout_wake`: one tokio task per subscriber awaiting `Subscription::next` on a 2-worker runtime: adds the
//!   wake-ups and scheduling a real server pays.
//!
//! - `fanout_coalesced`: K events published, then each of 1 000 subscribers takes everything it can with
//!   `try_next` and writes it as one buffer (one `write(2)` to /dev/null), as the SSE feed does when it wakes up
//!   behind: the cost per delivery as K (how far behind a subscriber is when it wakes) grows.
//!
//! `cargo bench --bench fanout`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pushbridge::event::Event;
use pushbridge::hub::{
    Hub, Next, Published, Resume, Settings, StartUpstream, Stream, StreamKey, Subscription,
};
use pushbridge::metrics::Metrics;
use tokio::sync::Notify;

const SUBSCRIBERS: [usize; 3] = [1, 100, 10_000];

#[derive(Clone, Copy)]
enum Variant {
    SharedFrame,
    EncodePerSubscriber,
}

impl Variant {
    const ALL: [Variant; 2] = [Variant::SharedFrame, Variant::EncodePerSubscriber];

    fn name(self) -> &'static str {
        match self {
            Variant::SharedFrame => "shared_frame",
            Variant::EncodePerSubscriber => "encode_per_subscriber",
        }
    }

    /// What one subscriber writes for `event`.
    fn frame(self, event: &Event) -> Bytes {
        match self {
            Variant::SharedFrame => event.sse_frame(),
            Variant::EncodePerSubscriber => {
                pushbridge::sse::encode_event(Some(&event.id), event.event.as_deref(), &event.data)
            }
        }
    }
}

/// A hub, one stream on it and `n` live subscribers (the upstream is a no-op: the bench publishes itself).
fn setup(n: usize) -> (Arc<Hub>, Arc<Stream>, Vec<Subscription>) {
    let metrics = Arc::new(Metrics::new(&[]).unwrap());
    let hub = Hub::new(metrics);
    let settings = Settings {
        buffer_events: 1000,
        buffer_age: Duration::from_secs(300),
        client_queue: 256,
        idle_timeout: Duration::from_secs(30),
        buffer_max_bytes: usize::MAX,
        max_streams: usize::MAX,
    };
    let start: StartUpstream = Arc::new(|_, _, _| {});
    let key = StreamKey {
        route: Arc::from("bench"),
        params: vec![("channel".to_owned(), "bench".to_owned())],
        session: None,
    };
    let subs: Vec<Subscription> = (0..n)
        .map(|_| {
            hub.subscribe(
                key.clone(),
                &settings,
                &start,
                Resume::Live,
                None,
                http::HeaderMap::new(),
            )
        })
        .collect();
    let stream = subs[0].stream().clone();
    (hub, stream, subs)
}

/// About 200 bytes of event data, as in the `sse_codec` bench.
fn published(seq: u64) -> Published {
    let mut data = format!(r#"{{"seq":{seq},"symbol":"ACME","price":101.25,"note":""#);
    data.extend(std::iter::repeat_n('x', 200 - data.len() - 2));
    data.push_str(r#""}"#);
    Published {
        id: Some(seq.to_string()),
        event: Some("tick".to_owned()),
        data,
    }
}

fn try_next(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_try_next");
    group.measurement_time(Duration::from_secs(4));
    for n in SUBSCRIBERS {
        group.throughput(Throughput::Elements(n as u64));
        for variant in Variant::ALL {
            let (_hub, stream, mut subs) = setup(n);
            let mut seq = 0;
            group.bench_function(BenchmarkId::new(variant.name(), n), |b| {
                b.iter(|| {
                    seq += 1;
                    stream.publish(published(seq));
                    for sub in &mut subs {
                        match sub.try_next(64) {
                            Some(Next::Events(events)) => {
                                for event in &events {
                                    black_box(variant.frame(event));
                                }
                            }
                            other => panic!("expected one event, got {other:?}"),
                        }
                    }
                });
            });
        }
    }
    group.finish();
}

fn wake(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fanout_wake");
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(30);
    for n in SUBSCRIBERS {
        group.throughput(Throughput::Elements(n as u64));
        for variant in Variant::ALL {
            let _guard = runtime.enter();
            let (_hub, stream, subs) = setup(n);
            let remaining = Arc::new(AtomicUsize::new(0));
            let all_done = Arc::new(Notify::new());
            let tasks: Vec<_> = subs
                .into_iter()
                .map(|mut sub| {
                    let remaining = remaining.clone();
                    let all_done = all_done.clone();
                    runtime.spawn(async move {
                        while let Next::Events(events) = sub.next(64).await {
                            for event in &events {
                                black_box(variant.frame(event));
                            }
                            if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                                all_done.notify_one();
                            }
                        }
                    })
                })
                .collect();
            let mut seq = 0;
            group.bench_function(BenchmarkId::new(variant.name(), n), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        seq += 1;
                        remaining.store(n, Ordering::Release);
                        stream.publish(published(seq));
                        runtime.block_on(all_done.notified());
                    }
                    started.elapsed()
                });
            });
            stream.close();
            for task in tasks {
                runtime.block_on(task).unwrap();
            }
        }
    }
    group.finish();
}

fn coalesced(c: &mut Criterion) {
    use std::io::Write;
    let mut group = c.benchmark_group("fanout_coalesced");
    group.measurement_time(Duration::from_secs(4));
    let n = 1000;
    let mut sink = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    for k in [1u64, 8, 64] {
        group.throughput(Throughput::Elements(n as u64 * k));
        let (_hub, stream, mut subs) = setup(n);
        let mut seq = 0;
        group.bench_function(BenchmarkId::new("events_per_wake", k), |b| {
            b.iter(|| {
                for _ in 0..k {
                    seq += 1;
                    stream.publish(published(seq));
                }
                for sub in &mut subs {
                    let mut out = Vec::new();
                    while let Some(Next::Events(events)) = sub.try_next(64) {
                        out.reserve(events.iter().map(|e| e.sse_bytes().len()).sum());
                        for event in &events {
                            out.extend_from_slice(event.sse_bytes());
                        }
                    }
                    sink.write_all(black_box(&out)).unwrap();
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, try_next, wake, coalesced);
criterion_main!(benches);
