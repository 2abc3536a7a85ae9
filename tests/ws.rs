//! WebSocket end to end (RFC 6455, RFC 8441): the real server and upstream, tokio-tungstenite over HTTP/1.1 plaintext
//! and TLS, an `h2` extended-CONNECT client, a raw TCP client that never answers pings, and a test application
//! receiving forwarded client messages.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use support::certs::{KeyKind, TestCa};
use support::client::{Proto, WAIT, connect};
use support::h2ws::H2Client;
use support::proxy;
use support::upstream::SseUpstream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    name: news
    upstream:
      url: "http://{upstream}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
{extra}
"#
    )
}

/// Opens a WebSocket over `io` (already connected) to `url`, with extra request headers.
async fn open<S>(
    io: S,
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<(WebSocketStream<S>, HeaderMap), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, io))
        .await
        .expect("handshake in time")?;
    Ok((ws, response.headers().clone()))
}

/// A plaintext HTTP/1.1 WebSocket to `path`.
async fn ws(addr: SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, headers) = open(tcp, &format!("ws://{addr}{path}"), &[])
        .await
        .expect("WebSocket opens");
    assert_eq!(headers["x-pushbridge-transport"], "ws");
    ws
}

/// The next text frame, skipping pings and pongs.
async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time");
        match message {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next `n` frames as JSON envelopes.
async fn envelopes<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    n: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(serde_json::from_str(&next_text(ws).await).expect("a JSON envelope"));
    }
    out
}

fn envelope(id: usize, data: &str) -> Value {
    json!({ "id": id.to_string(), "event": "message", "data": data })
}

/// Reads until the server's close frame; returns its code.
async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> CloseCode {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn metric(proxy: &proxy::TestProxy, series: &str) -> f64 {
    let text = String::from_utf8(proxy.running().metrics().render()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A test application receiving forwarded client messages: each POST's headers and body go to the channel, and
/// `on_message` sees the body (for a round trip through the upstream).
async fn message_app(
    on_message: impl Fn(Bytes) + Send + Sync + 'static,
) -> (SocketAddr, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let on_message = Arc::new(on_message);
    let addr = support::app::serve(move |req: Request<Incoming>| {
        let (tx, on_message) = (tx.clone(), on_message.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            on_message(body.clone());
            let _ = tx.send((parts.headers, body));
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    (addr, rx)
}

#[tokio::test]
async fn events_arrive_as_envelopes_over_http1_and_answered_pings_keep_the_socket() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "    heartbeat: 100ms")).await;
    let mut client = ws(proxy.addr(), "/events/x").await;
    upstream.wait_connections(1).await;
    for i in 1..=5 {
        upstream.publish(format!("event {i}"));
    }
    let got = envelopes(&mut client, 5).await;
    assert_eq!(
        got,
        (1..=5)
            .map(|i| envelope(i, &format!("event {i}")))
            .collect::<Vec<_>>()
    );

    // tungstenite answers pings as it reads: five heartbeats later the socket is still served.
    let mut pings = 0;
    while pings < 5 {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("ping in time")
        {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    upstream.publish("event 6");
    assert_eq!(envelopes(&mut client, 1).await, [envelope(6, "event 6")]);
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_events_delivered_total{transport=\"ws\"}"
        ),
        6.0
    );
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_connections_open{http_version=\"http1\",transport=\"ws\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn websocket_over_tls() {
    let upstream = SseUpstream::start(true).await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let yaml = format!(
        "listen:\n{}streams:\n  - path: /events/{{channel}}\n    upstream: {{ url: \"http://{}/up/{{channel}}\" }}\n",
        support::certs::tls_listener(&cert, &key),
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config(&[b"http/1.1"])));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut client, headers) = open(tls, "wss://localhost/events/secure", &[])
        .await
        .expect("WebSocket opens");
    assert_eq!(headers["x-pushbridge-transport"], "ws");
    upstream.wait_connections(1).await;
    for i in 1..=3 {
        upstream.publish(format!("tls {i}"));
    }
    let got = envelopes(&mut client, 3).await;
    assert_eq!(
        got,
        (1..=3)
            .map(|i| envelope(i, &format!("tls {i}")))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn http2_extended_connect_carries_events_and_client_messages() {
    let upstream = Arc::new(SseUpstream::start(true).await);
    let echo = upstream.clone();
    let (app, mut received) =
        message_app(move |body| echo.publish(String::from_utf8_lossy(&body))).await;
    let extra = format!("    client_messages: {{ forward: \"http://{app}/messages\" }}");
    let proxy = proxy::start(&config(upstream.addr, &extra)).await;
    let mut h2 = H2Client::connect(proxy.addr()).await;
    // Two tunnels on one HTTP/2 connection.
    let (status, a) = h2.websocket("/events/x").await;
    assert_eq!(status, 200);
    let (_, b) = h2.websocket("/events/x").await;
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    upstream.wait_connections(1).await;
    upstream.publish("one");
    upstream.publish("two");
    for client in [&mut a, &mut b] {
        assert_eq!(
            envelopes(client, 2).await,
            [envelope(1, "one"), envelope(2, "two")]
        );
    }

    // Client → application → upstream → every client.
    a.send(Message::text("from the client")).await.unwrap();
    let (headers, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, "from the client");
    assert_eq!(headers["x-pushbridge-transport"], "ws");
    for client in [&mut a, &mut b] {
        assert_eq!(envelopes(client, 1).await, [envelope(3, "from the client")]);
    }
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_connections_open{http_version=\"http2\",transport=\"ws\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn data_format_and_its_gap_notice() {
    let upstream = SseUpstream::start(true).await;
    let extra = "    ws: { format: data }\n    buffer: { events: 2, age: 5m }";
    let proxy = proxy::start(&config(upstream.addr, extra)).await;
    let mut first = ws(proxy.addr(), "/events/x").await;
    upstream.wait_connections(1).await;
    for data in ["a", "b", "c"] {
        upstream.publish(data);
    }
    for data in ["a", "b", "c"] {
        assert_eq!(next_text(&mut first).await, data);
    }
    // Id 1 is no longer buffered (only 2 and 3 are): the gap notice is an envelope even in `data` format.
    let mut late = ws(proxy.addr(), "/events/x?last_event_id=1").await;
    let gap: Value = serde_json::from_str(&next_text(&mut late).await).unwrap();
    assert_eq!(
        gap,
        json!({ "event": "pushbridge-gap", "data": "{\"last_event_id\":\"1\"}" })
    );
    assert_eq!(next_text(&mut late).await, "b");
    assert_eq!(next_text(&mut late).await, "c");
}

#[tokio::test]
async fn resume_with_last_event_id_gets_exactly_the_missed_events() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "    buffer: { events: 3, age: 5m }")).await;
    let mut first = ws(proxy.addr(), "/events/x").await;
    upstream.wait_connections(1).await;
    for i in 1..=5 {
        upstream.publish(format!("e{i}"));
    }
    assert_eq!(envelopes(&mut first, 5).await.len(), 5);

    let mut resumed = ws(proxy.addr(), "/events/x?last_event_id=3").await;
    upstream.publish("e6");
    let got = envelopes(&mut resumed, 3).await;
    assert_eq!(
        got,
        [envelope(4, "e4"), envelope(5, "e5"), envelope(6, "e6")]
    );

    // Outside the buffer (4, 5, 6 are held): the gap notice, then everything held.
    let mut gapped = ws(proxy.addr(), "/events/x?last_event_id=1").await;
    let got = envelopes(&mut gapped, 4).await;
    assert_eq!(
        got[0],
        json!({ "event": "pushbridge-gap", "data": "{\"last_event_id\":\"1\"}" })
    );
    assert_eq!(
        got[1..],
        [envelope(4, "e4"), envelope(5, "e5"), envelope(6, "e6")]
    );
    assert_eq!(metric(&proxy, "pushbridge_resume_gaps_total"), 1.0);
}

#[tokio::test]
async fn origin_is_checked_before_the_upgrade() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(
        upstream.addr,
        "    origins: [\"https://app.example\"]",
    ))
    .await;
    let url = format!("ws://{}/events/x", proxy.addr());

    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    match open(tcp, &url, &[("origin", "https://evil.example")]).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|(_, h)| h)),
    }
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let (_ws, headers) = open(tcp, &url, &[("origin", "https://app.example")])
        .await
        .expect("allowed origin");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn client_frames_are_forwarded_with_the_stream_and_credentials() {
    let upstream = SseUpstream::start(true).await;
    let (app, mut received) = message_app(|_| {}).await;
    let extra =
        format!("    client_messages: {{ forward: \"http://{app}/messages\", max_bytes: 1KiB }}");
    let proxy = proxy::start(&config(upstream.addr, &extra)).await;
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let url = format!("ws://{}/events/sport", proxy.addr());
    let (mut client, _) = open(tcp, &url, &[("authorization", "Bearer t0ken")])
        .await
        .unwrap();

    client.send(Message::text("hello app")).await.unwrap();
    client
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let (headers, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, "hello app");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["x-pushbridge-stream"], "news");
    assert_eq!(headers["x-pushbridge-params"], "channel=sport");
    assert_eq!(headers["authorization"], "Bearer t0ken");
    let (headers, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, &[0u8, 1, 2, 255][..]);
    assert_eq!(headers["content-type"], "application/octet-stream");

    // Over `max_bytes`: close 1009, nothing forwarded.
    client.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(close_code(&mut client).await, CloseCode::Size);
    assert!(received.try_recv().is_err());
    // Messages are forwarded one at a time, so both were answered before the over-size one was read.
    assert_eq!(
        metric(&proxy, "pushbridge_client_messages_total{result=\"ok\"}"),
        2.0
    );
}

#[tokio::test]
async fn client_frames_without_client_messages_are_refused_with_1003() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let mut client = ws(proxy.addr(), "/events/x").await;
    client.send(Message::text("nobody listens")).await.unwrap();
    assert_eq!(close_code(&mut client).await, CloseCode::Unsupported);
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_client_messages_total{result=\"refused\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn drain_closes_with_1001() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let mut client = ws(proxy.addr(), "/events/x").await;
    upstream.wait_connections(1).await;
    upstream.publish("before");
    assert_eq!(envelopes(&mut client, 1).await, [envelope(1, "before")]);
    let drained = tokio::spawn(proxy.shutdown());
    assert_eq!(close_code(&mut client).await, CloseCode::Away);
    // The close handshake completes: the server then ends the connection.
    assert!(
        tokio::time::timeout(WAIT, client.next())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        drained.await.unwrap(),
        "drain finished within the grace period"
    );
}

#[tokio::test]
async fn bad_handshakes_get_400() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    for (version, key, reason) in [
        ("8", "dGhlIHNhbXBsZSBub25jZQ==", "Version"),
        ("13", "not-a-key", "Key"),
    ] {
        let request = Request::get("/events/x")
            .header("host", proxy.addr().to_string())
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", key)
            .body(support::client::empty())
            .unwrap();
        let response = sender.send(request).await;
        assert_eq!(response.status(), 400, "{reason}");
        if reason == "Version" {
            assert_eq!(response.headers()["sec-websocket-version"], "13");
        }
    }
}

/// A client that completes the handshake by hand and never answers pings: after two unanswered pings the server
/// sends close 1011 and hangs up.
#[tokio::test]
async fn a_peer_missing_two_pongs_is_closed() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "    heartbeat: 100ms")).await;
    let mut tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!(
        "GET /events/x HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        proxy.addr()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("server hangs up")
        .unwrap();

    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let frames = parse_frames(&raw[end..]);
    let (last, pings) = frames.split_last().expect("frames");
    assert!(
        pings.len() >= 2 && pings.iter().all(|(op, _)| *op == 0x9),
        "pings first: {frames:?}"
    );
    assert_eq!(last.0, 0x8, "then a close frame");
    assert_eq!(u16::from_be_bytes([last.1[0], last.1[1]]), 1011);
}

/// Server frames (unmasked) as (opcode, payload).
fn parse_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    assert!(bytes.is_empty(), "trailing bytes");
    frames
}

/// A client that reads too slowly to stay inside the ring (but is never still long enough for the sweeper: its
/// `client_queue` is huge) gets the events it can take, consecutive, then close 1013 to resume from its last id.
#[tokio::test]
async fn a_client_behind_the_ring_is_closed_with_1013() {
    const EVENTS: usize = 600;
    let upstream = SseUpstream::start(true).await;
    let extra = "    buffer: { events: 20, age: 5m }\nlimits: { client_queue: 1000000 }";
    let proxy = proxy::start(&config(upstream.addr, extra)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(proxy.addr()).await.unwrap();
    let url = format!("ws://{}/events/x", proxy.addr());
    let (mut behind, _) = open(tcp, &url, &[]).await.unwrap();
    let mut reader = ws(proxy.addr(), "/events/x").await;
    upstream.wait_connections(1).await;

    // Bursts the reading client keeps up with, while `behind` reads nothing and its socket fills.
    let payload = "z".repeat(32 * 1024);
    for burst in (0..EVENTS).step_by(10) {
        for i in burst..burst + 10 {
            upstream.publish(format!("{i}:{payload}"));
        }
        let got = envelopes(&mut reader, 10).await;
        assert_eq!(got[9]["id"], (burst + 10).to_string());
    }

    let mut ids = Vec::new();
    let code = loop {
        match tokio::time::timeout(WAIT, behind.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Text(text))) => {
                let envelope: Value = serde_json::from_str(&text).unwrap();
                ids.push(envelope["id"].as_str().unwrap().parse::<usize>().unwrap());
            }
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            other => panic!("expected events then a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Again);
    assert!(ids.len() < EVENTS, "fell behind");
    assert_eq!(
        ids,
        (1..=ids.len()).collect::<Vec<_>>(),
        "what it got is consecutive"
    );
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_slow_consumer_disconnects_total{transport=\"ws\"}"
        ),
        1.0
    );
}
