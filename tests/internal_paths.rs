//! Issue 16, item 1, on the real binary: the headers pushbridge sets itself (`X-Pushbridge-*`, `X-Original-URI`,
//! `X-Original-Method`) never reach the application from a client, on any path (pass-through over HTTP/1.1 and
//! h2c, the pass-through WebSocket handshake, per-client stream upstreams on the direct and the hyper path, the
//! auth check, client messages); and the application's internal URLs (stream upstreams, `client_messages.forward`,
//! `auth.check`) on the pass-through origin are refused through the public listener, in every spelling.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use support::binary::{self, Binary};
use support::client::{Proto, ReqBody, connect, empty};

/// Every value a forged header carries, so any leak is found by this word.
const FORGED: &str = "forged";

/// One request the application received: method, path and query, header fields.
type Seen = (Method, String, HeaderMap);

/// The application: records every request; streams one SSE event on `/internal/events/*` and `/internal/pc/*`,
/// answers `/internal/auth` 200 and `/internal/messages` 204, and everything else 200 `app`.
async fn app() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = support::app::serve(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_owned();
            let target = req
                .uri()
                .path_and_query()
                .map_or(path.clone(), |p| p.as_str().to_owned());
            log.lock()
                .unwrap()
                .push((req.method().clone(), target, req.headers().clone()));
            let body: BoxBody<Bytes, Infallible> =
                if path.starts_with("/internal/events/") || path.starts_with("/internal/pc/") {
                    let first = stream::once(async {
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"data: hi\n\n")))
                    });
                    BodyExt::boxed(StreamBody::new(first.chain(stream::pending())))
                } else {
                    Full::new(Bytes::from_static(b"app")).boxed()
                };
            let status = if path == "/internal/messages" {
                204
            } else {
                200
            };
            let content_type = if status == 200 && path.starts_with("/internal/") {
                "text/event-stream"
            } else {
                "text/plain"
            };
            Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(body)
                .unwrap()
        }
    })
    .await;
    (addr, seen)
}

/// The layout issue 16 found unsafe: stream upstream, message forward and auth check on the pass-through origin.
fn yaml(app: SocketAddr, passthrough_extra: &str) -> String {
    let forward = "[authorization, x-pushbridge-params, x-pushbridge-stream, x-pushbridge-transport, x-pushbridge-foo, x-original-uri, x-original-method]";
    format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
passthrough:
  upstream: "http://{app}"
  routes: [{{ prefix: /h2, upstream: "http://{app}", protocol: h2c }}]
{passthrough_extra}
streams:
  - name: pc
    path: /pc/{{channel}}
    mode: per-client
    transports: [sse]
    upstream: {{ url: "http://{app}/internal/pc/{{channel}}" }}
    auth: {{ check: "http://localhost:{port}/internal/auth", forward_headers: {forward} }}
  - name: chat
    path: /chat/{{room}}
    upstream: {{ url: "http://{app}/internal/events/{{room}}" }}
    client_messages: {{ forward: "http://{app}/internal/messages" }}
    auth: {{ forward_headers: {forward} }}
"#,
        port = app.port()
    )
}

fn start(yaml: &str) -> (Binary, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let binary = binary::start(dir.path(), yaml, 1, true);
    (binary, dir)
}

/// `builder` with every header pushbridge sets, forged.
fn forge(builder: http::request::Builder) -> http::request::Builder {
    builder
        .header("x-pushbridge-stream", FORGED)
        .header("x-pushbridge-params", "room=forged")
        .header("x-pushbridge-transport", FORGED)
        .header("x-pushbridge-foo", FORGED)
        .header("x-original-uri", "/forged")
        .header("x-original-method", FORGED)
        // CGI-style servers read `_` as `-` (HTTP_X_PUSHBRIDGE_STREAM).
        .header("x-pushbridge_stream", FORGED)
        .header("x-original_uri", "/forged")
}

/// A request for `path` (absolute for HTTP/2, origin-form with Host for HTTP/1.1).
fn request(addr: SocketAddr, method: Method, path: &str, proto: Proto) -> http::request::Builder {
    match proto {
        Proto::H2 => Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}")),
        Proto::H1 => Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string()),
    }
}

/// The requests the application received for `path` (without query).
fn received(seen: &Mutex<Vec<Seen>>, path: &str) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, target, _)| target.split('?').next() == Some(path))
        .cloned()
        .collect()
}

/// No pushbridge-owned header in `headers` carries a forged value, and none is repeated.
fn assert_clean(headers: &HeaderMap, what: &str) {
    for name in headers.keys() {
        let name = name.as_str();
        let dashed = name.replace('_', "-");
        if dashed.starts_with("x-pushbridge-") || dashed.starts_with("x-original-") {
            let values: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(values.len(), 1, "{what}: {name} repeated: {values:?}");
            let value = values[0].to_str().unwrap_or_default();
            assert!(!value.contains(FORGED), "{what}: {name}: {value}");
        }
    }
}

async fn send(addr: SocketAddr, proto: Proto, req: Request<ReqBody>) -> (u16, Bytes) {
    let mut sender = connect(addr, proto).await;
    let response = sender.send(req).await;
    let status = response.status().as_u16();
    // An event stream (an internal path that got through) never ends: its status is the answer.
    if response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream")
    {
        return (status, Bytes::new());
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[tokio::test]
async fn passthrough_drops_forged_pushbridge_headers() {
    let (app, seen) = app().await;
    let (proxy, _dir) = start(&yaml(app, ""));
    let addr = proxy.listen[0];
    let cases = [
        (Proto::H1, Method::GET, "/hello/h1"),
        (Proto::H1, Method::POST, "/hello/post"),
        (Proto::H2, Method::GET, "/hello/h2"),
        (Proto::H1, Method::GET, "/h2/h1-client"),
        (Proto::H2, Method::GET, "/h2/h2-client"),
    ];
    for (proto, method, path) in cases {
        let req = forge(request(addr, method, path, proto))
            .body(empty())
            .unwrap();
        let (status, _) = send(addr, proto, req).await;
        assert_eq!(status, 200, "{path}");
        let got = received(&seen, path);
        assert_eq!(got.len(), 1, "{path}");
        assert_clean(&got[0].2, path);
    }
    // The WebSocket handshake (the application declines it; its answer is passed on).
    let req = forge(request(addr, Method::GET, "/ws", Proto::H1))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(empty())
        .unwrap();
    let (status, _) = send(addr, Proto::H1, req).await;
    assert_eq!(status, 200);
    let got = received(&seen, "/ws");
    assert_eq!(got.len(), 1);
    assert_clean(&got[0].2, "websocket handshake");
    // Over HTTP/2 (RFC 8441): the application declines, so the client gets 502; what it received counts.
    let mut h2 = support::h2ws::H2Client::connect(addr).await;
    let forged = [
        ("x-pushbridge-params", "room=forged"),
        ("x-pushbridge-stream", FORGED),
        ("x-original-uri", "/forged"),
    ];
    h2.websocket_with("/ws2", &forged).await;
    let got = received(&seen, "/ws2");
    assert_eq!(got.len(), 1);
    assert_clean(&got[0].2, "HTTP/2 websocket handshake");
}

#[tokio::test]
async fn stream_requests_drop_forged_pushbridge_headers() {
    let (app, seen) = app().await;
    let (proxy, _dir) = start(&yaml(app, ""));
    let addr = proxy.listen[0];
    // HTTP/1.1 readers take the direct path, HTTP/2 ones hyper's.
    for (proto, channel) in [(Proto::H1, "h1"), (Proto::H2, "h2")] {
        let path = format!("/pc/{channel}");
        let req = forge(request(addr, Method::GET, &path, proto))
            .header("accept", "text/event-stream")
            .header("authorization", "Bearer real")
            .body(empty())
            .unwrap();
        let mut sender = connect(addr, proto).await;
        let response = sender.send(req).await;
        assert_eq!(response.status(), 200, "{path}");
        let mut events = support::client::SseClient::new(response);
        assert_eq!(events.next_event().await.unwrap().data, "hi");
        let upstream = received(&seen, &format!("/internal/pc/{channel}"));
        assert_eq!(upstream.len(), 1, "{path}");
        assert_clean(&upstream[0].2, "per-client upstream");
        assert_eq!(upstream[0].2["authorization"], "Bearer real");
        let checks: Vec<Seen> = received(&seen, "/internal/auth")
            .into_iter()
            .filter(|(_, _, h)| h.get("x-original-uri").is_some_and(|v| v == path.as_str()))
            .collect();
        assert_eq!(checks.len(), 1, "{path}");
        let check = &checks[0].2;
        assert_clean(check, "auth check");
        assert_eq!(check["x-pushbridge-stream"], "pc");
        assert_eq!(
            check["x-pushbridge-params"],
            format!("channel={channel}").as_str()
        );
        assert_eq!(check["x-original-method"], "GET");
    }
    // A client message: the room is the one posted to, whatever the client claims.
    for proto in [Proto::H1, Proto::H2] {
        let req = forge(request(addr, Method::POST, "/chat/lobby", proto))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"hello")).boxed())
            .unwrap();
        let (status, _) = send(addr, proto, req).await;
        assert_eq!(status, 204);
    }
    let messages = received(&seen, "/internal/messages");
    assert_eq!(messages.len(), 2);
    for (_, _, headers) in &messages {
        assert_clean(headers, "client message");
        assert_eq!(headers["x-pushbridge-params"], "room=lobby");
        assert_eq!(headers["x-pushbridge-stream"], "chat");
        assert!(headers.get("x-original-uri").is_none());
    }
}

/// Spellings of the application's internal paths a client might try: each is refused.
const REFUSED: [&str; 22] = [
    "/internal/events/x",
    "/internal/events/",
    "/internal/events",
    "/internal/messages",
    "/internal/messages/",
    "/internal/auth",
    "/internal/auth?x=1",
    "/internal/pc/x",
    "//internal/events/x",
    "/./internal/events/x",
    "/hello/../internal/events/x",
    "/h2/../internal/messages",
    "/%69nternal/events/x",
    "/%2569nternal/events/x",
    "/INTERNAL/Events/x",
    "/internal%2Fevents/x",
    "/internal%2fmessages",
    "/internal%5Cauth",
    "/internal;v=1/events/x",
    "/internal/events%2Fx",
    "/internal/messages.json",
    "/internal/auth.json",
];

#[tokio::test]
async fn internal_paths_are_refused_on_the_public_listener() {
    let (app, seen) = app().await;
    let (proxy, _dir) = start(&yaml(app, ""));
    let addr = proxy.listen[0];
    for proto in [Proto::H1, Proto::H2] {
        for path in REFUSED {
            let method = if path.contains("messages") {
                Method::POST
            } else {
                Method::GET
            };
            let req = forge(request(addr, method, path, proto))
                .body(empty())
                .unwrap();
            let (status, body) = send(addr, proto, req).await;
            assert_eq!(status, 404, "{proto:?} {path}: {body:?}");
        }
        // The WebSocket handshake too.
        let req = request(addr, Method::GET, "/internal/events/x", Proto::H1)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .body(empty())
            .unwrap();
        assert_eq!(send(addr, Proto::H1, req).await.0, 404);
    }
    // An HTTP/2 WebSocket (RFC 8441 extended CONNECT); its client asks for one ordinary path first.
    let mut h2 = support::h2ws::H2Client::connect(addr).await;
    for path in ["/internal/events/x", "/%69nternal/events/x"] {
        assert_eq!(h2.websocket(path).await.0, 404, "{path}");
    }
    seen.lock().unwrap().retain(|s| s.1 != "/_h2ws/settings");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the application saw {:?}",
        seen.lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect::<Vec<_>>()
    );
    // Neighbours of the internal paths still reach the application.
    for path in [
        "/internals",
        "/internal/other",
        "/internal/eventsx/y",
        "/hello",
    ] {
        let req = request(addr, Method::GET, path, Proto::H1)
            .body(empty())
            .unwrap();
        assert_eq!(send(addr, Proto::H1, req).await.0, 200, "{path}");
    }
    let admin = proxy.admin.unwrap();
    let (_, metrics) = support::client::get_text(admin, "/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("pushbridge_passthrough_internal_refused_total"))
        .unwrap_or_else(|| panic!("no refusal counter:\n{metrics}"));
    assert!(line.ends_with(" 48"), "{line}");
}

#[tokio::test]
async fn expose_internal_lets_them_through_and_check_warns() {
    let (app, seen) = app().await;
    let yaml = yaml(app, "  expose_internal: true");
    let (proxy, dir) = start(&yaml);
    let addr = proxy.listen[0];
    let req = request(addr, Method::GET, "/internal/auth", Proto::H1)
        .body(empty())
        .unwrap();
    assert_eq!(send(addr, Proto::H1, req).await.0, 200);
    assert_eq!(received(&seen, "/internal/auth").len(), 1);

    let check = |path: &std::path::Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_pushbridge"))
            .args(["check", "-c"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let exposed = check(&dir.path().join("config.yaml"));
    for field in [
        "streams[0].upstream.url",
        "streams[0].auth.check",
        "streams[1].upstream.url",
        "streams[1].client_messages.forward",
    ] {
        assert!(
            exposed
                .lines()
                .any(|l| l.contains("warning") && l.contains(field) && l.contains("reachable")),
            "{field}:\n{exposed}"
        );
    }
    let safe = dir.path().join("safe.yaml");
    std::fs::write(&safe, self::yaml(app, "")).unwrap();
    let quiet = check(&safe);
    assert!(!quiet.contains("reachable"), "{quiet}");
}

/// A reload that moves a stream upstream onto the pass-through's origin (the `passthrough:` block unchanged)
/// starts refusing its path, and moving it away stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_follows_where_the_internal_urls_are() {
    let (app, seen) = app().await;
    let elsewhere = format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
passthrough:
  upstream: "http://{app}"
  routes: [{{ prefix: /h2, upstream: "http://{app}", protocol: h2c }}]

streams:
  - name: chat
    path: /chat/{{room}}
    upstream: {{ url: "http://127.0.0.1:1/internal/events/{{room}}" }}
"#
    );
    let (proxy, dir) = start(&elsewhere);
    let addr = proxy.listen[0];
    let get = || async move {
        let req = request(addr, Method::GET, "/internal/events/x", Proto::H1)
            .body(empty())
            .unwrap();
        send(addr, Proto::H1, req).await.0
    };
    assert_eq!(get().await, 200);
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml(app, "")).unwrap();
    tokio::task::block_in_place(|| proxy.wait_log("Config reloaded", support::client::WAIT));
    assert_eq!(get().await, 404);
    std::fs::write(&path, &elsewhere).unwrap();
    tokio::task::block_in_place(|| proxy.wait_log("Config reloaded", support::client::WAIT));
    assert_eq!(get().await, 200);
    assert_eq!(received(&seen, "/internal/events/x").len(), 2);
}
