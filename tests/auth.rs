//! The `auth.check` sub-request: every transport and client messages are admitted or refused by the application's
//! authorization endpoint, which sees the client's credentials and the stream identity.

mod support;

use std::sync::{Arc, Mutex};

use http::StatusCode;
use http_body_util::{BodyExt, Full};
use support::client::{Proto, connect, empty};
use support::proxy;
use support::upstream::SseUpstream;

type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>, Option<String>)>>>;

/// Admits `Bearer good`; 401 with a challenge without credentials; 403 otherwise. Records what it saw.
async fn check_service(seen: Seen) -> std::net::SocketAddr {
    support::app::serve(move |req: http::Request<hyper::body::Incoming>| {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header("authorization");
        seen.lock().unwrap().push((
            authorization.clone(),
            header("x-pushbridge-params"),
            header("x-original-uri"),
        ));
        let mut response = http::Response::new(Full::new(bytes::Bytes::new()));
        match authorization.as_deref() {
            Some("Bearer good") => *response.status_mut() = StatusCode::NO_CONTENT,
            None => {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response
                    .headers_mut()
                    .insert("www-authenticate", "Bearer".parse().unwrap());
            }
            Some(_) => *response.status_mut() = StatusCode::FORBIDDEN,
        }
        async move { response }
    })
    .await
}

async fn status(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    accept: &str,
) -> http::Response<hyper::body::Incoming> {
    let mut sender = connect(addr, Proto::H1).await;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x")
        .header("accept", accept);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    sender.send(req.body(empty()).unwrap()).await
}

#[tokio::test]
async fn every_transport_and_client_messages_go_through_the_check() {
    let upstream = SseUpstream::start(true).await;
    let seen: Seen = Arc::default();
    let check = check_service(seen.clone()).await;
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{up}/up/{{channel}}" }}
    auth: {{ check: "http://{check}/check", forward_headers: [authorization] }}
    long_poll: {{ timeout: 100ms }}
    client_messages: {{ forward: "http://{up}/messages" }}
  - name: down
    path: /down/{{channel}}
    upstream: {{ url: "http://{up}/up/{{channel}}" }}
    auth: {{ check: "http://127.0.0.1:1/check" }}
"#,
        up = upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();

    // Admitted: SSE streams, long-poll answers.
    let ok = status(
        addr,
        "GET",
        "/events/news?token=abc",
        Some("good"),
        "text/event-stream",
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-pushbridge-transport"], "sse");
    let poll = status(
        addr,
        "GET",
        "/events/news",
        Some("good"),
        "application/json",
    )
    .await;
    assert_eq!(poll.status(), 200);
    assert_eq!(poll.headers()["x-pushbridge-transport"], "long-poll");

    // Refused before anything is served: SSE, long-poll, WebSocket (no upgrade), POST.
    for (method, accept) in [
        ("GET", "text/event-stream"),
        ("GET", "*/*"),
        ("POST", "*/*"),
    ] {
        let denied = status(addr, method, "/events/news", Some("evil"), accept).await;
        assert_eq!(denied.status(), 403, "{method} {accept}");
        let anonymous = status(addr, method, "/events/news", None, accept).await;
        assert_eq!(anonymous.status(), 401);
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    }
    let mut ws = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/events/news"),
    )
    .unwrap();
    ws.headers_mut()
        .insert("authorization", "Bearer evil".parse().unwrap());
    match tokio_tungstenite::connect_async(ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!(
            "expected a 403 before the upgrade, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    let mut ws = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/events/news"),
    )
    .unwrap();
    ws.headers_mut()
        .insert("authorization", "Bearer good".parse().unwrap());
    let (_socket, response) = tokio_tungstenite::connect_async(ws).await.unwrap();
    assert_eq!(response.status(), 101);

    // The service saw the credentials, the stream identity and the original target.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        (
            Some("Bearer good".into()),
            Some("channel=news".into()),
            Some("/events/news?token=abc".into())
        )
    );

    // An unreachable authorization service: 502, never an open door.
    let down = status(addr, "GET", "/down/x", Some("good"), "text/event-stream").await;
    assert_eq!(down.status(), 502);
    assert_eq!(
        down.into_body().collect().await.unwrap().to_bytes(),
        "authorization service unavailable\n"
    );
}
