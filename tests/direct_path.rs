//! Issue 9 on the real binary: the direct HTTP/1.1 path that serves stream readers on the socket itself, driven
//! with raw bytes: keep-alive polls and a hand-over to hyper on one connection (pipelined), an HTTP/1.0 SSE stream
//! delimited by the close, heads too large (or with too many fields) for the direct path still served (by hyper),
//! a held poll's pipelined bytes kept up to their bound and read after it, and a client that floods its open SSE
//! connection disconnected and counted while another client keeps its stream.

mod support;

use support::client::WAIT;
use support::feeds::metric;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends until it closes the connection.
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until `needle` has arrived; everything read so far.
async fn read_until(tcp: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {}", String::from_utf8_lossy(&got)));
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn pipelined_polls_and_a_hand_over_to_hyper_share_one_connection() {
    let (_upstream, _dir, binary) = support::binary::with_sse_upstream("", &["one"]).await;
    let addr = binary.listen[0];

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let poll = "GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two polls served by the direct path, then the client script (hyper), all written at once.
    let requests = format!(
        "{poll}{poll}GET /_pushbridge/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(requests.as_bytes()).await.unwrap();
    let got = read_to_close(&mut tcp).await;
    assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{got}");
    assert_eq!(
        got.matches("x-pushbridge-transport: long-poll\r\n").count(),
        2,
        "{got}"
    );
    assert_eq!(got.matches("content-type: application/json").count(), 2);
    assert!(got.contains("application/javascript"), "{got}");
    assert!(got.contains("\r\ndate: "), "{got}");
}

#[tokio::test]
async fn an_http_1_0_sse_stream_ends_with_the_connection() {
    let (upstream, _dir, binary) = support::binary::with_sse_upstream("", &[]).await;
    let mut tcp = TcpStream::connect(binary.listen[0]).await.unwrap();
    tcp.write_all(b"GET /events/a HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut tcp, ": pushbridge").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    upstream.wait_connections(1).await;
    upstream.publish("hello");
    // The event as it is on the wire: no chunk framing around it.
    let got = read_until(&mut tcp, "data: hello\n\n").await;
    assert!(got.contains("id: 1\ndata: hello\n\n"), "{got}");
}

#[tokio::test]
async fn a_head_too_large_for_the_direct_path_is_served_by_hyper() {
    let (_upstream, _dir, binary) = support::binary::with_sse_upstream("", &["one"]).await;
    // A 12 KiB field, then more header fields than the direct path parses (64): hyper serves both.
    let big = format!("X-Big: {}\r\n", "b".repeat(12 * 1024));
    let many: String = (0..70).map(|i| format!("X-F{i}: {i}\r\n")).collect();
    for fields in [big, many] {
        let mut tcp = TcpStream::connect(binary.listen[0]).await.unwrap();
        let request = format!(
            "GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let got = read_to_close(&mut tcp).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("x-pushbridge-transport: long-poll"), "{got}");
    }
    let admin = binary.admin.expect("admin listener");
    let series = r#"pushbridge_direct_path_bounds_total{bound="head"}"#;
    assert_eq!(metric(admin, series).await, 2.0, "both hand-overs counted");
}

#[tokio::test]
async fn a_held_poll_keeps_a_pipelined_request_and_stops_reading_past_its_bound() {
    let (upstream, _dir, binary) = support::binary::with_sse_upstream("", &[]).await;
    let addr = binary.listen[0];

    // A held poll with the next request pipelined behind it: both answered, in order, on one connection.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let held = "GET /events/a?transport=long-poll HTTP/1.1\r\nHost: x\r\n\r\n";
    let next =
        "GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tcp.write_all(format!("{held}{next}").as_bytes())
        .await
        .unwrap();
    upstream.wait_connections(1).await;
    upstream.publish("first");
    let got = read_to_close(&mut tcp).await;
    assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{got}");
    assert!(got.contains("first"), "{got}");

    // Past the 8 KiB kept while a poll is held: the server stops reading (the bytes wait in the socket), still
    // answers the poll, then the bytes are read as the next request (hyper refuses them) and the connection ends.
    // The poll carries the cursor of the first answer, and "second" is published once the proxy counts it held.
    let cursor = got
        .split("\"last_event_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no cursor in {got}"))
        .to_owned();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let held = format!(
        "GET /events/a?transport=long-poll&last_event_id={cursor} HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    tcp.write_all(held.as_bytes()).await.unwrap();
    let mut junk = b"NOT A REQUEST LINE\r\n".to_vec();
    junk.resize(32 * 1024, b'x');
    tcp.write_all(&junk).await.unwrap();
    let admin = binary.admin.expect("admin listener");
    support::client::eventually("the poll is held", || async {
        metric(
            admin,
            "pushbridge_connections_open{http_version=\"http1\",transport=\"long-poll\"}",
        )
        .await
            == 1.0
    })
    .await;
    // The server read its 8 KiB and stopped: counted.
    support::client::eventually("reading stopped behind the held poll", || async {
        metric(
            admin,
            r#"pushbridge_direct_path_bounds_total{bound="held_poll_bytes"}"#,
        )
        .await
            == 1.0
    })
    .await;
    upstream.publish("second");
    let got = read_to_close(&mut tcp).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("second"), "{got}");
    assert!(got.contains("HTTP/1.1 400 Bad Request\r\n"), "{got}");
}

#[tokio::test]
async fn a_client_flooding_its_sse_connection_is_dropped_and_counted() {
    let (upstream, _dir, binary) = support::binary::with_sse_upstream("", &[]).await;
    let (addr, admin) = (binary.listen[0], binary.admin.unwrap());
    let open = b"GET /events/a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    quiet.write_all(open).await.unwrap();
    read_until(&mut quiet, ": pushbridge").await;
    let mut flood = TcpStream::connect(addr).await.unwrap();
    flood.write_all(open).await.unwrap();
    read_until(&mut flood, ": pushbridge").await;

    // Past the 64 KiB bound: the server stops reading and hangs up.
    let junk = vec![b'x'; 8 * 1024];
    for _ in 0..12 {
        if flood.write_all(&junk).await.is_err() {
            break;
        }
    }
    // Closed with unread bytes in its buffer: a reset, or an end of stream.
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while let Ok(n) = flood.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the flooding client is disconnected");
    let series =
        r#"pushbridge_connections_closed_total{listener="client",reason="unexpected_bytes"}"#;
    assert_eq!(metric(admin, series).await, 1.0);

    // The other client's stream is untouched.
    upstream.wait_connections(1).await;
    upstream.publish("still here");
    read_until(&mut quiet, "data: still here").await;
}
