//! Loss-free delivery: upstream restarts (Last-Event-ID towards the upstream, no duplicates), and client resume
//! inside and outside the buffer (the gap event).

mod support;

use support::client::{Proto, connect};
use support::proxy;
use support::upstream::SseUpstream;

fn config(upstream: std::net::SocketAddr, buffer_events: usize) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream:
      url: "http://{upstream}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 40ms }}
    buffer: {{ events: {buffer_events}, age: 5m }}
    idle_timeout: 1m
"#
    )
}

#[tokio::test]
async fn upstream_killed_and_restarted_five_times_loses_and_repeats_nothing() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, 1000)).await;
    let addr = proxy.addr();
    let mut clients = Vec::new();
    for proto in [Proto::H1, Proto::H2, Proto::H1] {
        clients.push(
            connect(addr, proto)
                .await
                .sse(addr, "/events/x", None)
                .await,
        );
    }
    upstream.wait_connections(1).await;
    let mut published = 0;
    for round in 0..5 {
        for _ in 0..10 {
            published += 1;
            upstream.publish(format!("e{published}"));
        }
        // Everyone has the round's events before the kill, so the proxy's last id is known.
        for client in &mut clients {
            let got = client.take(10).await;
            assert_eq!(
                got.last().unwrap().id.as_deref(),
                Some(published.to_string().as_str())
            );
        }
        upstream.kill();
        // Published while the upstream is down: the proxy must fetch these on reconnect.
        for _ in 0..5 {
            published += 1;
            upstream.publish(format!("e{published}"));
        }
        upstream.restart().await;
        upstream.wait_connections(round + 2).await;
        for client in &mut clients {
            let got: Vec<String> = client.take(5).await.into_iter().map(|e| e.data).collect();
            let want: Vec<String> = (published - 4..=published)
                .map(|i| format!("e{i}"))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
    }
    // Nothing extra is queued: the next event is exactly the next one published.
    upstream.publish("last");
    for client in &mut clients {
        let next = client.next_event().await.unwrap();
        assert_eq!(next.data, "last");
        assert_eq!(next.id, Some((published + 1).to_string()));
    }
    let ids = upstream.last_event_ids();
    assert_eq!(ids[0], None);
    let resumed: Vec<Option<String>> = ids[1..].to_vec();
    let want: Vec<Option<String>> = (1..=5)
        .map(|round| Some((round * 15 - 5).to_string()))
        .collect();
    assert_eq!(
        resumed[..5],
        want[..],
        "each reconnect sends the newest id seen"
    );
    for client in &mut clients {
        assert_eq!(client.response_headers["x-pushbridge-transport"], "sse");
    }
}

#[tokio::test]
async fn resume_inside_the_buffer_replays_exactly_the_missed_events() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, 5)).await;
    let addr = proxy.addr();
    // A long-lived subscriber keeps the stream alive while the other one is away.
    let mut keeper = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", None)
        .await;
    upstream.wait_connections(1).await;
    let mut away = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", None)
        .await;
    for i in 1..=3 {
        upstream.publish(format!("e{i}"));
    }
    let seen = away.take(3).await;
    drop(away);
    upstream.publish("e4");
    upstream.publish("e5");
    keeper.take(5).await;
    let last = seen.last().unwrap().id.clone().unwrap();
    let mut back = connect(addr, Proto::H2)
        .await
        .sse(addr, "/events/x", Some(&last))
        .await;
    let got: Vec<String> = back.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["e4", "e5"]);
    upstream.publish("e6");
    assert_eq!(back.next_event().await.unwrap().data, "e6");
}

#[tokio::test]
async fn resume_outside_the_buffer_sends_the_gap_event_first() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, 5)).await;
    let addr = proxy.addr();
    let mut keeper = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", None)
        .await;
    upstream.wait_connections(1).await;
    for i in 1..=15 {
        upstream.publish(format!("e{i}"));
    }
    keeper.take(15).await;
    let mut back = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", Some("3"))
        .await;
    let gap = back.next_event().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("pushbridge-gap"));
    assert_eq!(
        gap.id, None,
        "the gap notice does not move the client's last id"
    );
    let notice: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(notice["last_event_id"], "3");
    let got: Vec<String> = back.take(5).await.into_iter().map(|e| e.data).collect();
    assert_eq!(
        got,
        ["e11", "e12", "e13", "e14", "e15"],
        "then everything still buffered"
    );
    let metrics = String::from_utf8(proxy.running().metrics().render()).unwrap();
    assert!(
        metrics.contains("pushbridge_resume_gaps_total 1"),
        "{metrics}"
    );
}
