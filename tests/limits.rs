//! Connection limits: a client that does not send its request head in time is disconnected (slow-loris), and
//! `limits.max_connections` caps concurrent connections without refusing the ones already served.

mod support;

use std::time::Duration;

use support::client::{Proto, WAIT, connect};
use support::proxy;
use support::upstream::SseUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_slow_request_head_is_cut_off_after_the_handshake_timeout() {
    let proxy = proxy::start(
        "listen:\n  - address: \"127.0.0.1:0\"\nlimits: { handshake_timeout: 200ms }\n",
    )
    .await;
    let mut slow = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf))
        .await
        .expect("closed by the proxy");
    // hyper answers 408 or just closes; either way the connection ends without serving the request.
    assert!(
        read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn max_connections_caps_concurrent_connections() {
    let upstream = SseUpstream::start(true).await;
    let yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\nstreams:\n  - path: /events/{{c}}\n    upstream: {{ url: \"http://{}/up/{{c}}\" }}\nlimits: {{ max_connections: 2 }}\n",
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let first = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    let _second = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    // The third connection is accepted by the kernel but not served while two are open.
    let mut third = connect(addr, Proto::H1).await;
    let waiting = tokio::spawn(async move { third.sse(addr, "/events/a", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past max_connections: 2"
    );
    drop(first);
    let mut served = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("served once a slot frees")
        .unwrap();
    upstream.wait_connections(1).await;
    upstream.publish("x");
    assert_eq!(served.next_event().await.unwrap().data, "x");
}
