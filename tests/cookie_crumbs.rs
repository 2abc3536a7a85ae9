//! HTTP/2 cookie crumbs (RFC 9113 §8.2.3): a browser over HTTP/2 sends one `cookie` field per cookie; wherever
//! pushbridge forwards the request over HTTP/1.1 the application gets them as ONE `Cookie: a=1; b=2; c=3` — the
//! pass-through, its WebSocket relay, the `auth.check` sub-request, a per-client stream's upstream request and a
//! `client_messages.forward` POST. An h2c client sends three `cookie` fields to the real binary.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::binary;
use support::client::{Proto, ReqBody, WAIT, connect, empty};
use support::h2ws::H2Client;
use support::ws_app::WsApp;

const CRUMBS: [(&str, &str); 3] = [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")];
const JOINED: &str = "a=1; b=2; c=3";

/// Every request's path and `Cookie` field lines, in arrival order.
type Seen = tokio::sync::watch::Sender<Vec<(String, Vec<String>)>>;

/// Records each request; `/check` and `/messages` answer 204, `/up/…` one SSE event, anything else 200.
async fn recording_app(seen: Seen) -> SocketAddr {
    support::app::serve(move |req: Request<Incoming>| {
        let cookies = req
            .headers()
            .get_all("cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let path = req.uri().path().to_owned();
        seen.send_modify(|seen| seen.push((path.clone(), cookies)));
        let mut response = Response::new(Full::new(Bytes::new()));
        if path == "/check" || path == "/messages" {
            *response.status_mut() = StatusCode::NO_CONTENT;
        } else if path.starts_with("/up/") {
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            *response.body_mut() = Full::new(Bytes::from_static(b"data: hi\n\n"));
        }
        async move {
            let _ = req.into_body().collect().await;
            response
        }
    })
    .await
}

/// The `Cookie` lines of the first request the app got on `path`, waiting for it.
async fn cookies_on(seen: &Seen, path: &str) -> Vec<String> {
    let mut seen = seen.subscribe();
    let all = tokio::time::timeout(
        WAIT,
        seen.wait_for(|all| all.iter().any(|(p, _)| p == path)),
    )
    .await
    .unwrap_or_else(|_| panic!("the app got no request on {path}"))
    .expect("app running");
    let (_, cookies) = all.iter().find(|(p, _)| p == path).expect("seen");
    cookies.clone()
}

fn h2_request(addr: SocketAddr, method: &str, path: &str, body: ReqBody) -> Request<ReqBody> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .version(Version::HTTP_2);
    for (name, value) in CRUMBS {
        builder = builder.header(name, value);
    }
    builder.body(body).unwrap()
}

#[tokio::test]
async fn cookie_crumbs_are_joined_on_every_forwarded_request() {
    let seen = Seen::new(Vec::new());
    let app = recording_app(seen.clone()).await;
    let mut ws_app = WsApp::start().await;
    let proxy = binary::started(&format!(
        r#"listen:
  - address: "127.0.0.1:0"
passthrough:
  upstream: "http://{app}"
  routes:
    - prefix: /ws
      upstream: "http://{ws}"
streams:
  - path: /events/{{channel}}
    mode: per-client
    transports: [sse]
    upstream: {{ url: "http://{app}/up/{{channel}}" }}
    auth: {{ check: "http://{app}/check", forward_headers: [cookie] }}
    client_messages: {{ forward: "http://{app}/messages" }}
"#,
        ws = ws_app.addr
    ));
    let addr = proxy.addr();
    let mut client = connect(addr, Proto::H2).await;

    let mut got = Vec::new();
    let response = client.send(h2_request(addr, "GET", "/page", empty())).await;
    assert_eq!(response.status(), 200);
    got.push(("pass-through", cookies_on(&seen, "/page").await));

    let mut sse = h2_request(addr, "GET", "/events/news", empty());
    sse.headers_mut()
        .insert("accept", "text/event-stream".parse().unwrap());
    let response = client.send(sse).await;
    assert_eq!(response.status(), 200);
    got.push(("auth.check", cookies_on(&seen, "/check").await));
    got.push(("per-client upstream", cookies_on(&seen, "/up/news").await));

    let body = Full::new(Bytes::from_static(b"hello"))
        .map_err(|never| match never {})
        .boxed();
    let response = client
        .send(h2_request(addr, "POST", "/events/news", body))
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    got.push((
        "client_messages.forward",
        cookies_on(&seen, "/messages").await,
    ));

    let mut h2ws = H2Client::connect(addr).await;
    let (status, _ws) = h2ws.websocket_with("/ws/chat", &CRUMBS).await;
    assert_eq!(status, StatusCode::OK);
    let (_, headers) = ws_app.opened().await;
    let cookies = headers
        .get_all("cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    got.push(("pass-through WebSocket", cookies));

    let joined = vec![JOINED.to_owned()];
    let expected: Vec<_> = got
        .iter()
        .map(|(what, _)| (*what, joined.clone()))
        .collect();
    assert_eq!(got, expected);
}
