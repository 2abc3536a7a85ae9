//! Nothing lost, nothing repeated (issue 7), end to end on the real binary with real clients and scripted
//! third-party-style upstreams: the stream position at page load (`wait=0` and position tokens on every
//! transport, here), idle teardown (`lossless/idle.rs`), reused upstream ids (`lossless/ids.rs`), the long-poll gap reported once (`lossless/gaps.rs`), and the smaller edges (`lossless/edges.rs`).

#[allow(dead_code)]
#[path = "lossless/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "lossless/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "longpoll/polls.rs"]
mod polls;
mod support;

#[path = "lossless/edges.rs"]
mod edges;
#[path = "lossless/gaps.rs"]
mod gaps;
#[path = "lossless/idle.rs"]
mod idle;
#[path = "lossless/ids.rs"]
mod ids;

use clients::{Proxy, next_envelopes};
use support::client::{Proto, connect};
use support::upstream::SseUpstream;

/// A long-poll `wait=0` answers at once with the stream position (a token while nothing is held, else the newest
/// id), and every transport resumes from that position exactly, or reports the gap once when it is unknown.
#[tokio::test]
async fn wait_0_gives_the_position_and_every_transport_resumes_from_it() {
    let upstream = SseUpstream::start(true).await;
    // A held poll would outlast the test's WAIT: an answer proves wait=0 is never held.
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
    idle_timeout: 1m
    long_poll: {{ timeout: 1h }}
"#,
        upstream.addr
    ));
    let addr = proxy.addr();
    let first = polls::poll(addr, Proto::H1, "/events/x?transport=long-poll&wait=0", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.events(), []);
    assert!(!first.gap());
    let position = first.cursor();
    assert!(position.starts_with("pb:"), "{position}");
    // The poll created the stream and its upstream, as any subscriber does.
    upstream.wait_connections(1).await;

    upstream.publish("e1");
    upstream.publish("e2");
    // Long-poll from the token: everything published after it, no gap.
    let mut got = Vec::new();
    let mut cursor = position.clone();
    while got.len() < 2 {
        let answer = polls::poll(
            addr,
            Proto::H1,
            &format!("/events/x?last_event_id={cursor}"),
            &[],
        )
        .await;
        assert!(!answer.gap());
        got.extend(answer.events());
        cursor = answer.cursor();
    }
    assert_eq!(got, polls::expected(1, 2));
    assert_eq!(cursor, "2");

    // SSE with the token as Last-Event-ID, and over HTTP/2 as the query parameter.
    let mut sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", Some(&position))
        .await;
    let events: Vec<_> = sse.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(events, ["e1", "e2"]);
    let mut sse = connect(addr, Proto::H2)
        .await
        .sse(addr, &format!("/events/x?last_event_id={position}"), None)
        .await;
    let events: Vec<_> = sse.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(events, ["e1", "e2"]);

    // WebSocket with the token.
    let mut ws = clients::ws(addr, &format!("/events/x?last_event_id={position}")).await;
    let envelopes = next_envelopes(&mut ws, 2).await;
    assert_eq!(envelopes[0]["id"], "1");
    assert_eq!(envelopes[1]["data"], "e2");

    // With events held, the position is the newest id; wait=0 with a current cursor answers empty at once.
    let now = polls::poll(addr, Proto::H2, "/events/x?wait=0", &[]).await;
    assert_eq!(
        (now.events(), now.cursor(), now.gap()),
        (vec![], "2".into(), false)
    );
    let now = polls::poll(addr, Proto::H1, "/events/x?wait=0&last_event_id=2", &[]).await;
    assert_eq!(
        (now.events(), now.cursor(), now.gap()),
        (vec![], "2".into(), false)
    );

    // A token of another stream instance is a gap, reported with everything held.
    let stale = polls::poll(
        addr,
        Proto::H1,
        "/events/x?wait=0&last_event_id=pb:0:0",
        &[],
    )
    .await;
    assert!(stale.gap());
    assert_eq!(stale.events(), polls::expected(1, 2));
    let mut sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", Some("pb:0:0"))
        .await;
    let gap = sse.next_event().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("pushbridge-gap"));

    // A bad wait is refused.
    let bad = polls::poll(addr, Proto::H1, "/events/x?wait=soon", &[]).await;
    assert_eq!(bad.status, 400);
}
