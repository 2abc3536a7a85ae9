//! Issue 8, item 12: a path parameter that is a dot segment (`.`, `..`, also percent-encoded) or holds an
//! encoded `/` or `\` is refused with 400 before any upstream request; the application never sees it.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_in_params_are_refused_before_the_app_sees_them() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let app = support::app::serve(move |req| {
        log.lock().unwrap().push(req.uri().path().to_owned());
        async move {
            http::Response::builder()
                .status(404)
                .body(Full::new(Bytes::from_static(b"")))
                .unwrap()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\nlog: {{ format: json }}\nstreams:\n  - path: /events/{{channel}}\n    upstream: {{ url: \"http://{app}/up/{{channel}}\" }}\n"
    );
    let proxy = support::binary::start(dir.path(), &yaml, 1, false);
    let addr = proxy.listen[0];
    for target in [
        "/events/..",
        "/events/.",
        "/events/%2e%2e",
        "/events/%2E%2e",
        "/events/.%2E",
        "/events/a%2Fb",
        "/events/%2f",
        "/events/..%5C..",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {target} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{target}: {response}");
    }
    // A valid channel on the same route does reach the app, so the app would have logged the others.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /events/fine HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    support::client::eventually("the valid channel reaches the app", || async {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    let paths = seen.lock().unwrap().clone();
    assert!(paths.iter().all(|p| p == "/up/fine"), "{paths:?}");
}
