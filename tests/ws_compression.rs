//! permessage-deflate (RFC 7692) and subprotocols on client WebSockets, on the real server: Python `websockets`
//! (with and without window-size parameters) and Node `ws` as compressing peers, tokio-tungstenite without the
//! extension, an HTTP/2 extended CONNECT tunnel read frame by frame, a raw client sending a deflate bomb, and the
//! subprotocol choices. Needs python3 with `websockets` and node with tests/differential/node_modules (`.ci/test`).

mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use support::client::WAIT;
use support::h2ws::H2Client;
use support::proxy;
use support::upstream::SseUpstream;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CLIENT_TEXT_REPEAT: usize = 1000;

fn config(upstream: SocketAddr, app: SocketAddr, ws: &str) -> String {
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
    client_messages: {{ forward: "http://{app}/messages", max_bytes: 64KiB }}
    ws: {ws}
"#
    )
}

/// About 1 KiB of JSON, different for each `i`.
fn json_data(i: usize, items: usize) -> String {
    let bids: Vec<String> = (0..items)
        .map(|k| {
            format!(
                r#"{{"price":{}.{},"qty":{}}}"#,
                100 + k,
                (k * 7 + i) % 10,
                k * 3 + i
            )
        })
        .collect();
    format!(
        r#"{{"seq":{i},"symbol":"ACME","bids":[{}]}}"#,
        bids.join(",")
    )
}

fn envelope(id: usize, data: &str) -> Value {
    json!({ "id": id.to_string(), "event": "message", "data": data })
}

/// The test application: the bodies of the client messages it is sent.
async fn message_app() -> (SocketAddr, mpsc::UnboundedReceiver<Bytes>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = support::app::serve(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let _ = tx.send(body.unwrap_or_default());
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    (addr, rx)
}

async fn received(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> String {
    let body = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("message in time")
        .expect("app running");
    String::from_utf8(body.to_vec()).unwrap()
}

fn metric(proxy: &proxy::TestProxy, series: &str) -> f64 {
    let text = String::from_utf8(proxy.running().metrics().render()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn deflated_bytes(proxy: &proxy::TestProxy) -> (f64, f64, f64) {
    (
        metric(
            proxy,
            "pushbridge_ws_payload_bytes_total{compression=\"deflate\"}",
        ),
        metric(proxy, "pushbridge_ws_deflate_original_bytes_total"),
        metric(
            proxy,
            "pushbridge_ws_payload_bytes_total{compression=\"none\"}",
        ),
    )
}

/// A peer process printing one line per step (see the scripts); its stdin ends the session when dropped.
struct Peer {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Peer {
    fn spawn(mut command: tokio::process::Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("peer starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer { child, lines }
    }

    fn python(url: &str, count: usize, window_bits: Option<u8>) -> Peer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/ws_deflate_client.py"
        );
        let mut command = tokio::process::Command::new("python3");
        command.arg(script).arg(url).arg(count.to_string());
        if let Some(bits) = window_bits {
            command.arg(bits.to_string());
        }
        Peer::spawn(command)
    }

    fn node(url: &str, count: usize) -> Peer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/ws_deflate_client.mjs"
        );
        let mut command = tokio::process::Command::new("node");
        command
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/differential"))
            .arg(script)
            .arg(url)
            .arg(count.to_string());
        Peer::spawn(command)
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("peer output in time")
            .unwrap()
            .expect("peer running (python3 websockets, node ws: see .ci/test)")
    }

    async fn extensions(&mut self) -> String {
        let line = self.line().await;
        line.strip_prefix("extensions ")
            .unwrap_or_else(|| panic!("not an extensions line: {line}"))
            .to_owned()
    }

    /// The next message, as the JSON string the peer printed.
    async fn message(&mut self) -> String {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a message: {line}"))
    }

    async fn finish(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// Runs a compressing peer against a deflate route: events of several sizes arrive intact, mostly compressed, and
/// its compressed message reaches the application inflated.
async fn compressing_peer(
    make: impl FnOnce(&str, usize) -> Peer,
    want_extension: &[&str],
    sends: usize,
) {
    let upstream = SseUpstream::start(true).await;
    let (app, mut messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ compression: deflate }")).await;
    let url = format!("ws://{}/events/x", proxy.addr());
    let datas = [
        json_data(1, 30),
        json_data(2, 30),
        "small".to_owned(),
        json_data(3, 200),
    ];
    let mut peer = make(&url, datas.len());
    let extensions = peer.extensions().await;
    for part in want_extension {
        assert!(extensions.contains(part), "{extensions:?} lacks {part}");
    }
    upstream.wait_connections(1).await;
    for data in &datas {
        upstream.publish(data.clone());
    }
    for (i, data) in datas.iter().enumerate() {
        let got: Value = serde_json::from_str(&peer.message().await).unwrap();
        assert_eq!(got, envelope(i + 1, data));
    }
    assert_eq!(peer.line().await, "sent");
    let want = format!("client says {}", "hello ".repeat(CLIENT_TEXT_REPEAT));
    for _ in 0..sends {
        assert_eq!(received(&mut messages).await, want);
    }
    let (deflated, original, plain) = deflated_bytes(&proxy);
    assert!(
        deflated > 0.0 && deflated * 3.0 < original,
        "{deflated} of {original}"
    );
    // The small event went uncompressed.
    assert!(plain > 0.0 && plain < 100.0, "{plain}");
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_ws_handshakes_total{extension=\"permessage-deflate\",subprotocol=\"none\"}"
        ),
        1.0
    );
    peer.finish().await;
}

#[tokio::test]
async fn python_websockets_with_compression() {
    compressing_peer(
        |url, n| Peer::python(url, n, None),
        &["permessage-deflate", "server_no_context_takeover"],
        1,
    )
    .await;
}

#[tokio::test]
async fn node_ws_with_per_message_deflate() {
    compressing_peer(
        Peer::node,
        &["permessage-deflate", "server_no_context_takeover"],
        2,
    )
    .await;
}

/// `server_max_window_bits=10`: an event whose payload fits 1 KiB goes compressed, a larger one plain; the
/// client's own window of 10 bits is inflated as it is.
#[tokio::test]
async fn python_websockets_with_window_bits() {
    let upstream = SseUpstream::start(true).await;
    let (app, mut messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ compression: deflate }")).await;
    let url = format!("ws://{}/events/x", proxy.addr());
    let datas = [json_data(1, 15), json_data(2, 100)];
    assert!(envelope(1, &datas[0]).to_string().len() <= 1024);
    assert!(datas[1].len() > 1024);
    let mut peer = Peer::python(&url, datas.len(), Some(10));
    let extensions = peer.extensions().await;
    assert!(
        extensions.contains("server_max_window_bits=10"),
        "{extensions}"
    );
    upstream.wait_connections(1).await;
    for data in &datas {
        upstream.publish(data.clone());
    }
    for (i, data) in datas.iter().enumerate() {
        let got: Value = serde_json::from_str(&peer.message().await).unwrap();
        assert_eq!(got, envelope(i + 1, data));
    }
    assert_eq!(peer.line().await, "sent");
    assert!(
        received(&mut messages)
            .await
            .starts_with("client says hello")
    );
    let (deflated, original, plain) = deflated_bytes(&proxy);
    let small = envelope(1, &datas[0]).to_string().len() as f64;
    assert_eq!(original, small);
    assert!(deflated > 0.0 && deflated < small);
    assert_eq!(plain, envelope(2, &datas[1]).to_string().len() as f64);
    peer.finish().await;
}

/// A client that does not offer the extension gets plain frames (tungstenite would fail on RSV1).
#[tokio::test]
async fn tungstenite_without_the_extension_gets_plain_frames() {
    let upstream = SseUpstream::start(true).await;
    let (app, _messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ compression: deflate }")).await;
    let url = format!("ws://{}/events/x", proxy.addr());
    let (mut ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(response.headers().get("sec-websocket-extensions").is_none());
    upstream.wait_connections(1).await;
    let data = json_data(1, 30);
    upstream.publish(data.clone());
    let got = match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(got, envelope(1, &data));
    assert_eq!(deflated_bytes(&proxy).0, 0.0);
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_ws_handshakes_total{extension=\"none\",subprotocol=\"none\"}"
        ),
        1.0
    );
}

/// With `compression: off` an offer is ignored.
#[tokio::test]
async fn compression_off_ignores_the_offer() {
    let upstream = SseUpstream::start(true).await;
    let (app, _messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ format: envelope }")).await;
    let (_tcp, head) = raw_handshake(
        proxy.addr(),
        "/events/x",
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
}

/// HTTP/2 extended CONNECT (RFC 8441): the same negotiation, and the first frame arrives compressed.
#[tokio::test]
async fn http2_extended_connect_negotiates_and_compresses() {
    let upstream = SseUpstream::start(true).await;
    let (app, _messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ compression: deflate }")).await;
    let mut client = H2Client::connect(proxy.addr()).await;
    let (status, fields, io) = client
        .tunnel(
            "/events/x",
            &[(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            )],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        fields["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    let mut io = io.unwrap();
    upstream.wait_connections(1).await;
    let data = json_data(1, 30);
    upstream.publish(data.clone());
    let (first, payload) = read_frame(&mut io).await;
    assert_eq!(first, 0xc1, "FIN, RSV1, text");
    let got: Value = serde_json::from_slice(&inflate(&payload)).unwrap();
    assert_eq!(got, envelope(1, &data));
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_ws_handshakes_total{extension=\"permessage-deflate\",subprotocol=\"none\"}"
        ),
        1.0
    );
}

/// A compressed client message inflating past `client_messages.max_bytes` gets 1009, and nothing is forwarded.
#[tokio::test]
async fn deflate_bomb_gets_1009() {
    let upstream = SseUpstream::start(true).await;
    let (app, mut messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ compression: deflate }")).await;
    let (mut tcp, head) = raw_handshake(
        proxy.addr(),
        "/events/x",
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
    )
    .await;
    assert!(
        head.contains("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{head}"
    );
    // 16 MiB of zeros in 16 KiB: within max_bytes compressed, 256 times over it inflated.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    tcp.write_all(&client_frame(0xc1, &bomb)).await.unwrap();
    let (first, payload) = read_frame(&mut tcp).await;
    assert_eq!(first, 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    assert!(messages.try_recv().is_err());
    assert_eq!(
        metric(&proxy, "pushbridge_client_messages_total{result=\"error\"}"),
        1.0
    );
}

/// A compressed message within the bound is inflated; a fresh window each time (client_no_context_takeover).
#[tokio::test]
async fn raw_compressed_messages_are_inflated() {
    let upstream = SseUpstream::start(true).await;
    let (app, mut messages) = message_app().await;
    let proxy = proxy::start(&config(upstream.addr, app, "{ compression: deflate }")).await;
    let (mut tcp, _) = raw_handshake(
        proxy.addr(),
        "/events/x",
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
    )
    .await;
    for text in ["first message, first message", "second message"] {
        tcp.write_all(&client_frame(0xc1, &deflate(text.as_bytes())))
            .await
            .unwrap();
        assert_eq!(received(&mut messages).await, text);
    }
    // Uncompressed messages still pass.
    tcp.write_all(&client_frame(0x81, b"plain")).await.unwrap();
    assert_eq!(received(&mut messages).await, "plain");
    // RSV1 on a control frame is a protocol error (RFC 7692 §6.1).
    tcp.write_all(&client_frame(0xc9, b"")).await.unwrap();
    let (first, payload) = read_frame(&mut tcp).await;
    assert_eq!(first, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}

#[tokio::test]
async fn subprotocol_selection() {
    let upstream = SseUpstream::start(true).await;
    let (app, _messages) = message_app().await;
    let ws = "{ format: envelope, subprotocols: { app.data: data, app.env: envelope } }";
    let proxy = proxy::start(&config(upstream.addr, app, ws)).await;
    let addr = proxy.addr();
    let open = async |offer: &str| {
        raw_handshake(
            addr,
            "/events/x",
            &format!("Sec-WebSocket-Protocol: {offer}\r\n"),
        )
        .await
    };
    let (mut data_client, head) = open("chat, app.data, app.env").await;
    assert!(
        head.contains("\r\nsec-websocket-protocol: app.data\r\n"),
        "{head}"
    );
    let (mut unknown_client, head) = open("chat, superchat").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    let (mut builtin_client, head) = open("pushbridge.envelope.v1").await;
    assert!(
        head.contains("\r\nsec-websocket-protocol: pushbridge.envelope.v1\r\n"),
        "{head}"
    );

    // tokio-tungstenite checks the echo itself.
    let mut request = format!("ws://{addr}/events/x")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "pushbridge.data.v1".parse().unwrap(),
    );
    let (mut tungstenite, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "pushbridge.data.v1"
    );

    upstream.wait_connections(1).await;
    upstream.publish("hello");
    assert_eq!(read_frame(&mut data_client).await.1, b"hello");
    let want = envelope(1, "hello");
    for client in [&mut unknown_client, &mut builtin_client] {
        let got: Value = serde_json::from_slice(&read_frame(client).await.1).unwrap();
        assert_eq!(got, want);
    }
    match tokio::time::timeout(WAIT, tungstenite.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "hello"),
        other => panic!("{other:?}"),
    }
    for (subprotocol, n) in [
        ("app.data", 1.0),
        ("none", 1.0),
        ("pushbridge.envelope.v1", 1.0),
        ("pushbridge.data.v1", 1.0),
    ] {
        assert_eq!(
            metric(
                &proxy,
                &format!(
                    "pushbridge_ws_handshakes_total{{extension=\"none\",subprotocol=\"{subprotocol}\"}}"
                )
            ),
            n
        );
    }
}

/// An HTTP/1.1 handshake with `extra` header lines; the connection and the response head (lower-cased names).
async fn raw_handshake(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte: nothing after the head is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, tcp.read_u8())
            .await
            .expect("head in time")
            .expect("head");
        head.push(byte);
    }
    let head = String::from_utf8(head).unwrap();
    let lowered = head
        .lines()
        .map(|line| match line.split_once(':') {
            Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    (tcp, lowered)
}

/// The next server frame (unmasked, not fragmented): its first byte and payload.
async fn read_frame<IO: AsyncRead + Unpin>(io: &mut IO) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, async {
        let first = io.read_u8().await.unwrap();
        let len = match io.read_u8().await.unwrap() {
            126 => u64::from(io.read_u16().await.unwrap()),
            127 => io.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        io.read_exact(&mut payload).await.unwrap();
        (first, payload)
    })
    .await
    .expect("frame in time")
}

/// A masked client frame with first byte `first`.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend((n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend((n as u64).to_be_bytes());
        }
    }
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Raw deflate, sync-flushed, without the trailing `00 00 ff ff` (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    Compress::new(Compression::default(), false)
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend([0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}
