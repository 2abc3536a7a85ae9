//! A subscriber that stops reading is disconnected once it falls `client_queue` events behind; the others keep
//! their pace and the proxy's memory stays flat (measured on the real binary).

mod support;

use std::sync::Arc;

use support::client::{Proto, connect};
use support::upstream::SseUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENTS: usize = 1500;
const EVENT_BYTES: usize = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_disconnected_and_memory_stays_flat() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - name: x
    path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
    buffer: {{ events: 64 }}
limits: {{ client_queue: 32 }}
log: {{ format: json }}
"#,
        upstream.addr
    );
    let proxy = support::binary::start(dir.path(), &yaml, 1, true);
    let addr = proxy.listen[0];

    // The stalled client: a raw socket with a small receive buffer that reads the response head, then stops.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /events/x HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = stalled.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

    let mut reader = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", None)
        .await;
    upstream.wait_connections(1).await;
    let payload: Arc<str> = "y".repeat(EVENT_BYTES).into();
    for i in 0..50 {
        upstream.publish(format!("{i}:{payload}"));
    }
    reader.take(50).await;
    let rss_before = proxy.rss_kib();

    // Bursts of 16: the reading client keeps pace and gets every event, in order.
    for burst in (50..EVENTS).step_by(16) {
        let end = (burst + 16).min(EVENTS);
        for i in burst..end {
            upstream.publish(format!("{i}:{payload}"));
        }
        for i in burst..end {
            let event = reader.next_event().await.expect("reader keeps its stream");
            assert!(
                event.data.starts_with(&format!("{i}:")),
                "event {i} in order"
            );
        }
    }
    let rss_after = proxy.rss_kib();
    // The stalled client made no progress over a sweep period while far behind: the proxy drops it.
    let line = tokio::task::block_in_place(|| {
        proxy.wait_log("Slow subscriber disconnected", support::client::WAIT)
    });
    assert!(line.contains("\"transport\":\"sse\""), "{line}");

    // The stalled client was disconnected: its socket reaches EOF without it ever reading the whole stream.
    let mut received = n;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(support::client::WAIT, stalled.read(&mut buf))
            .await
            .expect("disconnected");
        match read {
            Ok(0) | Err(_) => break,
            Ok(k) => received += k,
        }
    }
    assert!(
        received < EVENTS * EVENT_BYTES / 2,
        "stalled client got {received} bytes"
    );

    let metrics = http_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("pushbridge_slow_consumer_disconnects_total{transport=\"sse\"} 1"),
        "{metrics}"
    );
    // ~47 MiB went through; the ring holds 64 events (2 MiB). Allow generous allocator slack, but far below
    // what buffering the stalled client's backlog would take.
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    eprintln!(
        "proxy RSS {rss_before} KiB → {rss_after} KiB after {EVENTS} events of {EVENT_BYTES} bytes"
    );
    assert!(
        growth_mib < 24,
        "proxy RSS grew by {growth_mib} MiB ({rss_before} → {rss_after} KiB)"
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    support::client::get_text(addr, path).await.1
}
