//! Issue 8 item 3, against the real binary: which requests may create a stream. Per-parameter rules refuse a value
//! before the app or the auth check sees it; the negative cache answers a channel the app refused (404/403/410)
//! without asking it again; a client the auth check denies creates no stream.

#[allow(dead_code)]
#[path = "lossless/clients.rs"]
mod clients;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clients::Proxy;
use support::client::{Proto, connect, eventually};

/// Counts the requests of an application that answers `/missing/...` with 404 and every other path with an SSE
/// stream that stays open; `exists` switches `/missing/` to 200 (the channel was created).
struct CountingApp {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    exists: Arc<std::sync::atomic::AtomicBool>,
}

impl CountingApp {
    async fn start() -> CountingApp {
        let requests = Arc::new(AtomicUsize::new(0));
        let exists = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, found) = (requests.clone(), exists.clone());
        let addr = support::app::serve(move |req: http::Request<hyper::body::Incoming>| {
            count.fetch_add(1, Ordering::SeqCst);
            let missing =
                req.uri().path().starts_with("/missing/") && !found.load(Ordering::SeqCst);
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<
                    Result<http_body::Frame<bytes::Bytes>, std::io::Error>,
                >(1);
                let body = http_body_util::StreamBody::new(tokio_stream_of(rx));
                let mut response = http::Response::new(body);
                if missing {
                    *response.status_mut() = http::StatusCode::NOT_FOUND;
                    drop(tx);
                } else {
                    response
                        .headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    // Held open until the test ends.
                    tokio::spawn(async move {
                        let _ = tx.send(Ok(http_body::Frame::data(": hi\n\n".into()))).await;
                        std::future::pending::<()>().await;
                    });
                }
                response
            }
        })
        .await;
        CountingApp {
            addr,
            requests,
            exists,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An mpsc receiver as a `Stream` of body frames.
fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// One long-poll `GET` answered at once; its status, `Retry-After` and how long it took.
async fn poll_once(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let mut sender = connect(addr, Proto::H1).await;
    let req = http::Request::get(format!("{path}?wait=0"))
        .header("host", "x")
        .body(support::client::empty())
        .unwrap();
    let response = sender.send(req).await;
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after, started.elapsed())
}

/// 200 requests (10 clients at once) for a channel the application answers 404, then 10 spaced wider than
/// `idle_timeout` (each would otherwise open a new stream): the application sees a handful of requests (one per
/// TTL), the clients get 404 with `Retry-After` at once, counted as cache hits; after the TTL, once the channel
/// exists, clients are served again. Without the cache (`negative_cache_ttl: 0s`) the spaced requests reach the
/// application every time: [`without_the_cache_each_new_stream_asks_the_app`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_for_a_channel_the_app_refuses_reaches_it_a_handful_of_times() {
    let app = CountingApp::start().await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{app}/missing/{{channel}}", reconnect: {{ initial: 500ms, max: 2s }} }}
    idle_timeout: 200ms
limits: {{ negative_cache_ttl: 2s }}
"#,
        app = app.addr
    ));
    let addr = proxy.addr();
    // The first request opens the stream; its upstream gets the 404.
    let (status, _, _) = poll_once(addr, "/events/nope").await;
    assert_eq!(
        status, 200,
        "the first client is served while the upstream connects"
    );
    eventually("the app's 404 remembered", || async {
        poll_once(addr, "/events/nope").await.0 == 404
    })
    .await;
    let before = app.requests();
    let flood: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..20 {
                    out.push(poll_once(addr, "/events/nope").await);
                }
                out
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in flood {
        answers.extend(task.await.unwrap());
    }
    let refused = answers
        .iter()
        .filter(|(status, _, _)| *status == 404)
        .count();
    let slowest = answers.iter().map(|(_, _, took)| *took).max().unwrap();
    let seen = app.requests() - before;
    println!("flood: {refused}/200 answered 404, slowest {slowest:?}, the app saw {seen} requests");
    assert!(refused >= 190, "{refused} of 200 answered from the cache");
    for (status, retry_after, _) in &answers {
        if *status == 404 {
            let seconds: u64 = retry_after
                .as_deref()
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=2).contains(&seconds), "within the TTL: {seconds}");
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "answered at once: {slowest:?}"
    );
    assert!(seen <= 5, "the app saw {seen} requests, not one per client");
    assert!(
        proxy
            .metric("pushbridge_negative_cache_hits_total", "")
            .await
            >= refused as f64
    );
    // Requests spaced wider than idle_timeout: without the cache each would open a new stream and ask the app.
    let spaced = app.requests();
    let mut cached = 0;
    for _ in 0..10 {
        // Once per TTL the key is forgotten and one request opens a stream again.
        if poll_once(addr, "/events/nope").await.0 == 404 {
            cached += 1;
        }
        // Pacing of the measurement, not a synchronisation: longer than idle_timeout.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let spaced = app.requests() - spaced;
    println!(
        "10 requests 300 ms apart: {cached} answered 404 from the cache, the app saw {spaced}"
    );
    assert!(cached >= 7, "{cached}");
    assert!(spaced <= 3, "bounded by the 2 s TTL: {spaced}");
    // Another channel of the same route is unaffected.
    assert_eq!(poll_once(addr, "/events/other").await.0, 200);
    // The channel appears: once the TTL has passed (or the stream's upstream answered), clients are served again.
    app.exists.store(true, Ordering::SeqCst);
    eventually("served again after the TTL", || async {
        poll_once(addr, "/events/nope").await.0 == 200
    })
    .await;
}

/// The figure before: with `negative_cache_ttl: 0s`, every request that opens a new stream asks the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cache_each_new_stream_asks_the_app() {
    let app = CountingApp::start().await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{app}/missing/{{channel}}" }}
    idle_timeout: 200ms
limits: {{ negative_cache_ttl: 0s }}
"#,
        app = app.addr
    ));
    let addr = proxy.addr();
    for _ in 0..10 {
        assert_eq!(poll_once(addr, "/events/nope").await.0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let seen = app.requests();
    println!("cache off, 10 requests 300 ms apart: the app saw {seen}");
    assert!(seen >= 8, "{seen}");
    assert_eq!(
        proxy
            .metric("pushbridge_negative_cache_hits_total", "")
            .await,
        0.0
    );
}

/// `params` rules refuse bad values with 404 before any stream, auth check or upstream request, counted as
/// `pushbridge_stream_refusals_total{limit="pattern"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn param_rules_refuse_bad_channels_without_the_app_seeing_them() {
    let app = CountingApp::start().await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{tenant}}/{{channel}}
    upstream: {{ url: "http://{app}/up/{{tenant}}/{{channel}}" }}
    params:
      tenant: {{ allow: [acme, globex] }}
      channel: {{ pattern: "[a-z0-9-]{{1,64}}" }}
"#,
        app = app.addr
    ));
    let addr = proxy.addr();
    let long = "a".repeat(65);
    for path in [
        "/events/evil/news".to_owned(),
        "/events/acme/News".to_owned(),
        format!("/events/acme/{long}"),
        "/events/acme/a%20b".to_owned(),
    ] {
        assert_eq!(poll_once(addr, &path).await.0, 404, "{path}");
    }
    assert_eq!(app.requests(), 0, "the app saw none of them");
    assert_eq!(
        proxy
            .metric("pushbridge_stream_refusals_total", "limit=\"pattern\"")
            .await,
        4.0
    );
    assert_eq!(proxy.metric("pushbridge_streams_open", "").await, 0.0);
    assert_eq!(poll_once(addr, "/events/globex/news-1").await.0, 200);
    eventually("the admitted channel reached the app", || async {
        app.requests() == 1
    })
    .await;
}

/// With `auth.check`, a denied client creates no stream and no upstream request: the check comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_the_auth_check_denies_creates_no_stream() {
    let app = CountingApp::start().await;
    let check = support::app::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let allowed = req.headers().contains_key("authorization");
        let mut response = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
        if !allowed {
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
        }
        response
    })
    .await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{app}/up/{{channel}}" }}
    auth: {{ check: "http://{check}/check", forward_headers: [authorization] }}
"#,
        app = app.addr
    ));
    let addr = proxy.addr();
    for i in 0..20 {
        assert_eq!(poll_once(addr, &format!("/events/c{i}")).await.0, 401);
    }
    assert_eq!(proxy.metric("pushbridge_streams_open", "").await, 0.0);
    assert_eq!(app.requests(), 0, "no upstream request for a denied client");
    // Admitted: now the stream exists and its upstream connects.
    let mut sender = connect(addr, Proto::H1).await;
    let req = http::Request::get("/events/c0?wait=0")
        .header("host", "x")
        .header("authorization", "Bearer t")
        .body(support::client::empty())
        .unwrap();
    assert_eq!(sender.send(req).await.status(), 200);
    assert_eq!(proxy.metric("pushbridge_streams_open", "").await, 1.0);
    eventually("the admitted stream's upstream connected", || async {
        app.requests() == 1
    })
    .await;
}
