//! `limits.wake_pacing` on the real binary: a stream with at least `from` subscribers wakes them at most once per
//! pace; events published meanwhile wait in the ring and still reach every subscriber, in order, and the deferred
//! wake-up is counted.

mod support;

use support::client::{Proto, connect};
use support::feeds::metric;

#[tokio::test]
async fn a_paced_stream_defers_wake_ups_and_loses_nothing() {
    // Two subscribers pace the stream at 2 × 1s (capped at 2s): events right after the first wait for the pace.
    let (upstream, _dir, binary) = support::binary::with_sse_upstream(
        "limits: { wake_pacing: { from: 2, per_subscriber: 1s, max: 2s } }",
        &[],
    )
    .await;
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
