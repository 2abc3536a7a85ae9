//! SSE end to end: the real server, a real upstream, real clients over HTTP/1.1 and HTTP/2, plaintext and TLS.

mod support;

use futures_util::StreamExt;
use support::certs::{KeyKind, TestCa};
use support::client::{Proto, connect, connect_tls};
use support::proxy;
use support::upstream::SseUpstream;

fn config(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream:
      url: "http://{upstream}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
{extra}
"#
    )
}

#[tokio::test]
async fn sse_over_tls_http1_and_http2() {
    let upstream = SseUpstream::start(true).await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let yaml = format!(
        "listen:\n{}streams:\n  - path: /events/{{channel}}\n    upstream: {{ url: \"http://{}/up/{{channel}}\" }}\n",
        support::certs::tls_listener(&cert, &key),
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();

    let mut h1 = connect_tls(addr, ca.client_config(&[b"http/1.1"]), Proto::H1).await;
    let mut over_h1 = h1.sse(addr, "/events/news", None).await;
    // Three streams multiplexed on one HTTP/2 connection.
    let mut h2 = connect_tls(addr, ca.client_config(&[b"h2"]), Proto::H2).await;
    let mut a = h2.sse(addr, "/events/news", None).await;
    let mut b = h2.sse(addr, "/events/news", None).await;
    let mut c = h2.sse(addr, "/events/sport", None).await;
    assert_eq!(over_h1.response_headers["x-pushbridge-transport"], "sse");
    assert_eq!(
        a.response_headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(a.response_headers["cache-control"], "no-cache");
    assert_eq!(a.response_headers["x-accel-buffering"], "no");
    upstream.wait_connections(2).await;

    for i in 0..5 {
        upstream.publish(format!("event {i}"));
    }
    for client in [&mut over_h1, &mut a, &mut b, &mut c] {
        let got: Vec<String> = client.take(5).await.into_iter().map(|e| e.data).collect();
        assert_eq!(
            got,
            (0..5).map(|i| format!("event {i}")).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        upstream.connections(),
        2,
        "one upstream connection per stream, shared by its subscribers"
    );
}

#[tokio::test]
async fn hundred_subscribers_share_one_upstream_connection() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let addr = proxy.addr();
    let mut clients = Vec::new();
    for i in 0..100 {
        let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
        let mut sender = connect(addr, proto).await;
        clients.push(sender.sse(addr, "/events/all", None).await);
    }
    upstream.wait_connections(1).await;
    for i in 0..50 {
        upstream.publish(format!("{i}"));
    }
    let want: Vec<(Option<String>, String)> = (0..50)
        .map(|i| (Some((i + 1).to_string()), i.to_string()))
        .collect();
    for client in &mut clients {
        let got: Vec<_> = client
            .take(50)
            .await
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        assert_eq!(got, want);
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn first_flush_then_heartbeats() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "    heartbeat: 100ms")).await;
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    let mut client = sender.sse(proxy.addr(), "/events/x", None).await;
    let first = client.next_chunk().await.expect("first flush");
    let text = String::from_utf8_lossy(&first).to_string();
    assert!(text.starts_with(':'), "starts with a comment: {text:?}");
    assert!(text.contains("retry: "), "announces retry: {text:?}");
    // With no events, the next chunks are heartbeat comments.
    for _ in 0..2 {
        let beat = client.next_chunk().await.expect("heartbeat");
        assert!(beat.starts_with(b":"), "heartbeat is a comment: {beat:?}");
    }
}

#[tokio::test]
async fn ids_are_generated_when_the_upstream_has_none() {
    let upstream = SseUpstream::start(false).await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    let mut client = sender.sse(proxy.addr(), "/events/x", None).await;
    upstream.wait_connections(1).await;
    upstream.publish("a");
    upstream.publish("b");
    let events = client.take(2).await;
    let ids: Vec<String> = events
        .iter()
        .map(|e| e.id.clone().expect("an id"))
        .collect();
    let (epoch, seq) = ids[0].rsplit_once('-').expect("<epoch>-<seq>");
    assert_eq!(
        ids[1],
        format!("{epoch}-{}", seq.parse::<u64>().unwrap() + 1)
    );
    // The generated id resumes like any other.
    upstream.publish("c");
    let mut again = connect(proxy.addr(), Proto::H1)
        .await
        .sse(proxy.addr(), "/events/x", Some(&ids[0]))
        .await;
    let data: Vec<String> = again.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["b", "c"]);
}

#[tokio::test]
async fn drain_ends_sse_streams() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let mut sender = connect(proxy.addr(), Proto::H2).await;
    let mut client = sender.sse(proxy.addr(), "/events/x", None).await;
    upstream.wait_connections(1).await;
    upstream.publish("before");
    assert_eq!(client.take(1).await[0].data, "before");
    let drained = tokio::spawn(proxy.shutdown());
    assert!(
        client.next_event().await.is_none(),
        "the stream ends on drain"
    );
    assert!(
        drained.await.unwrap(),
        "drain finished within the grace period"
    );
}

#[tokio::test]
async fn per_client_mode_gives_each_client_its_own_upstream_with_its_credentials() {
    let upstream = SseUpstream::start(true).await;
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /me
    mode: per-client
    transports: [ws, sse]
    upstream: {{ url: "http://{}/me" }}
"#,
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let mut clients = Vec::new();
    for user in ["alice", "bob"] {
        let mut sender = connect(addr, Proto::H1).await;
        let mut req = support::client::sse_request(addr, "/me", None, false);
        req.headers_mut()
            .insert("authorization", format!("Bearer {user}").parse().unwrap());
        req.headers_mut()
            .insert("x-other", "not forwarded".parse().unwrap());
        clients.push(support::client::SseClient::new(sender.send(req).await));
        upstream.wait_connections(clients.len()).await;
    }
    assert_eq!(
        upstream.authorizations(),
        [
            Some("Bearer alice".to_owned()),
            Some("Bearer bob".to_owned())
        ]
    );
    upstream.publish("hello");
    for client in &mut clients {
        assert_eq!(client.next_event().await.unwrap().data, "hello");
    }
    // A client that leaves takes its upstream connection with it.
    drop(clients);
    let hub = proxy.running().hub().clone();
    tokio::time::timeout(support::client::WAIT, async {
        while !hub.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("per-client streams close with their client");
}

#[tokio::test]
async fn https_upstream_trusted_through_a_ca_file() {
    use http_body_util::BodyExt;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let tls = pushbridge::tls::ServerTls::load(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tls.acceptor();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
                        http_body::Frame::data(bytes::Bytes::from_static(
                            b"id: 1\ndata: secure\n\n",
                        )),
                    )])
                    .chain(futures_util::stream::pending());
                    let mut response =
                        http::Response::new(BodyExt::boxed(http_body_util::StreamBody::new(body)));
                    response
                        .headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "https://{upstream}/up/{{channel}}", ca_file: "{}" }}
"#,
        ca_file.display()
    );
    let proxy = proxy::start(&yaml).await;
    let mut client = connect(proxy.addr(), Proto::H1)
        .await
        .sse(proxy.addr(), "/events/x", None)
        .await;
    assert_eq!(client.next_event().await.unwrap().data, "secure");
}
