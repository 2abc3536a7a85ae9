//! `ws.subprotocols_upstream: pass` on the real server: a Python `websockets` application (third-party server)
//! behind a per-client `kind: ws` route gets the client's `Sec-WebSocket-Protocol` offer and its choice comes back
//! in the client's 101 (HTTP/1.1, tokio-tungstenite on a raw socket) or 200 (HTTP/2 extended CONNECT): a name it
//! picks, none, a name the client did not offer (502, counted), a refusal (its 403), an unreachable application
//! (502), an offer that cannot be passed (400), a reconnection that selects another name (failed, counted, the
//! client gets nothing under it); and `pushbridge check` refusing `pass` where it cannot work. Needs python3 with `websockets` (`.ci/test`).

mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use futures_util::StreamExt;
use support::client::WAIT;
use support::feeds::metric;
use support::h2ws::H2Client;
use support::proxy;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The Python application and its output lines.
struct App {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

impl App {
    async fn start() -> App {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/ws_pick_upstream.py"
        );
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut app = App {
            _child: child,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let port = app.line().await;
        let port: u16 = port
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a port line: {port}"));
        app.addr.set_port(port);
        app
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("application output in time")
            .unwrap()
            .expect("application running (python3 websockets: see .ci/test)")
    }

    /// The offer the application saw on its next handshake.
    async fn offer(&mut self) -> String {
        let line = self.line().await;
        line.strip_prefix("offer ")
            .unwrap_or_else(|| panic!("not an offer line: {line}"))
            .to_owned()
    }
}

fn config(app: SocketAddr) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - path: /chat/{{channel}}
    mode: per-client
    transports: [ws]
    upstream:
      kind: ws
      url: "ws://{app}/app/{{channel}}"
      connect_timeout: 5s
      reconnect: {{ initial: 10ms, max: 50ms }}
    ws: {{ format: data, subprotocols_upstream: pass }}
  - path: /dead/{{channel}}
    mode: per-client
    transports: [ws]
    upstream: {{ kind: ws, url: "ws://127.0.0.1:1/{{channel}}" }}
    ws: {{ subprotocols_upstream: pass }}
"#
    )
}

/// An HTTP/1.1 handshake on a raw socket (tungstenite's client would fail a 101 that selects none of the offered
/// names, which RFC 6455 allows): the status, the `Sec-WebSocket-Protocol` answered and, on 101, the WebSocket.
async fn handshake(
    addr: SocketAddr,
    path: &str,
    offer: Option<&str>,
) -> (u16, Option<String>, Option<WebSocketStream<TcpStream>>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let offer = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Protocol: {o}\r\n")
    });
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("answer in time")
            .unwrap();
        assert_eq!(n, 1, "closed before the end of the head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let protocol = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-protocol")
            .then(|| value.trim().to_owned())
    });
    let ws = if status == 101 {
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        Some(WebSocketStream::from_raw_socket(tcp, Role::Client, None).await)
    } else {
        None
    };
    (status, protocol, ws)
}

async fn first_text<S>(ws: &mut WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

async fn failures(admin: SocketAddr, reason: &str) -> f64 {
    metric(
        admin,
        &format!("pushbridge_ws_subprotocol_relay_failures_total{{reason=\"{reason}\"}}"),
    )
    .await
}

#[tokio::test]
async fn the_application_chooses_and_the_client_gets_its_choice() {
    let mut app = App::start().await;
    let proxy = proxy::start(&config(app.addr)).await;
    let addr = proxy.addr();

    // A name the client offered: relayed.
    let (status, protocol, ws) = handshake(addr, "/chat/pick", Some("a.v1, b.v2")).await;
    assert_eq!(app.offer().await, "a.v1, b.v2");
    assert_eq!((status, protocol.as_deref()), (101, Some("b.v2")));
    assert_eq!(first_text(&mut ws.unwrap()).await, "hello b.v2");

    // None of them: no header.
    let (status, protocol, ws) = handshake(addr, "/chat/none", Some("a.v1")).await;
    assert_eq!(app.offer().await, "a.v1");
    assert_eq!((status, protocol), (101, None));
    assert_eq!(first_text(&mut ws.unwrap()).await, "hello -");

    // No offer: the application's handshake has none either.
    let (status, protocol, ws) = handshake(addr, "/chat/pick", None).await;
    assert_eq!(app.offer().await, "-");
    assert_eq!((status, protocol), (101, None));
    assert_eq!(first_text(&mut ws.unwrap()).await, "hello -");

    // A name the client did not offer: fail closed.
    let (status, protocol, ws) = handshake(addr, "/chat/rogue", Some("a.v1")).await;
    assert_eq!(app.offer().await, "a.v1");
    assert_eq!((status, protocol), (502, None));
    assert!(ws.is_none());
    assert_eq!(failures(proxy.admin(), "unoffered").await, 1.0);

    // The application refuses: its 4xx.
    let (status, _, _) = handshake(addr, "/chat/refuse", Some("a.v1")).await;
    assert_eq!(app.offer().await, "a.v1");
    assert_eq!(status, 403);
    assert_eq!(failures(proxy.admin(), "upstream").await, 1.0);

    // An application that cannot be reached.
    let (status, _, _) = handshake(addr, "/dead/x", Some("a.v1")).await;
    assert_eq!(status, 502);
    assert_eq!(failures(proxy.admin(), "upstream").await, 2.0);

    // An offer that is not a list of tokens is not passed on.
    let (status, _, _) = handshake(addr, "/chat/pick", Some("a b")).await;
    assert_eq!(status, 400);

    let handshakes = metric(
        proxy.admin(),
        "pushbridge_ws_handshakes_total{extension=\"none\",subprotocol=\"passed\"}",
    )
    .await;
    assert_eq!(handshakes, 1.0);

    // HTTP/2 extended CONNECT (RFC 8441) relays the same way.
    let mut client = H2Client::connect(addr).await;
    let (status, fields, io) = client
        .tunnel("/chat/pick", &[("sec-websocket-protocol", "x.v1")])
        .await;
    assert_eq!(app.offer().await, "x.v1");
    assert_eq!(status, 200);
    assert_eq!(fields["sec-websocket-protocol"], "x.v1");
    let mut ws = WebSocketStream::from_raw_socket(io.unwrap(), Role::Client, None).await;
    assert_eq!(first_text(&mut ws).await, "hello x.v1");

    // A reconnection that selects another name fails before it delivers anything (and is retried).
    let (status, protocol, ws) = handshake(addr, "/chat/flip", Some("a.v1, b.v2")).await;
    assert_eq!((status, protocol.as_deref()), (101, Some("a.v1")));
    let mut ws = ws.unwrap();
    assert_eq!(first_text(&mut ws).await, "hello a.v1");
    assert_eq!(app.offer().await, "a.v1, b.v2");
    assert_eq!(
        app.offer().await,
        "a.v1, b.v2",
        "reconnected with the same offer"
    );
    support::client::eventually("the change counted", || async {
        failures(proxy.admin(), "changed").await >= 1.0
    })
    .await;
}

#[test]
fn check_refuses_pass_where_the_application_cannot_choose() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "listen:\n  - address: 127.0.0.1:0\nstreams:\n  - path: /e/{c}\n    upstream: { url: \"http://a/{c}\" }\n    ws: { subprotocols_upstream: pass, subprotocols: { a.v1: data } }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushbridge"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = path.display();
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    for want in [
        format!("{file}:6:34: streams[0].ws.subprotocols_upstream: pass needs mode: per-client"),
        format!("{file}:6:34: streams[0].ws.subprotocols_upstream: pass needs upstream.kind: ws"),
        format!("{file}:6:54: streams[0].ws.subprotocols: cannot be used with"),
    ] {
        assert!(stderr.contains(&want), "{want}\n{stderr}");
    }
}
