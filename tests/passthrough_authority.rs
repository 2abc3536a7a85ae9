//! The authority an application receives through pass-through (RFC 9113 §8.3.1): over HTTP/2 (`protocol: h2c`,
//! and `auto` when ALPN picks `h2`) one `:authority`, the Host the client sent (its `:authority` over HTTP/2, its
//! `Host` over HTTP/1.1), and no `host` field; over HTTP/1.1 the client's Host as `Host`. The WebSocket relay (always
//! HTTP/1.1) keeps the client's Host too. Recording applications on 127.0.0.1:0, the real binary in front.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Version};
use http_body_util::BodyExt;
use serde_json::Value;
use support::binary::{self, Started};
use support::certs::TestCa;
use support::client::{Proto, Sender, WAIT, connect, empty};
use support::recorder;
use support::ws_app::WsApp;

/// Sends GET `path` claiming `host` (HTTP/1.1 `Host`, HTTP/2 `:authority`); returns what the application saw.
async fn seen(proxy: &Started, proto: Proto, host: &str, path: &str) -> Value {
    let mut sender: Sender = connect(proxy.addr(), proto).await;
    let req = match proto {
        Proto::H1 => Request::get(path).header("host", host),
        Proto::H2 => Request::get(format!("http://{host}{path}")).version(Version::HTTP_2),
    };
    let response = sender.send(req.body(empty()).unwrap()).await;
    assert_eq!(response.status(), 200, "{proto:?} {path}");
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&body).expect("JSON")
}

/// Over HTTP/2 the app gets the client's Host as `:authority` and no `host`; over HTTP/1.1 as `Host`.
fn assert_authority(got: &Value, host: &str, http2: bool, what: &str) {
    if http2 {
        assert_eq!(got["version"], "HTTP/2.0", "{what}");
        assert_eq!(got["authority"], host, "{what}: :authority");
        assert!(
            recorder::lines(got, "host").is_empty(),
            "{what}: no host field next to :authority: {got}"
        );
    } else {
        assert_eq!(got["version"], "HTTP/1.1", "{what}");
        assert_eq!(recorder::lines(got, "host"), [host], "{what}: Host");
    }
    assert_eq!(recorder::lines(got, "x-forwarded-host"), [host], "{what}");
}

#[tokio::test]
async fn h2c_apps_get_the_clients_host_as_the_one_authority() {
    let default = recorder::plain().await;
    let routed = recorder::plain().await;
    let http1 = recorder::plain().await;
    let proxy = binary::started(&format!(
        r#"listen:
  - address: "127.0.0.1:0"
passthrough:
  upstream: "http://{default}"
  protocol: h2c
  routes:
    - prefix: /routed
      upstream: "http://{routed}/base"
      protocol: h2c
    - prefix: /plain
      upstream: "http://{http1}"
"#
    ));
    for proto in [Proto::H1, Proto::H2] {
        let host = "app.example:8443";
        let got = seen(&proxy, proto, host, "/x?q=1").await;
        assert_authority(&got, host, true, &format!("default h2c, {proto:?} client"));
        assert_eq!(got["target"], "/x?q=1");
        let got = seen(&proxy, proto, host, "/routed/y").await;
        assert_authority(&got, host, true, &format!("routed h2c, {proto:?} client"));
        assert_eq!(got["target"], "/base/routed/y");
        let got = seen(&proxy, proto, host, "/plain/z").await;
        assert_authority(&got, host, false, &format!("HTTP/1.1, {proto:?} client"));
    }
}

/// A proxy whose upstream is `https://localhost:<app>` with `protocol: auto`, trusting `ca`.
async fn auto_proxy(ca: &TestCa, app: std::net::SocketAddr) -> (Started, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let proxy = binary::started(&format!(
        r#"listen:
  - address: "127.0.0.1:0"
passthrough:
  upstream: "https://localhost:{}"
  protocol: auto
  ca_file: "{}"
"#,
        app.port(),
        ca_file.display()
    ));
    (proxy, dir)
}

#[tokio::test]
async fn an_alpn_h2_app_gets_the_clients_host_as_the_one_authority() {
    let ca = TestCa::new();
    let app = recorder::tls(&ca, &[b"h2", b"http/1.1"]).await;
    let (proxy, _dir) = auto_proxy(&ca, app).await;
    for proto in [Proto::H1, Proto::H2] {
        let got = seen(&proxy, proto, "www.example", "/a").await;
        assert_authority(
            &got,
            "www.example",
            true,
            &format!("auto, {proto:?} client"),
        );
    }
}

#[tokio::test]
async fn an_alpn_http1_app_gets_the_clients_host() {
    let ca = TestCa::new();
    let app = recorder::tls(&ca, &[b"http/1.1"]).await;
    let (proxy, _dir) = auto_proxy(&ca, app).await;
    // The first request learns the app's choice, the next ones use it.
    for proto in [Proto::H1, Proto::H2, Proto::H1] {
        let got = seen(&proxy, proto, "www.example", "/a").await;
        assert_authority(
            &got,
            "www.example",
            false,
            &format!("auto, {proto:?} client"),
        );
    }
}

#[tokio::test]
async fn a_host_that_is_no_authority_is_400_for_an_h2c_app() {
    let app = recorder::plain().await;
    let proxy = binary::started(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{app}\"\n  protocol: h2c\n"
    ));
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    let req = Request::get("/x")
        .header("host", "a b")
        .body(empty())
        .unwrap();
    let response = sender.send(req).await;
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "bad request: invalid Host\n");
}

#[tokio::test]
async fn the_websocket_relay_keeps_the_clients_host() {
    let mut app = WsApp::start().await;
    let proxy = binary::started(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{}\"\n  protocol: h2c\n",
        app.addr
    ));
    let tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let request = Request::get(format!("ws://{}/chat", proxy.addr()))
        .header("host", "chat.example")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (_ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let (_, headers) = app.opened().await;
    let hosts: Vec<_> = headers.get_all("host").iter().collect();
    assert_eq!(hosts, ["chat.example"]);
}

/// An h2c app (the `h2` crate) that answers one request per connection, then closes it with GOAWAY; counts
/// connections.
async fn one_request_per_connection() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                if let Some(Ok((request, mut respond))) = connection.accept().await {
                    let authority = request.uri().authority().map(|a| a.to_string());
                    let response = http::Response::new(());
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let text = authority.unwrap_or_default();
                        let _ = body.send_data(bytes::Bytes::from(text), true);
                    }
                }
                connection.graceful_shutdown();
                let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_closed_h2c_connection_is_replaced() {
    let (app, connections) = one_request_per_connection().await;
    let proxy = binary::started(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{app}\"\n  protocol: h2c\n"
    ));
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    for n in 1..=3 {
        let req = Request::get("/x")
            .header("host", "app.example")
            .body(empty())
            .unwrap();
        let response = sender.send(req).await;
        assert_eq!(response.status(), 200, "request {n}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "app.example", "request {n}");
        assert_eq!(connections.load(Ordering::SeqCst), n);
    }
}
