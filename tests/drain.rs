//! Graceful drain of the real binary on SIGTERM with live SSE, WebSocket, long-poll and pass-through clients: each
//! ends as specified, /readyz turns 503, the process exits 0 within the grace period — and no credential from
//! any request reached the (debug-level) log.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::BodyExt;
use support::client::{Proto, WAIT, connect, empty};
use support::upstream::SseUpstream;
use tokio::sync::{Notify, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const CREDENTIALS: [(&str, &str); 2] = [
    ("authorization", "Bearer s3cret-bearer"),
    ("cookie", "session=s3cret-cookie"),
];
const SECRETS: [&str; 4] = [
    "s3cret-bearer",
    "s3cret-cookie",
    "s3cret-query",
    "s3cret-upstream",
];

/// An application whose responses wait until the test releases them; it tells the test when a request arrived.
async fn slow_app(
    arrived: Arc<Notify>,
    release: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
) -> std::net::SocketAddr {
    support::app::serve(move |_req| {
        let (arrived, release) = (arrived.clone(), release.clone());
        async move {
            arrived.notify_one();
            let wait = release.lock().unwrap().take();
            if let Some(wait) = wait {
                let _ = wait.await;
            }
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from("done")))
        }
    })
    .await
}

async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let mut sender = connect(addr, Proto::H1).await;
    let mut req = http::Request::get(path).header("host", "test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    sender.send(req.body(empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_kind_of_client_and_exits_zero() {
    let upstream = SseUpstream::start(true).await;
    let arrived = Arc::new(Notify::new());
    let (release_tx, release_rx) = oneshot::channel();
    let app = slow_app(arrived.clone(), Arc::new(Mutex::new(Some(release_rx)))).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
passthrough: {{ upstream: "http://{app}" }}
streams:
  - name: live
    path: /events/{{channel}}
    upstream: {{ url: "http://{up}/up/{{channel}}?key={secret}" }}
shutdown: {{ grace: 20s }}
log: {{ format: json }}
"#,
        up = upstream.addr,
        secret = SECRETS[3]
    );
    let mut proxy = support::binary::start_with_log(dir.path(), &yaml, 1, true, "debug");
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());
    let credentials = CREDENTIALS;

    // SSE.
    let mut sse_sender = connect(addr, Proto::H1).await;
    let mut sse_req =
        support::client::sse_request(addr, "/events/a?token=s3cret-query", None, false);
    for (name, value) in credentials {
        sse_req.headers_mut().insert(name, value.parse().unwrap());
    }
    let mut sse = support::client::SseClient::new(sse_sender.send(sse_req).await);
    upstream.wait_connections(1).await;
    upstream.publish("e1");
    assert_eq!(sse.next_event().await.unwrap().data, "e1");

    // WebSocket.
    let mut ws_req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/events/a?token=s3cret-query"
        ))
        .unwrap();
    ws_req
        .headers_mut()
        .insert("authorization", credentials[0].1.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_req).await.unwrap();
    upstream.publish("e2");
    assert!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("\"e2\"")
    );
    assert_eq!(sse.next_event().await.unwrap().data, "e2");

    // Long-poll, held at the newest cursor.
    let poll = tokio::spawn(get(
        addr,
        "/events/a?last_event_id=2&token=s3cret-query",
        &CREDENTIALS,
    ));

    // Pass-through, in flight at the application.
    let passthrough = tokio::spawn(get(addr, "/slow?token=s3cret-query", &CREDENTIALS));
    tokio::time::timeout(WAIT, arrived.notified())
        .await
        .expect("pass-through request reached the app");

    // The long-poll is held once the proxy counts it.
    support::client::eventually("the long-poll is held", || async {
        admin_text(admin, "/metrics").await.1.contains(
            "pushbridge_connections_open{http_version=\"http1\",transport=\"long-poll\"} 1",
        )
    })
    .await;

    let started = Instant::now();
    proxy.signal("TERM");
    // The pass-through request in flight keeps the process up: readiness reports the drain.
    support::client::eventually("readyz reports the drain", || async {
        admin_text(admin, "/readyz").await == (503, "draining\n".to_owned())
    })
    .await;
    // Long-poll: answered with what it has (nothing).
    let answer = poll.await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["events"], serde_json::json!([]));
    // SSE: the stream ends.
    assert!(sse.next_event().await.is_none());
    // WebSocket: close 1001.
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    // Pass-through: completes once the application answers.
    release_tx.send(()).unwrap();
    let response = passthrough.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "done"
    );

    let code = tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exited within the grace period"
    );

    let log = proxy.drain_log().join("\n");
    assert!(log.contains("Drained"), "{log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "the log leaked {secret}:\n{log}");
    }
}

async fn admin_text(admin: std::net::SocketAddr, path: &str) -> (u16, String) {
    support::client::get_text(admin, path).await
}
