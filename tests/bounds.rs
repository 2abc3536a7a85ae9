//! Issue 16 items 2, 3 and 9 on the real binary: what one HTTP/2 connection can hold, long stream keys and
//! request heads, and `Host` on pass-through requests (duration floors in `check`: tests/cli.rs).

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use support::binary::{Binary, with_sse_upstream};
use support::client::{Proto, connect, empty, eventually, get_text};
use support::h2raw::{GET, frame, request_headers, take_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The sum of every series whose line starts with `prefix` (a name, or a name with some labels).
async fn metric_sum(admin: SocketAddr, prefix: &str) -> f64 {
    let (_, text) = get_text(admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The largest RSS (KiB) seen while sampling every 100 ms for `span`.
async fn peak_rss(bin: &Binary, span: Duration) -> u64 {
    let mut peak = bin.rss_kib();
    let until = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(bin.rss_kib());
    }
    peak
}

/// A TCP stream whose reads stop for good once `paused` is set (the client stops reading its socket; the kernel
/// buffers fill and the server's writes stall), while its writes go on.
struct Pausable {
    tcp: TcpStream,
    paused: Arc<AtomicBool>,
}

impl AsyncRead for Pausable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.paused.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pausable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

const CONNECTIONS: usize = 5;
const STREAMS_PER_CONNECTION: usize = 200;
/// The default `limits.h2_max_streams_per_connection`.
const DEFAULT_H2_STREAMS: usize = 100;
const MIB: u64 = 1024;

/// Item 2, the probe's shape: 5 HTTP/2 connections × 200 SSE streams with maximal flow-control windows (2^31-1,
/// never released) whose client stops reading its socket, against an upstream that sends 200 events of 32 KiB at
/// once. What one connection can hold is bounded by the streams it may have open and the send buffer of each: RSS
/// grows by less than 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_never_read_hold_bounded_memory() {
    let (upstream, _dir, bin) = with_sse_upstream("", &[]).await;
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());
    let baseline = bin.rss_kib();
    let (headers_tx, mut headers_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut pauses = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..CONNECTIONS {
        let paused = Arc::new(AtomicBool::new(false));
        let io = Pausable {
            tcp: TcpStream::connect(addr).await.unwrap(),
            paused: paused.clone(),
        };
        pauses.push(paused);
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(i32::MAX as u32)
            .initial_connection_window_size(i32::MAX as u32)
            .handshake::<_, Bytes>(io)
            .await
            .unwrap();
        keep.push(tokio::spawn(async move {
            let _ = connection.await;
        }));
        for _ in 0..STREAMS_PER_CONNECTION {
            let request = http::Request::get(format!("http://{addr}/events/big?transport=sse"))
                .body(())
                .unwrap();
            // A fresh handle per request: a stream queued past the server's limit does not hold up the next.
            let Ok((response, _)) = sender.clone().send_request(request, true) else {
                break;
            };
            let tx = headers_tx.clone();
            keep.push(tokio::spawn(async move {
                if let Ok(response) = response.await {
                    let _ = tx.send(response.status());
                    // Held, never read: its capacity is never released.
                    let _body = response.into_body();
                    std::future::pending::<()>().await;
                }
            }));
        }
    }
    for _ in 0..CONNECTIONS * DEFAULT_H2_STREAMS {
        let status = tokio::time::timeout(Duration::from_secs(30), headers_rx.recv())
            .await
            .expect("SSE streams open")
            .unwrap();
        assert_eq!(status, 200);
    }
    upstream.wait_connections(1).await;
    for paused in &pauses {
        paused.store(true, Ordering::Relaxed);
    }
    let event = "x".repeat(32 * 1024);
    for _ in 0..200 {
        upstream.publish(event.clone());
    }
    eventually("every event received", || async {
        metric_sum(admin, "pushbridge_events_received_total").await >= 200.0
    })
    .await;
    let peak = peak_rss(&bin, Duration::from_secs(3)).await;
    let (_, text) = get_text(admin, "/metrics").await;
    let open: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("pushbridge_connections_open{") && l.contains("transport=\"sse\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "RSS baseline {} MiB, peak {} MiB, growth {} MiB; SSE streams open {open}",
        baseline / MIB,
        peak / MIB,
        growth / MIB
    );
    assert!(
        growth < 64 * MIB,
        "RSS grew by {} MiB with {open} streams open",
        growth / MIB
    );
    assert!(
        open <= (CONNECTIONS * DEFAULT_H2_STREAMS) as f64,
        "{open} streams open"
    );
    drop(keep);
}

/// Item 2: a client that ignores the server's SETTINGS_MAX_CONCURRENT_STREAMS and opens more streams on one
/// connection than `limits.h2_max_streams_per_connection` gets REFUSED_STREAM for the rest; reaching the limit is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_past_the_per_connection_limit_are_refused_and_counted() {
    let (_upstream, _dir, bin) =
        with_sse_upstream("limits: { h2_max_streams_per_connection: 10 }", &[]).await;
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS, never acknowledging the server's
    for i in 0..15u32 {
        // HEADERS, END_STREAM | END_HEADERS
        out.extend(frame(
            1,
            0x5,
            2 * i + 1,
            &request_headers(GET, "/events/a?transport=sse"),
        ));
    }
    tcp.write_all(&out).await.unwrap();
    let mut refused = Vec::new();
    let mut responses = 0;
    let mut buf = Vec::new();
    let read = async {
        while refused.len() < 5 || responses < 10 {
            let mut chunk = [0u8; 16 * 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(frame) = take_frame(&mut buf) {
                match frame.kind {
                    1 => responses += 1,
                    3 => refused.push((frame.stream, frame.code())),
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("responses {responses}, resets {refused:?}"));
    assert_eq!(responses, 10);
    assert_eq!(
        refused,
        (10..15u32).map(|i| (2 * i + 1, 7)).collect::<Vec<_>>(),
        "REFUSED_STREAM (7) for the streams past the limit"
    );
    let reached = metric_sum(admin, "pushbridge_http2_stream_limit_reached_total").await;
    assert!(reached >= 1.0, "counted: {reached}");
}

/// Sends `head` on a new connection and returns the status code of the answer (0: closed without one).
async fn status_of(addr: SocketAddr, head: &[u8]) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read the whole head.
    let _ = tcp.write_all(head).await;
    let (got, _) = support::raw::read_for(&mut tcp, Some(b"\r\n"), Duration::from_secs(10)).await;
    let line = String::from_utf8_lossy(&got);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Item 3: a stream key longer than `limits.max_key_bytes` (256) is refused with 414 before any stream or upstream
/// request, on the direct path and over HTTP/2, and counted; one of 256 bytes is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_keys_over_max_key_bytes_get_414_before_any_stream() {
    let (upstream, _dir, bin) = with_sse_upstream("", &[]).await;
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());
    let long = "k".repeat(257);
    let head = format!(
        "GET /events/{long}?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(addr, head.as_bytes()).await, 414);
    let mut h2 = connect(addr, Proto::H2).await;
    let request = http::Request::get(format!("http://{addr}/events/{long}?transport=sse"))
        .body(empty())
        .unwrap();
    assert_eq!(h2.send(request).await.status(), 414);
    let refused = r#"pushbridge_stream_refusals_total{limit="key_bytes"}"#;
    assert_eq!(metric_sum(admin, refused).await, 2.0);
    assert_eq!(metric_sum(admin, "pushbridge_streams_open").await, 0.0);
    assert_eq!(upstream.connections(), 0);
    let fits = "k".repeat(256);
    let head = format!(
        "GET /events/{fits}?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(addr, head.as_bytes()).await, 200);
}

/// Item 3, the probe: 2 000 requests with 65 KB channel names, over the direct path (plain) — whose 8 KiB head
/// bound hands them to hyper — are every one refused with 414 or 431, open no stream, and RSS stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_65_kb_channel_names_are_all_refused() {
    let (upstream, _dir, bin) = with_sse_upstream("", &[]).await;
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());
    let baseline = bin.rss_kib();
    let name = "c".repeat(65_000);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..100 {
        let mut batch = Vec::new();
        for j in 0..20 {
            // 2 000 different channels, as the probe sent.
            let head =
                format!("GET /events/{i:03}{j:02}{name}?transport=sse HTTP/1.1\r\nHost: x\r\n\r\n");
            batch.push(tokio::spawn(async move {
                status_of(addr, head.as_bytes()).await
            }));
        }
        for task in batch {
            *statuses.entry(task.await.unwrap()).or_insert(0) += 1;
        }
    }
    let growth = bin.rss_kib().saturating_sub(baseline);
    let streams = metric_sum(admin, "pushbridge_streams_open").await;
    eprintln!(
        "statuses {statuses:?}, RSS growth {} MiB, streams {streams}",
        growth / MIB
    );
    assert!(
        statuses.keys().all(|s| [414, 431].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(streams, 0.0);
    assert_eq!(upstream.connections(), 0);
    assert!(growth < 32 * MIB, "RSS grew by {} MiB", growth / MIB);
}

/// Item 9a: an HTTP/1.1 pass-through request with no `Host`, or with two, gets 400 and never reaches the
/// application, on the direct path and on hyper's (forced by padding the head past 8 KiB); HTTP/1.0 without
/// `Host` is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_requests_without_one_host_get_400_on_both_paths() {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let app = support::app::serve(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { http::Response::new(http_body_util::Full::new(Bytes::from_static(b"app\n"))) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen: [{{ address: \"127.0.0.1:0\" }}]\nadmin: {{ address: \"127.0.0.1:0\" }}\nlog: {{ format: json }}\npassthrough: {{ upstream: \"http://{app}\" }}\n"
    );
    let bin = support::binary::start(dir.path(), &yaml, 1, true);
    let addr = bin.listen[0];
    let pad = format!("X-Pad: {}\r\n", "p".repeat(9 * 1024));
    for (path, extra) in [("direct", ""), ("hyper", pad.as_str())] {
        let cases = [
            (
                "no Host",
                format!("GET /a HTTP/1.1\r\n{extra}Connection: close\r\n\r\n"),
                400,
            ),
            (
                "two Hosts",
                format!(
                    "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n{extra}Connection: close\r\n\r\n"
                ),
                400,
            ),
            (
                "one Host",
                format!("GET /a HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n"),
                200,
            ),
            (
                "HTTP/1.0 without Host",
                format!("GET /a HTTP/1.0\r\n{extra}\r\n"),
                200,
            ),
        ];
        for (name, head, want) in cases {
            let before = seen.load(Ordering::SeqCst);
            let status = status_of(addr, head.as_bytes()).await;
            assert_eq!(status, want, "{path} path, {name}");
            let reached = seen.load(Ordering::SeqCst) - before;
            assert_eq!(
                reached,
                usize::from(want == 200),
                "{path} path, {name}: app reached"
            );
        }
    }
}
