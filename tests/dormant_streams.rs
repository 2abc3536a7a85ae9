//! Issue 16 item 5, against the real binary: dormant streams do not lock out new channels. A stream whose upstream
//! closed after `idle_timeout` keeps its buffer for resume, but at `max_streams` a request for a new channel wins:
//! the oldest dormant stream is evicted (counted), and a later resume from it gets one gap notice.

#[allow(dead_code)]
#[path = "lossless/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "lossless/clients.rs"]
mod clients;
mod support;

use app::ReplayApp;
use clients::Proxy;
use serde_json::Value;
use support::client::get_text;

/// One long-poll `GET`; its status and, for a 200, its JSON answer.
async fn poll(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get_text(addr, path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_channel_evicts_the_oldest_dormant_stream_at_max_streams() {
    let app = ReplayApp::start().await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    name: capped
    upstream: {{ url: "http://{}/up/{{channel}}" }}
    max_streams: 5
    idle_timeout: 1s
    buffer: {{ events: 100, age: 5m }}
    long_poll: {{ timeout: 5s }}
"#,
        app.addr
    ));
    let addr = proxy.addr();
    // Five one-off requests, each opening its channel and getting its first event; then every upstream closes.
    for i in 0..6 {
        app.publish(&format!("/up/c{i}"), &format!("first of c{i}"));
    }
    for i in 0..5 {
        let (status, answer) = poll(addr, &format!("/events/c{i}")).await;
        assert_eq!(status, 200, "c{i}: {answer}");
        assert_eq!(answer["events"][0]["id"], "1", "c{i}: {answer}");
    }
    for i in 0..5 {
        app.wait_connections(&format!("/up/c{i}"), 1, 0).await;
    }
    // A sixth channel is served (it was 503 for as long as the dormant streams' events were buffered).
    let (status, answer) = poll(addr, "/events/c5").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"][0]["data"], "first of c5");
    assert_eq!(
        proxy
            .metric("pushbridge_stream_evictions_total", "limit=\"route\"")
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric("pushbridge_stream_refusals_total", "limit=\"route\"")
            .await,
        0.0
    );
    // c0, the oldest dormant stream, was the one evicted: a resume from its last id is told about the gap, once.
    let (status, answer) = poll(addr, "/events/c0?last_event_id=1&wait=0").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["gap"], true, "{answer}");
    let cursor = answer["last_event_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, next) = poll(addr, &format!("/events/c0?last_event_id={cursor}&wait=0")).await;
    assert_eq!(next["gap"], false, "{next}");
    // Making room for c0 again evicted the next oldest (c1); c4, the newest dormant stream, is still held: exact.
    assert_eq!(
        proxy
            .metric("pushbridge_stream_evictions_total", "limit=\"route\"")
            .await,
        2.0
    );
    let (status, answer) = poll(addr, "/events/c4?last_event_id=1&wait=0").await;
    assert_eq!(
        (status, &answer["gap"]),
        (200, &Value::Bool(false)),
        "{answer}"
    );
}
