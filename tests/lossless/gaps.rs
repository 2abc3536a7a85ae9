//! Issue 7 item 4: a long-poll gap is reported once; the answer's cursor lets the next poll continue without a
//! second gap, whether or not events came with the gap.

use crate::clients::Proxy;
use crate::polls;
use crate::support::client::Proto;
use crate::support::upstream::SseUpstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_gap_is_reported_once() {
    let upstream = SseUpstream::start(true).await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
    buffer: {{ events: 2 }}
    long_poll: {{ timeout: 300ms }}
"#,
        upstream.addr
    ));
    let addr = proxy.addr();
    // An unknown cursor on a stream holding nothing: the gap, and a cursor past it.
    let gap = polls::poll(addr, Proto::H1, "/events/x?last_event_id=nope", &[]).await;
    assert_eq!((gap.events(), gap.gap()), (vec![], true));
    assert_ne!(gap.cursor(), "nope");
    upstream.wait_connections(1).await;
    let next = polls::poll(
        addr,
        Proto::H1,
        &format!("/events/x?last_event_id={}", gap.cursor()),
        &[],
    )
    .await;
    assert_eq!(
        (next.events(), next.gap()),
        (vec![], false),
        "no second gap"
    );
    // The next event comes without a gap too.
    let held = polls::spawn_poll(
        addr,
        Proto::H1,
        format!("/events/x?last_event_id={}", next.cursor()),
    );
    let mut sse = crate::support::client::connect(addr, Proto::H1)
        .await
        .sse(
            addr,
            &format!("/events/x?last_event_id={}", next.cursor()),
            None,
        )
        .await;
    upstream.publish("e1");
    assert_eq!(sse.next_event().await.unwrap().data, "e1");
    let mut got = held.await.unwrap();
    if got.events().is_empty() {
        // The held poll timed out just before e1: the following one gets it.
        got = polls::poll(
            addr,
            Proto::H1,
            &format!("/events/x?last_event_id={}", got.cursor()),
            &[],
        )
        .await;
    }
    assert_eq!((got.events(), got.gap()), (polls::expected(1, 1), false));

    // An evicted cursor: the gap with the oldest events held, once.
    for n in 2..=5 {
        upstream.publish(format!("e{n}"));
    }
    drop(sse);
    crate::support::client::eventually("events 2..5 received", || async {
        proxy.metric("pushbridge_events_received_total", "").await == 5.0
    })
    .await;
    let evicted = polls::poll(addr, Proto::H1, "/events/x?last_event_id=1", &[]).await;
    assert_eq!(
        (evicted.events(), evicted.gap()),
        (polls::expected(4, 5), true)
    );
    let after = polls::poll(
        addr,
        Proto::H1,
        &format!("/events/x?last_event_id={}", evicted.cursor()),
        &[],
    )
    .await;
    assert_eq!((after.events(), after.gap()), (vec![], false));
}
