//! Issue 9 on the real binary: the direct HTTP/1.1 path that serves stream readers on the socket itself, driven
//! with raw bytes: keep-alive polls and a hand-over to hyper on one connection (pipelined), an HTTP/1.0 SSE stream
//! delimited by the close, heads too large (or with too many fields) for the direct path still served (by hyper),
//! a held poll's pipelined bytes kept up to their bound and read after it, and a client that floods its open SSE
//! connection disconnected and counted while another client keeps its stream.

mod support;

use support::client::WAIT;
use support::feeds::metric;
use support::raw;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends until it closes the connection, as text.
async fn read_to_close(tcp: &mut TcpStream) -> String {
    raw::text(&raw::read_to_close(tcp).await)
}

/// Reads until `needle` has arrived; everything read so far, as text.
async fn read_until(tcp: &mut TcpStream, needle: &str) -> String {
    raw::text(&raw::read_until(tcp, needle.as_bytes()).await)
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
    // As hyper answers HTTP/1.0: its version, no framing, no `connection` field (the close delimits the body).
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.contains("connection:"), "{head}");
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

/// A long-poll the direct path serves at once.
const POLL: &str = "GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn the_client_script_wins_over_a_stream_route_matching_its_path() {
    let (_upstream, _dir, binary) =
        support::binary::with_sse_route("/{tenant}/{channel}", "", &[]).await;
    let script = "GET /_pushbridge/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // On a fresh connection, and after a request the direct path served on the same connection.
    let poll = "GET /t/c?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\n";
    for (requests, methods) in [
        (script.to_owned(), &["GET"][..]),
        (format!("{poll}{script}"), &["GET", "GET"][..]),
    ] {
        let mut tcp = TcpStream::connect(binary.listen[0]).await.unwrap();
        tcp.write_all(requests.as_bytes()).await.unwrap();
        let got = raw::read_to_close(&mut tcp).await;
        let answers = raw::responses(&got, methods);
        let last = answers.last().expect("an answer");
        assert_eq!(answers.len(), methods.len(), "{}", raw::text(&got));
        assert_eq!(last.status, 200);
        assert_eq!(
            last.header("content-type"),
            Some("application/javascript; charset=utf-8"),
            "{}",
            raw::text(&got)
        );
        assert_eq!(last.header("x-pushbridge-transport"), None);
        assert!(raw::text(&last.body).contains("pushbridge"));
    }
    // Only the poll opened a stream (and an upstream request).
    let admin = binary.admin.expect("admin listener");
    assert_eq!(metric(admin, "pushbridge_streams_open").await, 1.0);
}

#[tokio::test]
async fn after_a_direct_request_an_http2_preface_closes_the_connection() {
    let (_upstream, _dir, binary) = support::binary::with_sse_upstream("", &[]).await;
    let mut tcp = TcpStream::connect(binary.listen[0]).await.unwrap();
    tcp.write_all(POLL.as_bytes()).await.unwrap();
    raw::read_responses(&mut tcp, &["GET"], 1).await;
    tcp.write_all(PREFACE).await.unwrap();
    let next = raw::next_bytes(&mut tcp).await;
    assert_eq!(
        next.map(|b| raw::text(&b)),
        None,
        "HTTP/1.1 keeps its protocol"
    );
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn over_tls_the_alpn_choice_rules() {
    let upstream = support::upstream::SseUpstream::start(true).await;
    let ca = support::certs::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), support::certs::KeyKind::EcdsaP256);
    let yaml = format!(
        "listen:\n{}log: {{ format: json }}\nstreams:\n  - path: /events/{{channel}}\n    upstream: {{ url: \"http://{}/up/{{channel}}\" }}\n",
        support::certs::tls_listener(&cert, &key),
        upstream.addr
    );
    let binary = support::binary::start(dir.path(), &yaml, 1, false);
    let connect = |alpn: &'static [u8]| {
        let config = std::sync::Arc::new(ca.client_config(&[alpn]));
        let addr = binary.listen[0];
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
            tls
        }
    };
    // ALPN http/1.1: an HTTP/2 preface is not HTTP/2, first or after a request.
    let mut tls = connect(b"http/1.1").await;
    tls.write_all(PREFACE).await.unwrap();
    let next = raw::next_bytes(&mut tls).await;
    assert_eq!(next.map(|b| raw::text(&b)), None, "the first request");
    let mut tls = connect(b"http/1.1").await;
    tls.write_all(POLL.as_bytes()).await.unwrap();
    raw::read_responses(&mut tls, &["GET"], 1).await;
    tls.write_all(PREFACE).await.unwrap();
    let next = raw::next_bytes(&mut tls).await;
    assert_eq!(next.map(|b| raw::text(&b)), None, "after a request");
    // ALPN h2: an HTTP/1.1 request is not an HTTP/2 preface: the server's own preface (SETTINGS), perhaps a
    // GOAWAY, then the close; no HTTP/1.1 answer.
    let mut tls = connect(b"h2").await;
    let closing = POLL.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    tls.write_all(closing.as_bytes()).await.unwrap();
    let got = raw::read_to_close(&mut tls).await;
    assert!(!raw::text(&got).contains("HTTP/1.1"), "{}", raw::text(&got));
    let types = frame_types(&got);
    assert!(types.first() == Some(&SETTINGS), "{got:?}");
    assert!(
        types.iter().all(|t| [SETTINGS, GOAWAY].contains(t)),
        "{got:?}"
    );
}

/// HTTP/2 frame types (RFC 9113 §6.5, §6.8).
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;

/// The types of the HTTP/2 frames in `bytes`, in order.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn an_http_1_0_keep_alive_connection_answers_its_pipelined_request() {
    let (_upstream, _dir, binary) = support::binary::with_sse_upstream("", &[]).await;
    let mut tcp = TcpStream::connect(binary.listen[0]).await.unwrap();
    let poll = "GET /events/a?transport=long-poll&wait=0 HTTP/1.0\r\n";
    let requests = format!("{poll}Connection: keep-alive\r\n\r\n{poll}\r\n");
    tcp.write_all(requests.as_bytes()).await.unwrap();
    let got = raw::read_to_close(&mut tcp).await;
    let answers = raw::responses(&got, &["GET", "GET"]);
    assert_eq!(answers.len(), 2, "{}", raw::text(&got));
    for (answer, connection) in answers.iter().zip([Some("keep-alive"), None]) {
        assert_eq!(
            (answer.version, answer.status),
            ("HTTP/1.0", 200),
            "{}",
            raw::text(&got)
        );
        assert_eq!(
            answer.header("connection"),
            connection,
            "{}",
            raw::text(&got)
        );
        assert_eq!(answer.header("x-pushbridge-transport"), Some("long-poll"));
    }
}

#[tokio::test]
async fn a_pass_through_websocket_after_a_direct_request_is_relayed_by_hyper_http1() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let app = support::ws_app::WsApp::start().await;
    let extra = format!("passthrough: {{ upstream: \"http://{}\" }}", app.addr);
    let (_upstream, _dir, binary) = support::binary::with_sse_upstream(&extra, &[]).await;
    // A poll the direct path serves, then the handshake on the same connection: hyper's HTTP/1.1 takes it over.
    let mut tcp = TcpStream::connect(binary.listen[0]).await.unwrap();
    tcp.write_all(POLL.as_bytes()).await.unwrap();
    raw::read_responses(&mut tcp, &["GET"], 1).await;
    let request = format!("ws://{}/chat", binary.listen[0])
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("handshake in time")
        .expect("the application's 101");
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("an echo");
    assert_eq!(
        echoed.expect("open").expect("a message"),
        Message::text("hello")
    );
}
