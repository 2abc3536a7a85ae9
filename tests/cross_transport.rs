//! Resume across transports: read some events over WebSocket, continue over long-poll from the last id, then
//! over SSE — the union is exactly consecutive, nothing lost or repeated.

mod support;

use futures_util::StreamExt;
use http_body_util::BodyExt;
use support::client::{Proto, connect, empty};
use support::proxy;
use support::upstream::SseUpstream;

#[tokio::test]
async fn websocket_then_long_poll_then_sse_is_exactly_consecutive() {
    let upstream = SseUpstream::start(true).await;
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
    idle_timeout: 1m
"#,
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let mut ids: Vec<u64> = Vec::new();

    // WebSocket (HTTP/1.1): events 1..=3.
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/events/x"))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-pushbridge-transport"], "ws");
    upstream.wait_connections(1).await;
    for i in 1..=3 {
        upstream.publish(format!("e{i}"));
    }
    for _ in 0..3 {
        let frame = ws.next().await.unwrap().unwrap();
        let envelope: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        ids.push(envelope["id"].as_str().unwrap().parse().unwrap());
    }
    ws.close(None).await.unwrap();
    for i in 4..=6 {
        upstream.publish(format!("e{i}"));
    }

    // Long-poll (HTTP/2) from the last WebSocket id: events 4..=6 at once.
    let mut h2 = connect(addr, Proto::H2).await;
    let uri = format!(
        "http://{addr}/events/x?last_event_id={}",
        ids.last().unwrap()
    );
    let response = h2
        .send(http::Request::get(uri).body(empty()).unwrap())
        .await;
    assert_eq!(response.headers()["x-pushbridge-transport"], "long-poll");
    let batch: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(batch["gap"], false);
    for event in batch["events"].as_array().unwrap() {
        ids.push(event["id"].as_str().unwrap().parse().unwrap());
    }
    assert_eq!(batch["last_event_id"], ids.last().unwrap().to_string());
    for i in 7..=9 {
        upstream.publish(format!("e{i}"));
    }

    // SSE from the long-poll cursor: events 7..=9.
    let cursor = ids.last().unwrap().to_string();
    let mut sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", Some(&cursor))
        .await;
    for event in sse.take(3).await {
        ids.push(event.id.unwrap().parse().unwrap());
    }
    assert_eq!(ids, (1..=9).collect::<Vec<u64>>());
}
