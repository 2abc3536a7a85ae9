use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

fn settings(buffer_events: usize, client_queue: usize) -> Settings {
    Settings {
        buffer_events,
        buffer_age: Duration::from_secs(300),
        client_queue,
        idle_timeout: Duration::from_secs(30),
        buffer_max_bytes: usize::MAX,
        max_streams: usize::MAX,
    }
}

fn key(channel: &str) -> StreamKey {
    StreamKey {
        route: "r".into(),
        params: vec![("channel".into(), channel.into())],
        session: None,
    }
}

/// A starter that counts upstream starts and records each stream's stop token.
fn starter(starts: Arc<AtomicUsize>, stops: Arc<Mutex<Vec<CancellationToken>>>) -> StartUpstream {
    Arc::new(move |_stream, stop, _headers| {
        starts.fetch_add(1, Ordering::SeqCst);
        stops.lock().unwrap().push(stop);
    })
}

fn publish(stream: &Arc<Stream>, data: &str) {
    assert!(stream.publish(Published {
        id: None,
        event: None,
        data: data.into()
    }));
}

fn data(next: Next) -> Vec<String> {
    match next {
        Next::Events(events) => events.iter().map(|e| e.data.to_string()).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

fn hub() -> Arc<Hub> {
    Hub::new(Arc::new(Metrics::new(&["r".into()]).unwrap()))
}

#[tokio::test]
async fn one_stream_per_key_and_fan_out_in_order() {
    let hub = hub();
    let starts = Arc::new(AtomicUsize::new(0));
    let start = starter(starts.clone(), Arc::default());
    let s = settings(100, 10);
    let mut a = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    let mut b = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    let mut c = hub.subscribe(key("y"), &s, &start, Resume::Live, None, Default::default());
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    assert_eq!(hub.len(), 2);
    publish(a.stream(), "1");
    publish(a.stream(), "2");
    assert_eq!(data(a.next(10).await), ["1", "2"]);
    assert_eq!(data(b.next(1).await), ["1"]);
    assert_eq!(data(b.next(1).await), ["2"]);
    assert!(c.try_next(10).is_none(), "other keys see nothing");
    // Frames are encoded once and shared.
    let events = |n: Next| match n {
        Next::Events(e) => e,
        other => panic!("{other:?}"),
    };
    publish(a.stream(), "3");
    let ea = events(a.next(10).await);
    let eb = events(b.next(10).await);
    assert!(Arc::ptr_eq(&ea[0], &eb[0]));
    assert_eq!(ea[0].sse_frame().as_ptr(), eb[0].sse_frame().as_ptr());
}

#[tokio::test]
async fn resume_and_gap() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(3, 10);
    let mut keeper = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    for i in 0..5 {
        publish(keeper.stream(), &i.to_string());
    }
    let Next::Lagged = keeper.next(10).await else {
        panic!("the keeper fell behind the 3-event ring")
    };
    let mut from_start = hub.subscribe(
        key("x"),
        &s,
        &start,
        Resume::After("?"),
        None,
        Default::default(),
    );
    assert!(matches!(from_start.next(10).await, Next::Gap { .. }));
    let Next::Events(held) = from_start.next(10).await else {
        panic!("events")
    };
    let ids: Vec<String> = held.iter().map(|e| e.id.to_string()).collect();
    let mut hit = hub.subscribe(
        key("x"),
        &s,
        &start,
        Resume::After(&ids[0]),
        None,
        Default::default(),
    );
    assert_eq!(data(hit.next(10).await), ["3", "4"]);
    let mut gap = hub.subscribe(
        key("x"),
        &s,
        &start,
        Resume::After("nope"),
        None,
        Default::default(),
    );
    assert!(matches!(gap.next(10).await, Next::Gap { last_event_id } if last_event_id == "nope"));
    assert_eq!(data(gap.next(10).await), ["2", "3", "4"]);
}

#[tokio::test]
async fn a_subscriber_behind_the_ring_is_lagged() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(4, 100);
    let mut slow = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    for i in 0..10 {
        publish(slow.stream(), &i.to_string());
    }
    assert!(matches!(slow.next(10).await, Next::Lagged));
}

#[tokio::test(start_paused = true)]
async fn sweeper_kicks_only_a_stalled_subscriber() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(1000, 5);
    let stalled_token = CancellationToken::new();
    let reading_token = CancellationToken::new();
    let kick = |token: &CancellationToken| {
        Some(Kick {
            token: token.clone(),
            transport: "sse",
        })
    };
    let _stalled = hub.subscribe(
        key("x"),
        &s,
        &start,
        Resume::Live,
        kick(&stalled_token),
        Default::default(),
    );
    let mut reading = hub.subscribe(
        key("x"),
        &s,
        &start,
        Resume::Live,
        kick(&reading_token),
        Default::default(),
    );
    for round in 0..4 {
        for i in 0..20 {
            publish(reading.stream(), &format!("{round}.{i}"));
        }
        // The reader is 20 behind too, but it makes progress between sweeps.
        assert_eq!(data(reading.next(20).await).len(), 20);
        tokio::time::sleep(SWEEP_PERIOD).await;
    }
    assert!(stalled_token.is_cancelled());
    assert!(!reading_token.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn idle_stream_closes_after_idle_timeout_and_a_new_subscriber_cancels_it() {
    let hub = hub();
    let stops = Arc::new(Mutex::new(Vec::new()));
    let start = starter(Arc::default(), stops.clone());
    let s = settings(10, 10);
    drop(hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default()));
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Back within the idle timeout: the same stream (no new upstream).
    let sub = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    assert_eq!(stops.lock().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(hub.len(), 1, "a stream with a subscriber stays");
    drop(sub);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(hub.len(), 0, "idle and nothing buffered: forgotten");
    assert!(
        stops.lock().unwrap()[0].is_cancelled(),
        "the upstream was stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_keeps_its_ring_until_it_ages_out_and_a_subscriber_wakes_its_upstream() {
    let hub = hub();
    let stops = Arc::new(Mutex::new(Vec::new()));
    let starts = Arc::new(AtomicUsize::new(0));
    let start = starter(starts.clone(), stops.clone());
    let s = settings(10, 10);
    let sub = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    let stream = sub.stream().clone();
    for id in ["1", "2"] {
        assert!(stream.publish(Published {
            id: Some(id.into()),
            data: id.into(),
            ..Default::default()
        }));
    }
    drop(sub);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(stops.lock().unwrap()[0].is_cancelled(), "upstream closed");
    assert_eq!(stream.upstream(), UpstreamState::Dormant);
    assert_eq!(hub.len(), 1, "the ring is kept");
    assert_eq!(stream.newest_id().as_deref(), Some("2"));

    // A resuming subscriber gets exactly what follows its id and wakes the upstream.
    let mut back = hub.subscribe(
        key("x"),
        &s,
        &start,
        Resume::After("1"),
        None,
        Default::default(),
    );
    assert!(Arc::ptr_eq(back.stream(), &stream));
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    assert!(!stops.lock().unwrap()[1].is_cancelled());
    assert_eq!(stream.upstream(), UpstreamState::Connecting);
    assert_eq!(data(back.next(10).await), ["2"]);
    drop(back);
}

#[tokio::test(start_paused = true)]
async fn a_dormant_stream_is_forgotten_once_its_events_aged_out() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let mut s = settings(10, 10);
    // Event ages are measured on the real clock.
    s.buffer_age = Duration::from_millis(200);
    let sub = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    publish(sub.stream(), "1");
    drop(sub);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(hub.len(), 1, "dormant, its event still buffered");
    std::thread::sleep(Duration::from_millis(250));
    tokio::time::sleep(SWEEP_PERIOD * 2).await;
    assert_eq!(hub.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_per_client_stream_ends_with_its_session() {
    let hub = hub();
    let stops = Arc::new(Mutex::new(Vec::new()));
    let start = starter(Arc::default(), stops.clone());
    let mut s = settings(10, 10);
    s.idle_timeout = Duration::ZERO;
    let session = StreamKey {
        session: Some(7),
        ..key("x")
    };
    let sub = hub.subscribe(session, &s, &start, Resume::Live, None, Default::default());
    publish(sub.stream(), "1");
    drop(sub);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(hub.len(), 0);
    assert!(stops.lock().unwrap()[0].is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn subscribe_unsubscribe_churn_spawns_no_task() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(10, 10);
    let keep = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    drop(hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default()));
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    drop(keep);
    for _ in 0..1000 {
        drop(hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default()));
        tokio::task::yield_now().await;
    }
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks,
        "one keeper per stream, whatever the churn"
    );
}

/// Issue 15 item 3: the request that opens a stream gets what its upstream publishes the moment it starts (here:
/// synchronously, the fastest an upstream can be).
#[tokio::test]
async fn the_request_that_opens_a_stream_gets_its_first_events() {
    let hub = hub();
    let start: StartUpstream = Arc::new(|stream: Arc<Stream>, _stop, _headers| {
        publish(&stream, "a");
        publish(&stream, "b");
    });
    let s = settings(100, 10);
    let admitted = hub.admit(key("x"), &s, &start, Default::default(), Resume::Live, None);
    let mut sub = admitted.expect("within the limits");
    assert_eq!(
        sub.try_next(10).map(data),
        Some(vec!["a".into(), "b".into()])
    );
}

/// Issue 16 item 5: at a stream limit, a new stream replaces the oldest dormant one (upstream closed, no
/// subscriber) instead of being refused; a stream with a subscriber or a running upstream is never evicted, and a
/// resume from an evicted stream's id gets a gap notice.
#[tokio::test(start_paused = true)]
async fn a_new_stream_evicts_the_oldest_dormant_one_at_the_limits() {
    let hub = hub();
    hub.set_max_streams(3);
    let start = starter(Arc::default(), Arc::default());
    let mut s = settings(10, 10);
    s.max_streams = 2;
    let admit = |name: &str, s: &Settings, resume: Resume<'_>| {
        hub.admit(key(name), s, &start, Default::default(), resume, None)
    };
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let sub = admit(name, &s, Resume::Live).expect("within the limits");
        publish(sub.stream(), name);
        let mut sub = sub;
        assert_eq!(sub.try_next(10).map(data), Some(vec![name.to_owned()]));
        ids.push(sub.position());
        drop(sub);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Both idle, upstreams still open: not dormant yet, so the route's limit refuses.
    assert_eq!(admit("c", &s, Resume::Live).err(), Some(StreamLimit::Route));
    tokio::time::sleep(s.idle_timeout + SWEEP_PERIOD).await;
    let c = admit("c", &s, Resume::Live).expect("the oldest dormant stream makes room");
    assert!(hub.get(&key("a")).is_none() && hub.get(&key("b")).is_some());
    let evicted = |limit: &str| {
        hub.metrics
            .stream_evictions
            .with_label_values(&[limit])
            .get()
    };
    assert_eq!(evicted("route"), 1);
    // "b" is dormant but "c" has a subscriber: only "b" can go; then nothing can.
    let mut resumed = admit("a", &s, Resume::After(&ids[0])).expect("b makes room");
    assert!(resumed.try_next(10).is_none(), "the gap notice first");
    assert!(matches!(resumed.next(10).await, Next::Gap { .. }));
    assert_eq!(evicted("route"), 2);
    assert_eq!(admit("d", &s, Resume::Live).err(), Some(StreamLimit::Route));
    // The process-wide limit evicts across routes the same way.
    let other = Settings {
        max_streams: usize::MAX,
        ..s.clone()
    };
    let other_key = |name: &str| StreamKey {
        route: "o".into(),
        ..key(name)
    };
    let o = hub.admit(
        other_key("x"),
        &other,
        &start,
        Default::default(),
        Resume::Live,
        None,
    );
    let o = o.expect("the third stream");
    // With an event held (a stream with nothing buffered is forgotten as soon as it is dormant).
    publish(o.stream(), "x");
    drop(o);
    assert_eq!(
        hub.admit(
            other_key("y"),
            &other,
            &start,
            Default::default(),
            Resume::Live,
            None
        )
        .err(),
        Some(StreamLimit::Global),
        "x is idle but its upstream still runs"
    );
    tokio::time::sleep(s.idle_timeout + SWEEP_PERIOD).await;
    let y = hub.admit(
        other_key("y"),
        &other,
        &start,
        Default::default(),
        Resume::Live,
        None,
    );
    assert!(y.is_ok() && hub.get(&other_key("x")).is_none());
    assert_eq!(evicted("global"), 1);
    drop((c, resumed));
}

#[tokio::test(start_paused = true)]
async fn a_streams_key_is_counted_in_the_buffer_budget_while_it_lives() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(10, 10);
    let long = "k".repeat(200);
    let sub = hub.subscribe(
        key(&long),
        &s,
        &start,
        Resume::Live,
        None,
        Default::default(),
    );
    let key_bytes = "r".len() + "channel".len() + 200;
    assert_eq!(hub.buffer_bytes(), key_bytes);
    drop(sub);
    tokio::time::sleep(Duration::from_secs(31)).await;
    tokio::time::sleep(SWEEP_PERIOD * 2).await;
    assert_eq!(hub.len(), 0, "nothing buffered: forgotten once idle");
    assert_eq!(hub.buffer_bytes(), 0, "its key's bytes released");
}

/// The status page's view: every stream counted, only the busiest described, most subscribers first, transports
/// told apart.
#[tokio::test]
async fn snapshot_counts_every_stream_and_describes_the_busiest() {
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(100, 10);
    let mut subs = Vec::new();
    for i in 0..60usize {
        for n in 0..i % 7 {
            let transport = ["ws", "sse", "long-poll"][n % 3];
            let kick = Kick {
                token: CancellationToken::new(),
                transport,
            };
            let key = key(&format!("k{i:02}"));
            subs.push(hub.subscribe(
                key,
                &s,
                &start,
                Resume::Live,
                Some(kick),
                Default::default(),
            ));
        }
    }
    // Keys k00, k07, k14, … get no subscriber, so no stream; k00 is opened and left (one event buffered).
    let idle = hub.subscribe(
        key("k00"),
        &s,
        &start,
        Resume::Live,
        None,
        Default::default(),
    );
    publish(&hub.get(&key("k00")).unwrap(), "e");
    drop(idle);
    let snapshot = hub.snapshot(5);
    assert_eq!(snapshot.len(), 1);
    let (route, view) = &snapshot[0];
    assert_eq!(&**route, "r");
    assert_eq!(view.streams, 52);
    assert_eq!(view.states[0], 52, "all connecting: {:?}", view.states);
    let totals: Vec<usize> = view
        .busiest
        .iter()
        .map(StreamView::subscriber_total)
        .collect();
    assert_eq!(totals, [6, 6, 6, 6, 6]);
    let keys: Vec<String> = view
        .busiest
        .iter()
        .map(|v| v.key.params[0].1.clone())
        .collect();
    assert_eq!(keys, ["k06", "k13", "k20", "k27", "k34"]);
    assert_eq!(view.busiest[0].subscribers, [2, 2, 2]);
    let all = hub.snapshot(100);
    let k00 = all[0]
        .1
        .busiest
        .iter()
        .find(|v| v.key == key("k00"))
        .unwrap();
    assert_eq!((k00.subscriber_total(), k00.buffered), (0, 1));
    assert!(k00.oldest_age.is_some() && k00.last_event.is_some());
}

/// Issue 17 item 1: an event wakes the waiting subscribers at once; events that arrive during that pass wait until
/// its last subscriber took its events, then go out together; a waiter that stops waiting holds no pass.
#[tokio::test]
async fn events_during_a_pass_go_out_together_when_it_ends() {
    use futures_util::FutureExt;
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(100, 10);
    let mut subs: Vec<_> = (0..3)
        .map(|_| hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default()))
        .collect();
    let stream = subs[0].stream().clone();
    let [a, b, c] = &mut subs[..] else {
        unreachable!()
    };
    let mut fa = std::pin::pin!(a.next(10));
    let mut fb = Box::pin(b.next(10));
    let mut fc = Box::pin(c.next(10));
    for f in [
        fa.as_mut().now_or_never(),
        fb.as_mut().now_or_never(),
        fc.as_mut().now_or_never(),
    ] {
        assert!(f.is_none(), "nothing yet");
    }
    publish(&stream, "1");
    assert_eq!(data(fc.as_mut().now_or_never().expect("woken")), ["1"]);
    drop(fc);
    let mut fc = Box::pin(c.next(10));
    assert!(fc.as_mut().now_or_never().is_none());
    // a and b have not taken "1" yet: "2" waits for them.
    publish(&stream, "2");
    assert_eq!(stream.metrics.paced_wakes.get(), 1);
    assert!(
        fc.as_mut().now_or_never().is_none(),
        "not woken during the pass"
    );
    assert_eq!(data(fa.as_mut().now_or_never().expect("woken")), ["1", "2"]);
    assert!(
        fc.as_mut().now_or_never().is_none(),
        "b still takes its events"
    );
    // b's wait is cancelled (a heartbeat): that ends the pass too.
    drop(fb);
    assert_eq!(data(fc.as_mut().now_or_never().expect("next pass")), ["2"]);
    drop(fc);
    assert_eq!(data(b.try_next(10).expect("ready")), ["1", "2"]);
}

/// A counted subscriber that stops polling (blocked sending a ping) holds the next pass for a bounded time only.
#[tokio::test(start_paused = true)]
async fn a_stalled_subscriber_holds_a_pass_only_briefly() {
    use futures_util::FutureExt;
    let hub = hub();
    let start = starter(Arc::default(), Arc::default());
    let s = settings(100, 10);
    let mut stalled = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    let mut c = hub.subscribe(key("x"), &s, &start, Resume::Live, None, Default::default());
    let stream = c.stream().clone();
    let mut held = std::pin::pin!(stalled.next(10));
    assert!(held.as_mut().now_or_never().is_none());
    assert!(c.next(10).now_or_never().is_none());
    publish(&stream, "1");
    assert_eq!(data(c.next(10).await), ["1"]);
    publish(&stream, "2");
    let at = tokio::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(1), c.next(10)).await;
    assert_eq!(data(got.expect("the watchdog starts the next pass")), ["2"]);
    assert!(
        at.elapsed() <= Duration::from_millis(500),
        "{:?}",
        at.elapsed()
    );
    assert_eq!(data(held.await), ["1", "2"]);
}
