//! The publish API (issue 18) on the real binary: `curl` publishes text, JSON, arrays and NDJSON; SSE, WebSocket
//! and long-poll subscribers get each event once and in order; `Last-Event-ID` resumes over assigned ids; every
//! error answers JSON and publishes nothing of its request; `Idempotency-Key` retries deliver once.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::binary::{self, Binary};
use support::client::{Proto, connect};
use support::feeds::{Clients, Seen, long_poll, metric};
use support::publish::{curl, curl_method, curl_url};

const TOKEN: &str = "t0ken-Secret-42";

fn config(extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
publish:
  address: "127.0.0.1:0"
  token: {TOKEN}
  max_body: 4KiB
limits: {{ max_event_bytes: 1KiB }}
streams:
  - path: /events/{{channel}}
    upstream: {{ kind: publish }}
  - path: /feed
    upstream: {{ url: "http://127.0.0.1:9/feed" }}
{extra}"#
    )
}

fn start(dir: &tempfile::TempDir) -> (Binary, SocketAddr, SocketAddr) {
    let binary = binary::start(dir.path(), &config(""), 1, true);
    let (addr, publish) = (binary.listen[0], binary.publish.expect("publish listener"));
    (binary, addr, publish)
}

const AUTH: &str = "Authorization: Bearer t0ken-Secret-42";

async fn sse_seen(addr: SocketAddr, path: &str, last: Option<&str>, n: usize) -> Vec<Seen> {
    let mut sse = connect(addr, Proto::H1).await.sse(addr, path, last).await;
    sse.take(n)
        .await
        .into_iter()
        .map(|e| {
            (
                e.id.unwrap_or_default(),
                e.event.unwrap_or_else(|| "message".into()),
                e.data,
            )
        })
        .collect()
}

fn seen(id: &str, event: &str, data: &str) -> Seen {
    (id.to_owned(), event.to_owned(), data.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_publishes_reach_sse_websocket_and_long_poll_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, addr, publish) = start(&dir);
    let path = "/events/demo";
    let mut clients = Clients::open(addr, path).await;

    let text = curl(
        publish,
        "/events/demo?event=greet",
        &[AUTH],
        b"hello\nworld",
    )
    .await;
    assert_eq!(text.status, 200, "{text:?}");
    assert_eq!(text.json["published"], 1);
    assert_eq!(text.json["subscribers"], 2, "SSE and WebSocket");
    assert_eq!(text.header("content-type"), Some("application/json"));
    let json = ["Content-Type: application/json", AUTH];
    let object = curl(
        publish,
        path,
        &json,
        br#"{"data": {"n": 1}, "event": "obj", "id": "x-1"}"#,
    )
    .await;
    assert_eq!(object.ids(), ["x-1"], "the given id is kept");
    let array = curl(
        publish,
        path,
        &json,
        br#"[{"data": "a"}, {"data": "b", "event": "arr"}]"#,
    )
    .await;
    assert_eq!(array.json["published"], 2);
    let ndjson = ["Content-Type: application/x-ndjson", AUTH];
    let lines = curl(
        publish,
        path,
        &ndjson,
        b"{\"data\":\"l1\"}\n{\"data\":[1,2]}\n",
    )
    .await;
    assert_eq!(lines.json["published"], 2);

    let ids: Vec<String> = [&text, &object, &array, &lines]
        .iter()
        .flat_map(|a| a.ids())
        .collect();
    // Assigned ids grow with the stream's position.
    let seq = |id: &str| id.rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok());
    let assigned: Vec<u64> = ids
        .iter()
        .filter(|id| *id != "x-1")
        .filter_map(|id| seq(id))
        .collect();
    assert_eq!(assigned.len(), 5, "{ids:?}");
    assert!(assigned.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let expected = vec![
        seen(&ids[0], "greet", "hello\nworld"),
        seen(&ids[1], "obj", r#"{"n":1}"#),
        seen(&ids[2], "message", "a"),
        seen(&ids[3], "arr", "b"),
        seen(&ids[4], "message", "l1"),
        seen(&ids[5], "message", "[1,2]"),
    ];
    let (sse, ws) = clients.take(6).await;
    assert_eq!(sse, expected);
    assert_eq!(ws, expected);
    // Once: the next event each sees is the one published next.
    let marker = curl(publish, path, &[AUTH], b"marker").await;
    let (sse, ws) = clients.take(1).await;
    assert_eq!(sse, [seen(&marker.ids()[0], "message", "marker")]);
    assert_eq!(ws, sse);

    // Long-poll from the first event, and SSE resuming with Last-Event-ID over assigned ids.
    let mut all = expected.clone();
    all.push(sse[0].clone());
    assert_eq!(long_poll(addr, path, &ids[0], 6).await, all[1..]);
    assert_eq!(sse_seen(addr, path, Some(&ids[2]), 4).await, all[3..]);

    let admin = binary.admin.unwrap();
    let ok = r#"pushbridge_published_total{result="ok",route="/events/{channel}"}"#;
    assert_eq!(metric(admin, ok).await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_creates_the_stream_and_keeps_its_events_for_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (_binary, addr, publish) = start(&dir);
    let first = curl(publish, "/events/later", &[AUTH], b"one").await;
    assert_eq!(first.json["subscribers"], 0);
    let second = curl(publish, "/events/later", &[AUTH], b"two").await;
    let ids = [first.ids()[0].clone(), second.ids()[0].clone()];
    // Nobody was subscribed: a client resuming from the first id still gets the second.
    assert_eq!(
        sse_seen(addr, "/events/later", Some(&ids[0]), 1).await,
        [seen(&ids[1], "message", "two")]
    );
}

/// Status, path, headers, body, what the error says.
type Case<'a> = (u16, &'a str, Vec<&'a str>, &'a [u8], &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answers_json_and_publishes_nothing_of_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let (mut binary, addr, publish) = start(&dir);
    let path = "/events/err";
    let mut sse = connect(addr, Proto::H1).await.sse(addr, path, None).await;
    let json = ["Content-Type: application/json", AUTH];
    let ndjson = ["Content-Type: application/x-ndjson", AUTH];
    let big = vec![b'x'; 5000];
    let big_event = format!(r#"{{"data": "{}"}}"#, "y".repeat(2000));
    let cases: Vec<Case> = vec![
        (401, path, vec![], b"x", "Bearer"),
        (
            401,
            path,
            vec!["Authorization: Bearer WRONG-tok-99"],
            b"x",
            "wrong bearer token",
        ),
        (
            401,
            path,
            vec!["Authorization: Bearer t0ken-Secret-4"],
            b"x",
            "wrong bearer token",
        ),
        (
            401,
            path,
            vec!["Authorization: Bearer t0ken-Secret-42x"],
            b"x",
            "wrong bearer token",
        ),
        (404, "/nowhere", vec![AUTH], b"x", "no stream route"),
        (404, "/feed", vec![AUTH], b"x", "does not accept publishes"),
        (400, path, json.to_vec(), b"{not json", "not JSON"),
        (
            400,
            path,
            ndjson.to_vec(),
            b"{\"data\":1}\n{\"data\":\n{\"data\":3}\n",
            "line 2",
        ),
        (
            400,
            path,
            json.to_vec(),
            br#"[{"data": 1}, {"event": "e"}]"#,
            "no \"data\"",
        ),
        (
            400,
            path,
            json.to_vec(),
            br#"{"data": 1, "id": "a\rb"}"#,
            "line break",
        ),
        (
            400,
            "/events/err?event=a%0Ab",
            vec![AUTH],
            b"x",
            "line break",
        ),
        (413, path, vec![AUTH], &big, "publish.max_body"),
        (
            413,
            path,
            json.to_vec(),
            big_event.as_bytes(),
            "limits.max_event_bytes",
        ),
    ];
    for (status, at, headers, body, says) in &cases {
        let answer = curl(publish, at, headers, body).await;
        assert_eq!(answer.status, *status, "{at} {answer:?}");
        let error = answer.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer:?}"));
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }
    let get = curl_method(publish, "GET", path, &[AUTH], b"").await;
    assert_eq!(get.status, 405, "{get:?}");
    assert_eq!(get.header("allow"), Some("POST"));
    assert!(
        curl(publish, path, &[], b"x")
            .await
            .header("www-authenticate")
            .is_some()
    );

    // Nothing of any refused request reached the subscriber: the next event is the one published now.
    let marker = curl(publish, path, &[AUTH], b"marker").await;
    assert_eq!(marker.status, 200, "{marker:?}");
    let event = sse.next_event().await.unwrap();
    assert_eq!(
        (event.id.unwrap(), event.data),
        (marker.ids()[0].clone(), "marker".to_owned())
    );

    let admin = binary.admin.unwrap();
    let count = |route: &str, result: &str| {
        format!(r#"pushbridge_published_total{{result="{result}",route="{route}"}}"#)
    };
    let route = "/events/{channel}";
    assert_eq!(metric(admin, &count(route, "unauthorized")).await, 5.0);
    assert_eq!(metric(admin, &count(route, "bad_request")).await, 5.0);
    assert_eq!(metric(admin, &count(route, "too_large")).await, 2.0);
    assert_eq!(metric(admin, &count("", "not_found")).await, 1.0);
    assert_eq!(metric(admin, &count("/feed", "not_found")).await, 1.0);
    assert_eq!(
        metric(admin, &count(route, "method_not_allowed")).await,
        1.0
    );
    // Neither the token nor a body shows in the log (read to its end: after a drain, which ends the publish
    // listener's connections too).
    binary.signal("TERM");
    assert_eq!(binary.wait_exit(Duration::from_secs(10)), Some(0));
    let log = binary.drain_log().join("\n");
    assert!(log.contains("Publish refused"), "refusals are logged");
    assert!(
        !log.contains(TOKEN) && !log.contains("WRONG-tok") && !log.contains("{not json"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_retried_three_times_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, addr, publish) = start(&dir);
    let path = "/events/orders";
    let mut sse = connect(addr, Proto::H1).await.sse(addr, path, None).await;
    let headers = [AUTH, "Idempotency-Key: order-42"];
    let first = curl(publish, path, &headers, b"paid").await;
    assert_eq!(first.status, 200);
    for _ in 0..3 {
        let retry = curl(publish, path, &headers, b"paid").await;
        assert_eq!(retry.status, 200);
        assert_eq!(retry.json, first.json, "the first answer again");
    }
    // The same key on another stream is another key.
    let other = curl(publish, "/events/other", &headers, b"paid").await;
    assert_eq!(other.json["published"], 1);
    let marker = curl(publish, path, &[AUTH], b"marker").await;
    let events = sse.take(2).await;
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.id.clone().unwrap(), e.data.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (first.ids()[0].clone(), "paid".to_owned()),
            (marker.ids()[0].clone(), "marker".to_owned())
        ]
    );
    let duplicate = r#"pushbridge_published_total{result="duplicate",route="/events/{channel}"}"#;
    assert_eq!(metric(binary.admin.unwrap(), duplicate).await, 3.0);
    let bad = curl(publish, path, &[AUTH, "Idempotency-Key: has space"], b"x").await;
    assert_eq!(bad.status, 400);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_listener_serves_tls_with_the_listen_block() {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::certs::TestCa::new();
    let (cert, key) = ca.leaf_files(dir.path(), support::certs::KeyKind::EcdsaP256);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let tls = format!(
        "  tls: {{ cert: {}, key: {} }}\n",
        cert.display(),
        key.display()
    );
    let yaml = config("").replace("  max_body: 4KiB\n", &format!("  max_body: 4KiB\n{tls}"));
    let binary = binary::start(dir.path(), &yaml, 1, true);
    let (addr, publish) = (binary.listen[0], binary.publish.unwrap());
    let mut sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/tls", None)
        .await;
    let url = format!("https://localhost:{}/events/tls", publish.port());
    let cacert = ca_file.display().to_string();
    for (version, data) in [("--http1.1", "over h1"), ("--http2", "over h2")] {
        let extra = ["--cacert", &cacert, version];
        let answer = curl_url(&url, &extra, "POST", &[AUTH], data.as_bytes()).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(sse.next_event().await.unwrap().data, data);
    }
    let plain = curl(publish, "/events/tls", &[AUTH], b"x").await;
    assert_ne!(
        plain.status, 200,
        "plaintext is refused on a TLS publish listener"
    );
}

#[test]
fn check_refuses_publish_true_on_other_kinds_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let yaml = config("").replace(
        "    upstream: { url: \"http://127.0.0.1:9/feed\" }\n",
        "    upstream: { url: \"http://127.0.0.1:9/feed\" }\n    publish: true\n",
    );
    std::fs::write(&path, yaml).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushbridge"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    let at = format!("{}:16:14: streams[1].publish:", path.display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(stderr.contains("kind: redis"), "{stderr}");
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

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A POST's header block in HPACK without Huffman or indexing, with the bearer token.
fn post_headers(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend_from_slice(&[0x04, path.len() as u8]); // :path
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 1, b'x']); // :authority x
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
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = &buf[9..9 + len];
                match buf[3] {
                    1 => answered.push(stream),
                    3 => refused.push((
                        stream,
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                    )),
                    _ => {}
                }
                buf.drain(..9 + len);
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
