//! Issue 8, item 1, on the real binary: connections that never send a request (zero bytes, a partial HTTP/2
//! preface, h2c preface + SETTINGS and no stream, TLS handshake then silence) are closed once
//! `limits.handshake_timeout` has passed since their accept; keep-alive connections with nothing in flight are
//! closed after `limits.idle_connection_timeout` (HTTP/1.1 after `handshake_timeout` when that is shorter), while
//! a stream in progress is never idle; an HTTP/2 peer that
//! stops answering PINGs is dropped; and while `max_connections` silent sockets are held, a waiting client is
//! served once they are closed, and one below the limit is served at once. Each close is timed from the
//! client's side: after about the timeout, before the timeout plus a margin.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::certs::{KeyKind, TestCa};
use support::client::{Proto, WAIT, connect, eventually};
use support::h2raw::{GET, frame, request_headers};
use support::upstream::SseUpstream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE: Duration = Duration::from_millis(600);
const IDLE: Duration = Duration::from_millis(1200);
/// Scheduling slack on a busy machine (idle checks also tick every `IDLE / 4`).
const MARGIN: Duration = Duration::from_millis(1500);
/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn config(upstream: SocketAddr, tls: (&std::path::Path, &std::path::Path), max: usize) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
{}admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
limits: {{ handshake_timeout: {}ms, idle_connection_timeout: {}ms, keepalive_interval: 300ms, max_connections: {max} }}
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{upstream}/up/{{channel}}" }}
"#,
        support::certs::tls_listener(tls.0, tls.1),
        HANDSHAKE.as_millis(),
        IDLE.as_millis(),
    )
}

/// Reads (and discards) until the peer closes; how long that took from `since`.
async fn closed_after<IO: AsyncRead + Unpin>(mut io: IO, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was never closed");
    since.elapsed()
}

fn assert_between(what: &str, took: Duration, timeout: Duration) {
    eprintln!("{what}: closed after {took:?} (timeout {timeout:?})");
    assert!(
        took + Duration::from_millis(50) >= timeout && took <= timeout + MARGIN,
        "{what}: closed after {took:?}, want about {timeout:?}"
    );
}

/// A TLS connection that completes its handshake and then says nothing.
async fn tls_silent(
    addr: SocketAddr,
    ca: &TestCa,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Instant) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let since = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config(&[b"h2"])));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    (
        connector.connect(name, tcp).await.expect("TLS handshake"),
        since,
    )
}

async fn scrape(admin: SocketAddr, series: &str) -> f64 {
    let text = support::client::get_text(admin, "/metrics").await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_request_are_closed_after_the_handshake_timeout() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let proxy = support::binary::start(
        dir.path(),
        &config(upstream.addr, (&files.0, &files.1), 100),
        2,
        true,
    );
    let (plain, tls) = (proxy.listen[0], proxy.listen[1]);

    let zero = async {
        let tcp = TcpStream::connect(plain).await.unwrap();
        closed_after(tcp, Instant::now()).await
    };
    let partial_preface = async {
        let mut tcp = TcpStream::connect(plain).await.unwrap();
        let since = Instant::now();
        tcp.write_all(&PREFACE[..10]).await.unwrap();
        closed_after(tcp, since).await
    };
    let h2c_no_stream = async {
        let mut tcp = TcpStream::connect(plain).await.unwrap();
        let since = Instant::now();
        tcp.write_all(PREFACE).await.unwrap();
        tcp.write_all(SETTINGS).await.unwrap();
        closed_after(tcp, since).await
    };
    let tls_zero = async {
        let tcp = TcpStream::connect(tls).await.unwrap();
        closed_after(tcp, Instant::now()).await
    };
    let tls_quiet = async {
        let (stream, since) = tls_silent(tls, &ca).await;
        closed_after(stream, since).await
    };
    let h2_tls_no_stream = async {
        let (mut stream, since) = tls_silent(tls, &ca).await;
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(SETTINGS).await.unwrap();
        closed_after(stream, since).await
    };
    let (a, b, c, d, e, f) = tokio::join!(
        zero,
        partial_preface,
        h2c_no_stream,
        tls_zero,
        tls_quiet,
        h2_tls_no_stream
    );
    for (what, took) in [
        ("zero bytes", a),
        ("partial h2 preface", b),
        ("h2c preface + SETTINGS", c),
        ("TLS, zero bytes", d),
        ("TLS handshake, then silence", e),
        ("h2 over TLS, preface + SETTINGS", f),
    ] {
        assert_between(what, took, HANDSHAKE);
    }
    let admin = proxy.admin.unwrap();
    let closed = scrape(
        admin,
        "pushbridge_connections_closed_total{listener=\"client\",reason=\"handshake_timeout\"}",
    )
    .await;
    assert_eq!(closed, 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_but_streams_in_progress_are_not() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let proxy = support::binary::start(
        dir.path(),
        &config(upstream.addr, (&files.0, &files.1), 100),
        2,
        true,
    );
    let addr = proxy.listen[0];

    // HTTP/1.1 keep-alive: one request answered, then silence.
    let h1_idle = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 404");
        closed_after(tcp, Instant::now()).await
    };
    // HTTP/2 (a real client that answers PINGs): one request answered, then nothing in flight.
    let h2_idle = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        let ended = tokio::spawn(conn);
        let response = sender
            .send_request(
                http::Request::get(format!("http://{addr}/nowhere"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        drop(response);
        let since = Instant::now();
        tokio::time::timeout(WAIT, ended)
            .await
            .expect("the h2 connection was never closed")
            .unwrap()
            .ok();
        since.elapsed()
    };
    // An SSE stream lasting well past the idle timeout keeps its connection and gets its events.
    let streaming = async {
        let mut client = connect(addr, Proto::H1)
            .await
            .sse(addr, "/events/live", None)
            .await;
        upstream.wait_connections(1).await;
        tokio::time::sleep(IDLE * 2 + MARGIN).await;
        upstream.publish("still here");
        let event = tokio::time::timeout(WAIT, client.next_event())
            .await
            .unwrap();
        // (The test upstream sends every event to every connection: either publish will do.)
        assert!(event.unwrap().data.contains("still here"));
    };
    // A WebSocket over HTTP/2 (RFC 8441) is a stream in progress too.
    let h2_websocket = async {
        let mut client = support::h2ws::H2Client::connect(addr).await;
        let (status, ws) = client.websocket("/events/ws").await;
        assert_eq!(status, 200);
        let mut ws = ws.unwrap();
        upstream.wait_connections(2).await;
        tokio::time::sleep(IDLE * 2 + MARGIN).await;
        upstream.publish("ws still here");
        let message = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws)).await;
        let text = message.unwrap().unwrap().unwrap().into_text().unwrap();
        assert!(text.contains("still here"), "{text}");
    };
    let (h1, h2, (), ()) = tokio::join!(h1_idle, h2_idle, streaming, h2_websocket);
    // hyper's header read timeout also runs while an HTTP/1.1 connection waits for its next head.
    assert_between("idle HTTP/1.1 keep-alive", h1, HANDSHAKE.min(IDLE));
    assert_between("idle HTTP/2", h2, IDLE);
    let admin = proxy.admin.unwrap();
    let series = "pushbridge_connections_closed_total{listener=\"client\",reason=";
    assert_eq!(scrape(admin, &format!("{series}\"idle\"}}")).await, 1.0);
    assert_eq!(
        scrape(admin, &format!("{series}\"handshake_timeout\"}}")).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_peer_that_stops_answering_pings_is_dropped() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let proxy = support::binary::start(
        dir.path(),
        &config(upstream.addr, (&files.0, &files.1), 100),
        2,
        true,
    );
    // A stream is open (so the connection is never idle), but the peer never writes again: no PING ACK.
    let mut tcp = TcpStream::connect(proxy.listen[0]).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(SETTINGS).await.unwrap();
    tcp.write_all(&frame(1, 0x05, 1, &request_headers(GET, "/events/dead")))
        .await
        .unwrap();
    let since = Instant::now();
    upstream.wait_connections(1).await;
    let took = closed_after(tcp, since).await;
    // keepalive_interval (300ms) without a frame from the peer, then handshake_timeout for the ACK.
    assert_between("dead h2 peer", took, Duration::from_millis(300) + HANDSHAKE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_served_while_silent_sockets_are_held() {
    const MAX: usize = 6;
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let proxy = support::binary::start(
        dir.path(),
        &config(upstream.addr, (&files.0, &files.1), MAX),
        2,
        true,
    );
    let addr = proxy.listen[0];
    let admin = proxy.admin.unwrap();

    // Below the limit: half the permits held by silent sockets, a client is served at once.
    let mut silent = Vec::new();
    for _ in 0..MAX / 2 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut below = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    upstream.wait_connections(1).await;
    upstream.publish("one");
    assert_eq!(below.next_event().await.unwrap().data, "one");
    drop(below);

    // At the limit: every permit held by a silent socket; a new client waits in the accept queue and is served
    // once the silent ones are closed for not sending a request.
    for _ in 0..MAX {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let since = Instant::now();
    let mut waiting = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    let served_after = since.elapsed();
    eprintln!("a client waiting behind {MAX} silent sockets was served after {served_after:?}");
    assert!(
        served_after <= HANDSHAKE + MARGIN,
        "served after {served_after:?}"
    );
    upstream.publish("two");
    assert_eq!(waiting.next_event().await.unwrap().data, "two");
    eventually("the limit is counted", || async {
        scrape(
            admin,
            "pushbridge_connection_limit_reached_total{listener=\"client\"}",
        )
        .await
            >= 1.0
    })
    .await;
    tokio::task::block_in_place(|| proxy.wait_log("Connection limit reached", WAIT));
    // Every silent socket was closed by the server.
    for tcp in silent {
        closed_after(tcp, Instant::now()).await;
    }
}
