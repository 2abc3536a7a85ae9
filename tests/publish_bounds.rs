//! The publish API's bounds on the real binary: stream limits, events and bytes per request, HTTP/2 streams per
//! publish connection, request bodies in flight. Each refusal answers JSON, publishes nothing, and is counted.

mod support;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::binary;
use support::client::{Proto, connect};
use support::feeds::metric;
use support::h2raw::{POST, frame, request_headers, take_frame};
use support::publish::{AUTH, config, curl, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_past_max_streams_is_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config("").replace("limits: {", "limits: { max_streams: 1,");
    let binary = binary::start(dir.path(), &yaml, 1, true);
    let (addr, publish) = (binary.listen[0], binary.publish.unwrap());
    // A subscribed stream is never evicted.
    let _sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    let refused = curl(publish, "/events/b", &[AUTH], b"x").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap()
            .contains("nothing was published")
    );
    assert_eq!(curl(publish, "/events/a", &[AUTH], b"x").await.status, 200);
}

/// One request publishes at most 1 000 events, never more than its route's `buffer.events`, and never more bytes
/// than its `buffer.max_bytes` (the batch would evict itself); an event's name and id count in
/// `limits.max_event_bytes`; an id over 1 KiB is refused. Each refusal: JSON, nothing published, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_bounded_in_events_and_bytes_and_publishes_nothing_past_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let routes = r#"  - path: /small/{c}
    upstream: { kind: publish }
    buffer: { events: 5 }
  - path: /tight/{c}
    upstream: { kind: publish }
    buffer: { max_bytes: 4KiB }
  - path: /wide/{c}
    upstream: { kind: publish }
    buffer: { events: 5000 }
"#;
    let yaml = config(routes).replace("max_body: 4KiB", "max_body: 64KiB");
    let binary = binary::start(dir.path(), &yaml, 1, true);
    let (addr, publish, admin) = (
        binary.listen[0],
        binary.publish.unwrap(),
        binary.admin.unwrap(),
    );
    let json = ["Content-Type: application/json", AUTH];
    let ndjson = ["Content-Type: application/x-ndjson", AUTH];
    let array = |n: usize| format!("[{}]", vec![r#"{"data":1}"#; n].join(","));
    let lines = |n: usize| r#"{"data":1}"#.repeat(n).replace("}{", "}\n{");
    let mut subscribers = Vec::new();
    for path in ["/small/a", "/wide/a", "/tight/a", "/events/a"] {
        subscribers.push(connect(addr, Proto::H1).await.sse(addr, path, None).await);
    }
    let data = |n: usize| "x".repeat(n);
    let cases: Vec<(u16, &str, &[&str], String, &str)> = vec![
        (413, "/small/a", &json, array(6), "more than 5 events"),
        (413, "/small/a", &ndjson, lines(6), "more than 5 events"),
        (413, "/wide/a", &json, array(1001), "more than 1000 events"),
        (
            413,
            "/wide/a",
            &ndjson,
            lines(1001),
            "more than 1000 events",
        ),
        (
            413,
            "/tight/a",
            &json,
            format!(r#"[{{"data":"{0}"}},{{"data":"{0}"}}]"#, data(900)),
            "buffer.max_bytes",
        ),
        (
            413,
            "/events/a",
            &json,
            format!(r#"{{"data":"{}","id":"{}"}}"#, data(600), data(500)),
            "limits.max_event_bytes",
        ),
        (
            413,
            "/events/a",
            &json,
            format!(r#"{{"data":"{}","event":"{}"}}"#, data(600), data(500)),
            "limits.max_event_bytes",
        ),
        (
            400,
            "/events/a",
            &json,
            format!(r#"{{"data":"x","id":"{}"}}"#, data(1025)),
            "longer than 1024",
        ),
    ];
    for (status, path, headers, body, says) in &cases {
        let answer = curl(publish, path, headers, body.as_bytes()).await;
        assert_eq!(answer.status, *status, "{path} {says} {answer:?}");
        let error = answer.json["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }
    // At each bound: published.
    let at_bound = [
        ("/small/a", array(5), 5),
        ("/wide/a", array(1000), 1000),
        ("/tight/a", format!(r#"{{"data":"{}"}}"#, data(900)), 1),
        (
            "/events/a",
            format!(r#"{{"data":"{}","id":"{}"}}"#, data(524), data(500)),
            1,
        ),
    ];
    for ((path, body, n), sse) in at_bound.iter().zip(&mut subscribers) {
        let answer = curl(publish, path, &json, body.as_bytes()).await;
        assert_eq!(answer.status, 200, "{path} {answer:?}");
        assert_eq!(answer.json["published"], *n);
        // Nothing of the refused requests came first.
        let got: Vec<String> = sse
            .take(*n)
            .await
            .into_iter()
            .filter_map(|e| e.id)
            .collect();
        assert_eq!(got, answer.ids(), "{path}");
    }
    let count = |route: &str, result: &str| {
        format!(r#"pushbridge_published_total{{result="{result}",route="{route}"}}"#)
    };
    assert_eq!(metric(admin, &count("/small/{c}", "too_large")).await, 2.0);
    assert_eq!(metric(admin, &count("/wide/{c}", "too_large")).await, 2.0);
    assert_eq!(metric(admin, &count("/tight/{c}", "too_large")).await, 1.0);
    assert_eq!(
        metric(admin, &count("/events/{channel}", "too_large")).await,
        2.0
    );
    assert_eq!(
        metric(admin, &count("/events/{channel}", "bad_request")).await,
        1.0
    );
}

/// A POST's header block in HPACK without Huffman or indexing, with the bearer token.
fn post_headers(path: &str) -> Vec<u8> {
    let mut block = request_headers(POST, path);
    let auth = AUTH.strip_prefix("Authorization: ").unwrap();
    block.extend_from_slice(&[0x0f, 23 - 15, auth.len() as u8]); // authorization (static index 23)
    block.extend_from_slice(auth.as_bytes());
    block
}

/// A client that ignores SETTINGS_MAX_CONCURRENT_STREAMS and opens 10 publish requests on one HTTP/2 connection:
/// 8 are served, the rest get REFUSED_STREAM; reaching the limit is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_publishers_get_8_streams_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, _addr, publish) = start(&dir);
    let admin = binary.admin.unwrap();
    let mut tcp = TcpStream::connect(publish).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS
    for i in 0..10u32 {
        // HEADERS with END_HEADERS, the body still to come: each request stays in flight.
        out.extend(frame(1, 0x4, 2 * i + 1, &post_headers("/events/h2")));
    }
    tcp.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    // (stream, RST_STREAM code), and streams answered with HEADERS.
    let mut refused = Vec::new();
    let mut answered = Vec::new();
    async fn read_frames(
        tcp: &mut TcpStream,
        buf: &mut Vec<u8>,
        refused: &mut Vec<(u32, u32)>,
        answered: &mut Vec<u32>,
        done: impl Fn(&[(u32, u32)], &[u32]) -> bool,
    ) {
        while !done(refused, answered) {
            let mut chunk = [0u8; 16 * 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(frame) = take_frame(buf) {
                match frame.kind {
                    1 => answered.push(frame.stream),
                    3 => refused.push((frame.stream, frame.code())),
                    _ => {}
                }
            }
        }
    }
    let reading = read_frames(&mut tcp, &mut buf, &mut refused, &mut answered, |r, _| {
        r.len() >= 2
    });
    tokio::time::timeout(support::client::WAIT, reading)
        .await
        .expect("REFUSED_STREAM for the streams past 8");
    assert_eq!(
        refused,
        [(17, 7), (19, 7)],
        "REFUSED_STREAM (7) for streams 9 and 10"
    );
    assert!(
        answered.is_empty(),
        "the 8 wait for their bodies: {answered:?}"
    );
    // The 8 are in flight at once: the limit is reached (counted) before any body arrives.
    support::client::eventually("the stream limit counted", || async {
        metric(admin, "pushbridge_http2_stream_limit_reached_total").await >= 1.0
    })
    .await;
    let mut bodies = Vec::new();
    for i in 0..8u32 {
        bodies.extend(frame(0, 0x1, 2 * i + 1, b"x")); // DATA, END_STREAM
    }
    tcp.write_all(&bodies).await.unwrap();
    let reading = read_frames(&mut tcp, &mut buf, &mut refused, &mut answered, |_, a| {
        a.len() >= 8
    });
    tokio::time::timeout(support::client::WAIT, reading)
        .await
        .expect("the 8 answered");
    answered.sort_unstable();
    assert_eq!(answered, (0..8u32).map(|i| 2 * i + 1).collect::<Vec<_>>());
    let ok = r#"pushbridge_published_total{result="ok",route="/events/{channel}"}"#;
    assert_eq!(metric(admin, ok).await, 8.0);
}

/// Request bodies in flight are bounded all together (64 MiB): a request whose body passes the budget gets 503 with
/// `Retry-After` and publishes nothing; the budget is given back when a request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_past_64_mib_get_503_with_retry_after() {
    const MIB: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config("").replace("max_body: 4KiB", "max_body: 64MiB");
    let binary = binary::start(dir.path(), &yaml, 1, true);
    let (addr, publish, admin) = (
        binary.listen[0],
        binary.publish.unwrap(),
        binary.admin.unwrap(),
    );
    let mut sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/big", None)
        .await;
    let head = |length: usize| {
        format!(
            "POST /events/big HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // A: 40 MiB of a 60 MiB body sent, the rest held back.
    let mut a = TcpStream::connect(publish).await.unwrap();
    a.write_all(head(60 * MIB).as_bytes()).await.unwrap();
    a.write_all(&vec![b'a'; 40 * MIB]).await.unwrap();
    let in_flight = "pushbridge_publish_body_bytes";
    support::client::eventually("A's 40 MiB read", || async {
        metric(admin, in_flight).await >= (40 * MIB) as f64
    })
    .await;
    // B: 30 MiB more passes the budget.
    let b = TcpStream::connect(publish).await.unwrap();
    let (mut b_read, mut b_write) = b.into_split();
    let writer = tokio::spawn(async move {
        let _ = b_write.write_all(head(30 * MIB).as_bytes()).await;
        // The server stops reading once it has answered.
        let _ = b_write.write_all(&vec![b'b'; 30 * MIB]).await;
        b_write
    });
    let (got, _) =
        support::raw::read_for(&mut b_read, Some(b"\r\n\r\n"), support::client::WAIT).await;
    let answer = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let refusals = "pushbridge_publish_body_budget_refusals_total";
    assert_eq!(metric(admin, refusals).await, 1.0);
    drop(writer);
    // A hangs up: its bytes are given back, and a publish goes through.
    drop(a);
    support::client::eventually("the budget given back", || async {
        metric(admin, in_flight).await == 0.0
    })
    .await;
    let answer = curl(publish, "/events/big", &[AUTH], b"after").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        sse.next_event().await.unwrap().data,
        "after",
        "nothing of A or B published"
    );
    let unavailable =
        r#"pushbridge_published_total{result="unavailable",route="/events/{channel}"}"#;
    assert_eq!(metric(admin, unavailable).await, 1.0);
}
