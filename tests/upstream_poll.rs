//! `kind: poll` upstreams: a polling server with cursors and `ETag` feeds SSE, WebSocket and long-poll
//! clients; `304` answers publish nothing; the cursor of each answer goes back as `?cursor=`; errors back off
//! and polling resumes from the cursor once the server is back; a long-poll endpoint is not hammered.

mod support;

use std::time::Duration;

use support::feeds::{Clients, Seen, long_poll, metric};
use support::json_upstream::PollUpstream;
use support::proxy;

fn config(upstream: std::net::SocketAddr, interval: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - path: /legacy/{{channel}}
    upstream:
      kind: poll
      url: "http://{upstream}/poll/{{channel}}"
      poll: {{ interval: {interval}, events: /events, cursor: /cursor }}
      map: {{ id: /id, data: /text }}
      resume: {{ query: cursor }}
      reconnect: {{ initial: 100ms, max: 200ms }}
    idle_timeout: 1m
"#
    )
}

fn seen(id: &str, data: &str) -> Seen {
    (id.into(), "message".into(), data.into())
}

#[tokio::test]
async fn polled_events_with_cursor_and_etag_reach_every_client_transport() {
    let upstream = PollUpstream::start(None).await;
    let proxy = proxy::start(&config(upstream.addr, "20ms")).await;
    let addr = proxy.addr();
    let mut clients = Clients::open(addr, "/legacy/x").await;
    for (id, text) in [("1", "one"), ("2", "two"), ("3", "three")] {
        upstream.publish(id, text);
    }
    let expected = vec![seen("1", "one"), seen("2", "two"), seen("3", "three")];
    let (sse, ws) = clients.take(3).await;
    assert_eq!((&sse, &ws), (&expected, &expected));
    assert_eq!(long_poll(addr, "/legacy/x", "1", 2).await, expected[1..]);

    // Nothing new: the same ETag comes back as If-None-Match and is answered 304.
    let not_modified = upstream.wait_status(304, 0).await;
    let requests = upstream.requests();
    assert!(requests[not_modified].if_none_match.is_some());
    assert_eq!(requests[not_modified].cursor.as_deref(), Some("3"));
    assert_eq!(requests[0].cursor, None, "the first poll has no position");

    // The server fails: the proxy backs off, then polls on from the cursor it had.
    upstream.set_down(true);
    let first_error = upstream.wait_status(503, 0).await;
    upstream.publish("4", "four");
    let errors_before = upstream.requests().len() - first_error;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let errors = upstream.requests().len() - first_error;
    assert!(
        errors - errors_before <= 3,
        "backed off, not polling every 20ms: {errors}"
    );
    upstream.set_down(false);
    let (sse, ws) = clients.take(1).await;
    assert_eq!(
        (sse, ws),
        (vec![seen("4", "four")], vec![seen("4", "four")])
    );
    let after = upstream.wait_status(200, first_error).await;
    assert_eq!(upstream.requests()[after].cursor.as_deref(), Some("3"));
    let connects =
        r#"pushbridge_upstream_connects_total{result="error",route="/legacy/{channel}"}"#;
    assert!(metric(proxy.admin(), connects).await >= 1.0);
}

#[tokio::test]
async fn a_long_poll_endpoint_is_asked_again_only_when_it_answers() {
    let upstream = PollUpstream::start(Some(Duration::from_secs(5))).await;
    let proxy = proxy::start(&config(upstream.addr, "0s")).await;
    let mut clients = Clients::open(proxy.addr(), "/legacy/x").await;
    for round in 1..=3 {
        let id = round.to_string();
        upstream.publish(&id, "tick");
        let (sse, _) = clients.take(1).await;
        assert_eq!(sse, [seen(&id, "tick")]);
    }
    // One held request per event, plus the one being held now (and the first, answered at once).
    let requests = upstream.requests();
    assert!(requests.len() <= 5, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 200));
}
