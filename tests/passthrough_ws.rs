//! WebSocket pass-through: an application with its own WebSocket endpoints (tests/support/ws_app.rs) behind the
//! real server, reached over HTTP/1.1 Upgrade and HTTP/2 extended CONNECT (RFC 8441): echo, subprotocol, the
//! app's refusal, close codes both ways, drain (1001), idle timeout, message size, and `max_connections`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use support::client::{Proto, WAIT, connect, empty, eventually};
use support::h2ws::H2Client;
use support::proxy::{self, TestProxy};
use support::ws_app::WsApp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

async fn start(app: SocketAddr, extra: &str) -> TestProxy {
    proxy::start(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{app}\"\n{extra}"
    ))
    .await
}

/// Opens an HTTP/1.1 WebSocket through the proxy with extra request headers.
async fn open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(WebSocketStream<TcpStream>, HeaderMap), WsError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("handshake in time")?;
    Ok((ws, response.headers().clone()))
}

/// The next data or close message, skipping pings and pongs.
async fn next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return message,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(ws).await, Message::text("hello"));
    let binary = Bytes::from_static(&[0, 1, 2, 255]);
    ws.send(Message::Binary(binary.clone())).await.unwrap();
    assert_eq!(next(ws).await, Message::Binary(binary));
}

fn close_of(message: Message) -> (CloseCode, String) {
    match message {
        Message::Close(Some(frame)) => (frame.code, frame.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let text = String::from_utf8(proxy.running().metrics().render()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn http1_upgrade_is_relayed_with_subprotocol_and_without_extensions() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "").await;
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_open{http_version=\"http1\"}"
        ),
        0.0
    );
    let (mut ws, headers) = open(
        proxy.addr(),
        "/chat?room=1",
        &[
            ("sec-websocket-protocol", "chat.v2, chat.v1"),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ],
    )
    .await
    .expect("the app's endpoint opens through the proxy");
    assert_eq!(headers["sec-websocket-protocol"], "chat.v1");
    assert_eq!(headers["x-app"], "ws-echo");
    assert!(!headers.contains_key("sec-websocket-extensions"));
    let (path, seen) = app.opened().await;
    assert_eq!(path, "/chat");
    assert_eq!(seen["sec-websocket-protocol"], "chat.v2, chat.v1");
    assert!(!seen.contains_key("sec-websocket-extensions"));
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");

    echo(&mut ws).await;
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_open{http_version=\"http1\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_requests_total{class=\"1xx\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_total{http_version=\"http1\"}"
        ),
        1.0
    );

    // The client's close code reaches the app; the client gets its answer and the connection ends.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    assert_eq!(app.closed().await, Some(CloseCode::Normal));
    assert!(matches!(next(&mut ws).await, Message::Close(_)));
    eventually("session counted closed", || async {
        metric(
            &proxy,
            "pushbridge_passthrough_websocket_closes_total{reason=\"client\"}",
        ) == 1.0
            && metric(
                &proxy,
                "pushbridge_passthrough_websockets_open{http_version=\"http1\"}",
            ) == 0.0
    })
    .await;
}

#[tokio::test]
async fn the_apps_close_code_reaches_the_client() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "").await;
    let (mut ws, _) = open(proxy.addr(), "/chat", &[]).await.unwrap();
    app.opened().await;
    ws.send(Message::text("close-me")).await.unwrap();
    assert_eq!(
        close_of(next(&mut ws).await),
        (CloseCode::Library(4000), "bye".to_owned())
    );
    // The client's answer goes back to the app.
    assert_eq!(app.closed().await, Some(CloseCode::Library(4000)));
    eventually("counted as closed by the app", || async {
        metric(
            &proxy,
            "pushbridge_passthrough_websocket_closes_total{reason=\"app\"}",
        ) == 1.0
    })
    .await;
}

#[tokio::test]
async fn http2_extended_connect_is_relayed_as_an_http1_upgrade() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "").await;
    let mut client = H2Client::connect(proxy.addr()).await;
    let (status, ws) = client.websocket("/h2chat").await;
    assert_eq!(status, StatusCode::OK);
    let mut ws = ws.unwrap();
    let (path, seen) = app.opened().await;
    assert_eq!(path, "/h2chat");
    assert_eq!(seen["upgrade"], "websocket");
    assert_eq!(seen["sec-websocket-version"], "13");
    echo(&mut ws).await;
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_open{http_version=\"http2\"}"
        ),
        1.0
    );
    ws.close(None).await.unwrap();
    assert!(matches!(app.closed().await, None | Some(CloseCode::Status)));
    eventually("h2 session closed", || async {
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_open{http_version=\"http2\"}",
        ) == 0.0
    })
    .await;
}

#[tokio::test]
async fn the_apps_refusal_is_passed_on() {
    let app = WsApp::start().await;
    let proxy = start(app.addr, "").await;
    // tungstenite's client does not decode a chunked refusal body: use hyper's for the HTTP/1.1 handshake.
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    let req = http::Request::get("/refuse/here")
        .header("host", "app")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(empty())
        .unwrap();
    let response = sender.send(req).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(body, "no websocket here");
    let mut client = H2Client::connect(proxy.addr()).await;
    let (status, ws) = client.websocket("/refuse/h2").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(ws.is_none());
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_total{http_version=\"http1\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn drain_closes_both_sides_with_1001() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "shutdown: { grace: 5s }\n").await;
    let (mut ws, _) = open(proxy.addr(), "/chat", &[]).await.unwrap();
    let mut client = H2Client::connect(proxy.addr()).await;
    let (_, h2) = client.websocket("/chat2").await;
    let mut h2 = h2.unwrap();
    app.opened().await;
    app.opened().await;
    echo(&mut ws).await;

    let drained = tokio::spawn(proxy.shutdown());
    assert_eq!(close_of(next(&mut ws).await).0, CloseCode::Away);
    assert_eq!(close_of(next(&mut h2).await).0, CloseCode::Away);
    assert_eq!(app.closed().await, Some(CloseCode::Away));
    assert_eq!(app.closed().await, Some(CloseCode::Away));
    // tungstenite answers the close frames; the drain then finishes well within the grace period.
    let _ = ws.next().await;
    let _ = h2.next().await;
    let finished = tokio::time::timeout(WAIT, drained)
        .await
        .expect("drained in time")
        .unwrap();
    assert!(
        finished,
        "drain waited for the sessions past the grace period"
    );
}

#[tokio::test]
async fn an_idle_session_is_closed_with_1001() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "  websocket: { idle_timeout: 300ms }\n").await;
    let (mut ws, _) = open(proxy.addr(), "/chat", &[]).await.unwrap();
    app.opened().await;
    echo(&mut ws).await;
    let started = std::time::Instant::now();
    assert_eq!(
        close_of(next(&mut ws).await),
        (CloseCode::Away, "idle timeout".to_owned())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(app.closed().await, Some(CloseCode::Away));
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websocket_closes_total{reason=\"idle\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn an_oversize_message_closes_its_sender_with_1009() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "  websocket: { max_message: 1KiB }\n").await;
    let (mut ws, _) = open(proxy.addr(), "/chat", &[]).await.unwrap();
    app.opened().await;
    ws.send(Message::text("x".repeat(1000))).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x".repeat(1000)));
    ws.send(Message::text("x".repeat(2048))).await.unwrap();
    assert_eq!(close_of(next(&mut ws).await).0, CloseCode::Size);
    assert_eq!(app.closed().await, Some(CloseCode::Away));
    assert_eq!(
        metric(
            &proxy,
            "pushbridge_passthrough_websocket_closes_total{reason=\"too_big\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_session_holds_its_connection_slot() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "limits: { max_connections: 1 }\n").await;
    let addr = proxy.addr();
    let (mut ws, _) = open(addr, "/chat", &[]).await.unwrap();
    app.opened().await;
    // The upgraded session keeps the only slot: a second connection is accepted by the kernel but not served.
    let waiting = tokio::spawn(async move {
        let mut sender = connect(addr, Proto::H1).await;
        let req = http::Request::get("/plain")
            .header("host", "app")
            .body(empty())
            .unwrap();
        sender.send(req).await.status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "served past max_connections: 1 while a WebSocket was open"
    );
    ws.close(None).await.unwrap();
    let status = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("served once the session ended")
        .unwrap();
    // The app has no plain HTTP endpoint: tungstenite refuses a non-WebSocket request.
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
}

#[tokio::test]
async fn sessions_over_max_sessions_are_refused_with_503() {
    let mut app = WsApp::start().await;
    let proxy = start(app.addr, "  websocket: { max_sessions: 1 }\n").await;
    // Over HTTP/2 many sessions share one connection (one `max_connections` slot): `max_sessions` bounds them.
    let mut client = H2Client::connect(proxy.addr()).await;
    let (status, first) = client.websocket("/one").await;
    assert_eq!(status, StatusCode::OK);
    let mut first = first.unwrap();
    app.opened().await;
    let (status, second) = client.websocket("/two").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.is_none());
    match open(proxy.addr(), "/three", &[]).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()["retry-after"], "5");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert_eq!(
        metric(&proxy, "pushbridge_passthrough_websocket_refusals_total"),
        2.0
    );
    echo(&mut first).await;
    first.close(None).await.unwrap();
    app.closed().await;
    eventually("the slot is free again", || async {
        metric(
            &proxy,
            "pushbridge_passthrough_websockets_open{http_version=\"http2\"}",
        ) == 0.0
    })
    .await;
    let (mut again, _) = open(proxy.addr(), "/four", &[])
        .await
        .expect("a freed slot is reused");
    echo(&mut again).await;
}

#[tokio::test]
async fn an_unreachable_app_is_502_for_both_handshakes() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = start(closed, "").await;
    match open(proxy.addr(), "/chat", &[]).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_GATEWAY),
        other => panic!("expected 502, got {other:?}"),
    }
    let mut client = H2Client::connect(proxy.addr()).await;
    let (status, ws) = client.websocket("/chat").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(ws.is_none());
}
