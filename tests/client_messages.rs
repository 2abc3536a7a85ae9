//! Client → application messages over HTTP (DESIGN §1, §4): a `POST` to the stream path is forwarded to
//! `client_messages.forward` with the stream identity and only the forwarded client headers; the application's
//! status comes back; over-size bodies get 413, an unreachable application 502, a route without
//! `client_messages` 405.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use support::client::{Proto, ReqBody, WAIT, connect};
use support::proxy;
use tokio::net::TcpListener;

/// What the application received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A small application recording every request and answering with a settable status.
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    status: Arc<AtomicU16>,
}

impl App {
    async fn start() -> App {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(202));
        let (record, answer) = (seen.clone(), status.clone());
        let addr = support::app::serve(move |req: Request<Incoming>| {
            let (record, answer) = (record.clone(), answer.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let path = parts.uri.path().to_owned();
                record.lock().unwrap().push(Seen {
                    method: parts.method,
                    path,
                    headers: parts.headers,
                    body,
                });
                let mut response = Response::new(Full::new(Bytes::from_static(b"app says hi")));
                *response.status_mut() =
                    StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap();
                response
            }
        })
        .await;
        App { addr, seen, status }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Routes: `/events/{channel}` forwards to `app` (max 16 bytes), `/custom/{room}` forwards only `x-user`, `/down`
/// forwards to a dead address, `/closed` has no `client_messages`.
async fn config(app: SocketAddr) -> String {
    let dead = dead_addr().await;
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{dead}/up/{{channel}}" }}
    client_messages: {{ forward: "http://{app}/internal/messages", max_bytes: 16 }}
  - path: /custom/{{room}}
    upstream: {{ url: "http://{dead}/up" }}
    client_messages: {{ forward: "http://{app}/internal/custom" }}
    auth: {{ forward_headers: [x-user] }}
  - path: /down
    upstream: {{ url: "http://{dead}/up" }}
    client_messages: {{ forward: "http://{dead}/internal/messages" }}
  - path: /closed
    upstream: {{ url: "http://{dead}/up" }}
"#
    )
}

fn post(
    addr: SocketAddr,
    path: &str,
    proto: Proto,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Request<ReqBody> {
    let uri = match proto {
        Proto::H2 => format!("http://{addr}{path}"),
        Proto::H1 => path.to_owned(),
    };
    let mut builder = Request::post(uri);
    if proto == Proto::H1 {
        builder = builder.header("host", addr.to_string());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

fn full(body: &'static str) -> ReqBody {
    Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `chunks` sent without a content-length (chunked on h1, DATA frames on h2).
fn streamed(chunks: &'static [&'static str]) -> ReqBody {
    let frames = chunks
        .iter()
        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c.as_bytes()))));
    StreamBody::new(stream::iter(frames)).boxed()
}

/// Sends on a fresh connection; returns (status, headers, body).
async fn send(
    addr: SocketAddr,
    proto: Proto,
    req: Request<ReqBody>,
) -> (StatusCode, HeaderMap, Bytes) {
    let response = connect(addr, proto).await.send(req).await;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn a_post_is_forwarded_with_the_stream_identity_and_only_forwarded_headers() {
    let app = App::start().await;
    let proxy = proxy::start(&config(app.addr).await).await;
    let addr = proxy.addr();
    let client_headers = [
        ("content-type", "application/json"),
        ("authorization", "Bearer abc"),
        ("cookie", "session=1"),
        ("x-secret", "do not pass"),
        ("accept-language", "fr"),
        ("user-agent", "test-client"),
    ];
    for (proto, body) in [
        (Proto::H1, full(r#"{"say":"hi"}"#)),
        (Proto::H2, streamed(&[r#"{"say""#, r#":"hi"}"#])),
    ] {
        let req = post(
            addr,
            "/events/news%20room?transport=long-poll",
            proto,
            &client_headers,
            body,
        );
        let (status, _, body) = send(addr, proto, req).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{proto:?}: the application's status comes back"
        );
        assert!(
            body.is_empty(),
            "the application's body is not relayed: {body:?}"
        );
    }
    let seen = app.seen();
    assert_eq!(seen.len(), 2);
    for got in seen {
        assert_eq!(got.method, Method::POST);
        assert_eq!(got.path, "/internal/messages");
        assert_eq!(got.body, r#"{"say":"hi"}"#);
        let h = &got.headers;
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            h["x-pushbridge-stream"], "/events/{channel}",
            "the route name (default: its path)"
        );
        assert_eq!(h["x-pushbridge-params"], "channel=news+room");
        assert_eq!(h["x-pushbridge-transport"], "long-poll");
        assert_eq!(h["authorization"], "Bearer abc");
        assert_eq!(h["cookie"], "session=1");
        for absent in ["x-secret", "accept-language", "user-agent"] {
            assert!(
                h.get(absent).is_none(),
                "{absent} must not be forwarded: {h:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_application_status_and_the_configured_forward_headers() {
    let app = App::start().await;
    let proxy = proxy::start(&config(app.addr).await).await;
    let addr = proxy.addr();
    app.status.store(409, Ordering::SeqCst);
    let headers = [("x-user", "ada"), ("authorization", "Bearer abc")];
    let (status, _, _) = send(
        addr,
        Proto::H1,
        post(addr, "/custom/lobby", Proto::H1, &headers, full("hello")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let got = &app.seen()[0];
    assert_eq!(got.path, "/internal/custom");
    assert_eq!(got.headers["x-user"], "ada");
    assert!(
        got.headers.get("authorization").is_none(),
        "only auth.forward_headers are forwarded"
    );
    assert_eq!(
        got.headers["content-type"], "text/plain; charset=utf-8",
        "the default content type"
    );
    assert_eq!(got.headers["x-pushbridge-params"], "room=lobby");
    assert_eq!(
        got.headers["x-pushbridge-transport"], "http",
        "no transport named"
    );
}

#[tokio::test]
async fn over_max_bytes_is_413_and_never_reaches_the_application() {
    let app = App::start().await;
    let proxy = proxy::start(&config(app.addr).await).await;
    let addr = proxy.addr();
    let exactly = "0123456789abcdef";
    let (status, _, _) = send(
        addr,
        Proto::H1,
        post(addr, "/events/x", Proto::H1, &[], full(exactly)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "max_bytes itself is accepted");
    for proto in [Proto::H1, Proto::H2] {
        let (status, _, _) = send(
            addr,
            proto,
            post(addr, "/events/x", proto, &[], full("0123456789abcdefX")),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{proto:?} with a content-length"
        );
        let chunks: &[&str] = &["0123456789", "abcdefX"];
        let (status, _, _) = send(
            addr,
            proto,
            post(addr, "/events/x", proto, &[], streamed(chunks)),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{proto:?} streamed");
    }
    assert_eq!(app.seen().len(), 1);
}

#[tokio::test]
async fn an_unreachable_application_is_502() {
    let app = App::start().await;
    let proxy = proxy::start(&config(app.addr).await).await;
    let addr = proxy.addr();
    for proto in [Proto::H1, Proto::H2] {
        let (status, _, _) = send(addr, proto, post(addr, "/down", proto, &[], full("hi"))).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    let metrics = String::from_utf8(proxy.running().metrics().render()).unwrap();
    assert!(
        metrics.contains(r#"pushbridge_client_messages_total{result="error"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_client_messages_a_post_is_405() {
    let app = App::start().await;
    let proxy = proxy::start(&config(app.addr).await).await;
    let addr = proxy.addr();
    for proto in [Proto::H1, Proto::H2] {
        let (status, headers, body) =
            send(addr, proto, post(addr, "/closed", proto, &[], full("hi"))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, OPTIONS");
        assert!(
            String::from_utf8_lossy(&body).contains("not enabled"),
            "{body:?}"
        );
    }
    assert!(app.seen().is_empty());
}
