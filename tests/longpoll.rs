//! Long-poll end to end (DESIGN §4): the real server, a real SSE upstream, hyper clients over HTTP/1.1, HTTP/2 and
//! TLS. Immediate answers, held polls, the timeout, batching, gaps, the first poll without a cursor, JSONP, CORS,
//! drain, and a thousand held polls answered by one publish.

#[path = "longpoll/polls.rs"]
mod polls;
mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use polls::{
    answer, config, expected, get, held_polls, keeper, long_poll_gauge, poll, publish, request,
    spawn_poll, wait_open_polls, wait_subscribers,
};
use serde_json::Value;
use support::certs::{KeyKind, TestCa};
use support::client::{Proto, connect, connect_tls};
use support::proxy;
use support::upstream::SseUpstream;

#[tokio::test]
async fn newer_events_are_answered_at_once_over_h1_and_h2() {
    let upstream = SseUpstream::start(true).await;
    // A held poll would outlast the test's WAIT: an answer proves it was immediate.
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 3).await;

    for proto in [Proto::H1, Proto::H2] {
        let got = poll(addr, proto, "/events/x?last_event_id=1", &[]).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.headers["content-type"], "application/json");
        assert_eq!(got.headers["cache-control"], "no-store");
        assert_eq!(got.headers["x-content-type-options"], "nosniff");
        assert_eq!(got.headers["x-pushbridge-transport"], "long-poll");
        assert_eq!(got.events(), expected(2, 3), "{proto:?}");
        assert_eq!(got.cursor(), "3");
        assert!(!got.gap());
        let event = &got.json()["events"][0];
        assert_eq!(
            event["event"], "message",
            "the envelope names the default event type"
        );

        // The cursor may also come as the Last-Event-ID header, and `transport=long-poll` names it explicitly.
        let got = poll(
            addr,
            proto,
            "/events/x?transport=long-poll",
            &[("last-event-id", "2")],
        )
        .await;
        assert_eq!(got.events(), expected(3, 3));
    }
    let delivered = proxy
        .running()
        .metrics()
        .events_delivered
        .with_label_values(&["long-poll"])
        .get();
    assert_eq!(delivered, 6);
    assert_eq!(long_poll_gauge(&proxy), 0, "no poll is open any more");
}

#[tokio::test]
async fn over_tls_h2() {
    let upstream = SseUpstream::start(true).await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let yaml = config(upstream.addr, "timeout: 1h", "").replace(
        r#"- address: "127.0.0.1:0""#,
        &format!(
            r#"- address: "127.0.0.1:0"
    tls: {{ cert: "{}", key: "{}" }}"#,
            cert.display(),
            key.display()
        ),
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let mut sender = connect_tls(addr, ca.client_config(&[b"h2"]), Proto::H2).await;
    let first = tokio::spawn(async move {
        answer(sender.send(get(addr, "/events/x", Proto::H2, &[])).await).await
    });
    upstream.wait_connections(1).await;
    wait_subscribers(&proxy, 1).await;
    upstream.publish("over tls");
    let got = first.await.unwrap();
    assert_eq!(got.events(), [("1".to_owned(), "over tls".to_owned())]);
}

#[tokio::test]
async fn a_poll_with_nothing_new_is_held_until_an_event_arrives() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 1).await;

    for (proto, n) in [(Proto::H1, 2), (Proto::H2, 3)] {
        let cursor = (n - 1).to_string();
        let held = spawn_poll(addr, proto, format!("/events/x?last_event_id={cursor}"));
        // The poll is subscribed and waiting: nothing newer than its cursor exists yet.
        wait_subscribers(&proxy, 2).await;
        assert_eq!(
            long_poll_gauge(&proxy),
            1,
            "the held poll is an open long-poll session"
        );
        publish(&upstream, &mut keeper, n, n).await;
        let got = held.await.unwrap();
        assert_eq!(
            got.events(),
            expected(n, n),
            "the event published after the poll was sent"
        );
        assert_eq!(got.cursor(), n.to_string());
        // Answered: the poll no longer costs a subscription.
        wait_subscribers(&proxy, 1).await;
        assert_eq!(long_poll_gauge(&proxy), 0);
    }
}

#[tokio::test]
async fn the_timeout_answers_an_empty_list_and_echoes_the_cursor() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 200ms", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 2).await;
    for proto in [Proto::H1, Proto::H2] {
        let started = Instant::now();
        let got = poll(addr, proto, "/events/x?last_event_id=2", &[]).await;
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "held for the timeout: {:?}",
            started.elapsed()
        );
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(
            got.json(),
            serde_json::json!({"events": [], "last_event_id": "2", "gap": false})
        );
    }
}

#[tokio::test]
async fn max_batch_is_honoured_over_several_polls_without_loss() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h, max_batch: 3", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 11).await;
    let mut sender = connect(addr, Proto::H2).await;
    let mut cursor = "1".to_owned();
    let mut received = Vec::new();
    let mut sizes = Vec::new();
    while cursor != "11" {
        let path = format!("/events/x?last_event_id={cursor}");
        let got = answer(sender.send(get(addr, &path, Proto::H2, &[])).await).await;
        sizes.push(got.events().len());
        received.extend(got.events());
        cursor = got.cursor();
    }
    assert_eq!(sizes, [3, 3, 3, 1]);
    assert_eq!(received, expected(2, 11), "every event once, in order");
}

#[tokio::test]
async fn an_evicted_cursor_gets_gap_and_the_oldest_events_held() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(
        upstream.addr,
        "timeout: 1h",
        "    buffer: { events: 5, age: 5m }",
    ))
    .await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 15).await;
    let got = poll(addr, Proto::H1, "/events/x?last_event_id=3", &[]).await;
    assert!(got.gap(), "{:?}", got.json());
    assert_eq!(
        got.events(),
        expected(11, 15),
        "everything still buffered, from the oldest"
    );
    assert_eq!(got.cursor(), "15");
    assert_eq!(proxy.running().metrics().resumes_gap.get(), 1);
    // Resuming from the answer's cursor is no gap.
    let held = spawn_poll(addr, Proto::H1, "/events/x?last_event_id=15".into());
    wait_subscribers(&proxy, 2).await;
    publish(&upstream, &mut keeper, 16, 16).await;
    let got = held.await.unwrap();
    assert!(!got.gap());
    assert_eq!(got.events(), expected(16, 16));
}

#[tokio::test]
async fn the_first_poll_without_a_cursor_learns_the_newest_id() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 200ms", "")).await;
    let addr = proxy.addr();

    // A stream holding nothing yet: the cursor is a position token naming the stream's head.
    let got = poll(addr, Proto::H1, "/events/fresh", &[]).await;
    assert_eq!((got.events(), got.gap()), (vec![], false));
    assert!(got.cursor().starts_with("pb:"), "{}", got.cursor());

    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(2).await;
    publish(&upstream, &mut keeper, 1, 3).await;
    let first = poll(addr, Proto::H2, "/events/x", &[]).await;
    assert_eq!(
        first.events(),
        [],
        "old events are not replayed to a client without a position"
    );
    assert_eq!(first.cursor(), "3");
    // Published between the two polls: nothing is lost.
    publish(&upstream, &mut keeper, 4, 5).await;
    let next = poll(
        addr,
        Proto::H2,
        &format!("/events/x?last_event_id={}", first.cursor()),
        &[],
    )
    .await;
    assert_eq!(next.events(), expected(4, 5));
    assert_eq!(next.cursor(), "5");
}

#[tokio::test]
async fn jsonp_valid_invalid_and_disabled() {
    let upstream = SseUpstream::start(true).await;
    let extra = format!(
        r#"  - path: /plain/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
"#,
        upstream.addr
    );
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h, jsonp: true", &extra)).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 2).await;

    let got = poll(
        addr,
        Proto::H1,
        "/events/x?last_event_id=1&callback=app.on_poll",
        &[],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.headers["content-type"],
        "application/javascript; charset=utf-8"
    );
    assert_eq!(got.headers["x-content-type-options"], "nosniff");
    assert_eq!(got.headers["cache-control"], "no-store");
    let text = String::from_utf8(got.body.to_vec()).unwrap();
    let json = text
        .strip_prefix("/**/app.on_poll(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("JSONP shape: {text}"));
    let value: Value = serde_json::from_str(json).unwrap();
    assert_eq!(value["events"][0]["data"], "e2");
    assert_eq!(value["last_event_id"], "2");

    for bad in ["alert(1)", "a-b", "1st", "a..b", "x%3Balert(1)", ""] {
        let got = poll(
            addr,
            Proto::H1,
            &format!("/events/x?last_event_id=1&callback={bad}"),
            &[],
        )
        .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "callback={bad}");
        assert!(
            String::from_utf8_lossy(&got.body).contains("JavaScript identifier"),
            "callback={bad}"
        );
    }
    let long = "a".repeat(65);
    let got = poll(addr, Proto::H1, &format!("/events/x?callback={long}"), &[]).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);

    let got = poll(addr, Proto::H2, "/plain/x?callback=cb", &[]).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&got.body).contains("JSONP is not enabled"),
        "{:?}",
        got.body
    );
    assert_eq!(long_poll_gauge(&proxy), 0);
}

#[tokio::test]
async fn cors_for_allowed_origins_and_403_for_others() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(
        upstream.addr,
        "timeout: 1h",
        "    origins: [\"https://app.example.com\"]",
    ))
    .await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 2).await;

    let allowed = [("origin", "https://app.example.com")];
    let got = poll(addr, Proto::H1, "/events/x?last_event_id=1", &allowed).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(got.headers["access-control-allow-credentials"], "true");
    assert_eq!(got.events(), expected(2, 2));

    let got = poll(
        addr,
        Proto::H2,
        "/events/x?last_event_id=1",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(got.headers.get("access-control-allow-origin").is_none());

    let mut sender = connect(addr, Proto::H1).await;
    let preflight = request(
        http::Method::OPTIONS,
        addr,
        "/events/x",
        Proto::H1,
        &allowed,
    );
    let got = answer(sender.send(preflight).await).await;
    assert_eq!(got.status, StatusCode::NO_CONTENT);
    assert_eq!(
        got.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        got.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
}

#[tokio::test]
async fn drain_answers_held_polls_at_once() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 1).await;
    let held: Vec<_> = [Proto::H1, Proto::H2]
        .map(|proto| spawn_poll(addr, proto, "/events/x?last_event_id=1".into()))
        .into();
    wait_subscribers(&proxy, 3).await;
    let drained = tokio::spawn(proxy.shutdown());
    for poll in held {
        let got = poll.await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(
            got.json(),
            serde_json::json!({"events": [], "last_event_id": "1", "gap": false})
        );
    }
    assert!(
        drained.await.unwrap(),
        "drain finished within the grace period"
    );
}

#[tokio::test]
async fn a_thousand_held_polls_are_all_answered_by_one_publish() {
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 1).await;
    let polls = held_polls(addr, 10, 100, "/events/x?last_event_id=1").await;
    wait_subscribers(&proxy, 1001).await;
    assert_eq!(long_poll_gauge(&proxy), 1000);
    publish(&upstream, &mut keeper, 2, 2).await;
    for poll in polls {
        let got = poll.await.unwrap();
        assert_eq!(got.events(), expected(2, 2));
    }
    wait_subscribers(&proxy, 1).await;
    assert_eq!(long_poll_gauge(&proxy), 0);
    assert_eq!(upstream.connections(), 1);
    // The process is fine: a new poll is still answered.
    assert_eq!(
        poll(addr, Proto::H1, "/events/x?last_event_id=1", &[])
            .await
            .events(),
        expected(2, 2)
    );
}

/// Memory per held poll in the real binary: 2000 polls held on 20 HTTP/2 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_polls_cost_little_memory_in_the_real_binary() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin: { address: \"127.0.0.1:0\" }\nlog: { format: json }\n";
    let yaml = format!("{}{admin}", config(upstream.addr, "timeout: 1h", ""));
    let binary = support::binary::start(dir.path(), &yaml, 1, true);
    let (addr, admin) = (binary.listen[0], binary.admin.unwrap());
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 1).await;
    // Warm up (allocator pools, the first connections), then measure the growth for 2000 more.
    let warm = held_polls(addr, 2, 100, "/events/x?last_event_id=1").await;
    wait_open_polls(admin, 200).await;
    let before = binary.rss_kib();
    let polls = held_polls(addr, 20, 100, "/events/x?last_event_id=1").await;
    wait_open_polls(admin, 2200).await;
    let after = binary.rss_kib();
    let per_poll = after.saturating_sub(before) as f64 / 2000.0;
    println!(
        "held polls: RSS {before} KiB -> {after} KiB: {per_poll:.2} KiB per held poll (incl. h2 stream state)"
    );
    assert!(per_poll < 32.0, "{per_poll:.2} KiB per held poll");
    publish(&upstream, &mut keeper, 2, 2).await;
    for poll in warm.into_iter().chain(polls) {
        assert_eq!(poll.await.unwrap().events(), expected(2, 2));
    }
    wait_open_polls(admin, 0).await;
}

#[tokio::test]
async fn an_abandoned_poll_releases_its_subscription() {
    use tokio::io::AsyncWriteExt;
    let upstream = SseUpstream::start(true).await;
    let proxy = proxy::start(&config(upstream.addr, "timeout: 1h", "")).await;
    let addr = proxy.addr();
    let mut keeper = keeper(addr, "/events/x").await;
    upstream.wait_connections(1).await;
    publish(&upstream, &mut keeper, 1, 1).await;

    // HTTP/1.1: the client closes its socket while the poll is held.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /events/x?last_event_id=1 HTTP/1.1\r\nhost: {addr}\r\naccept: application/json\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    wait_subscribers(&proxy, 2).await;
    drop(tcp);
    wait_subscribers(&proxy, 1).await;

    // HTTP/2: the client resets the stream (drops its response future); the connection stays up.
    let support::client::Sender::H2(mut sender) = connect(addr, Proto::H2).await else {
        unreachable!()
    };
    sender.ready().await.unwrap();
    let pending = sender.send_request(get(addr, "/events/x?last_event_id=1", Proto::H2, &[]));
    let held = tokio::spawn(pending);
    wait_subscribers(&proxy, 2).await;
    held.abort();
    wait_subscribers(&proxy, 1).await;
    assert_eq!(long_poll_gauge(&proxy), 0);
}
