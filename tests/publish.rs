//! The publish API (issue 18) on the real binary: `curl` publishes text, JSON, arrays and NDJSON; SSE, WebSocket
//! and long-poll subscribers get each event once and in order; `Last-Event-ID` resumes over assigned ids; every
//! error answers JSON and publishes nothing of its request; `Idempotency-Key` retries deliver once.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::binary;
use support::client::{Proto, connect};
use support::feeds::{Clients, Seen, long_poll, metric};
use support::publish::{AUTH, TOKEN, config, curl, curl_method, curl_url, start};

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
