//! `limits.wake_pacing` on the real binary: a stream with at least `from` subscribers wakes them at most once per
//! pace; events published meanwhile wait in the ring and still reach every subscriber, in order, and the deferred
//! wake-up is counted.

mod support;

use support::client::{Proto, connect};
use support::feeds::metric;
use support::upstream::SseUpstream;

#[tokio::test]
async fn a_paced_stream_defers_wake_ups_and_loses_nothing() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    // Two subscribers pace the stream at 2 × 1s (capped at 2s): events right after the first wait for the pace.
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
limits: {{ wake_pacing: {{ from: 2, per_subscriber: 1s, max: 2s }} }}
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
"#,
        upstream.addr
    );
    let binary = support::binary::start(dir.path(), &yaml, 1, true);
    let (addr, admin) = (binary.listen[0], binary.admin.expect("admin listener"));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut sender = connect(addr, Proto::H1).await;
        clients.push(sender.sse(addr, "/events/x", None).await);
    }
    upstream.wait_connections(1).await;
    // "a" wakes the subscribers at once; "b" and "c", published within the pace, wait in the ring for one deferred
    // wake-up.
    upstream.publish("a");
    for client in &mut clients {
        assert_eq!(client.take(1).await[0].data, "a");
    }
    upstream.publish("b");
    upstream.publish("c");
    for client in &mut clients {
        let got: Vec<String> = client.take(2).await.into_iter().map(|e| e.data).collect();
        assert_eq!(got, ["b", "c"]);
    }
    assert_eq!(metric(admin, "pushbridge_paced_wakes_total").await, 1.0);
}
