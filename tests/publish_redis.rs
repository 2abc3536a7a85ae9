//! Publishing on a `kind: redis` route with `publish: true` (issue 18), two pushbridge replicas and a real
//! `redis-server`: a POST to replica A reaches subscribers on replica B with the Redis entry id; an
//! `Idempotency-Key` retried on B after A answered publishes nothing and answers A's answer; with Redis stopped a
//! POST gets 503 with `Retry-After`, and once Redis is back nothing acknowledged is lost or repeated.

mod support;

use std::net::SocketAddr;

use support::binary::{self, Binary};
use support::client::{Proto, SseClient, connect, eventually};
use support::feeds::{Clients, Seen, metric};
use support::publish::curl;
use support::redis::RedisServer;

const UP: &str = r#"pushbridge_upstream_up{route="/rooms/{room}"}"#;

fn replica(dir: &tempfile::TempDir, redis: &RedisServer) -> Binary {
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
publish: {{ address: "127.0.0.1:0" }}
streams:
  - path: /rooms/{{room}}
    upstream:
      kind: redis
      url: "{url}"
      key: "room:{{room}}"
      connect_timeout: 2s
      reconnect: {{ initial: 10ms, max: 50ms }}
    publish: true
    idle_timeout: 1m
"#,
        url = redis.url()
    );
    binary::start(dir.path(), &yaml, 1, true)
}

async fn wait_up(admin: SocketAddr) {
    eventually("the Redis upstream is connected", || async move {
        metric(admin, UP).await == 1.0
    })
    .await;
}

async fn sse(addr: SocketAddr, path: &str) -> SseClient {
    connect(addr, Proto::H1).await.sse(addr, path, None).await
}

fn seen(id: &str, event: &str, data: &str) -> Seen {
    (id.to_owned(), event.to_owned(), data.to_owned())
}

fn sse_seen(events: Vec<pushbridge::sse::SseEvent>) -> Vec<Seen> {
    events
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_to_replica_a_reaches_replica_b_and_a_retry_on_b_delivers_once() {
    let redis = RedisServer::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b) = (replica(&dirs[0], &redis), replica(&dirs[1], &redis));
    let (a_publish, b_publish) = (a.publish.unwrap(), b.publish.unwrap());
    let path = "/rooms/42";
    let mut on_a = sse(a.listen[0], path).await;
    let mut on_b = Clients::open(b.listen[0], path).await;
    wait_up(a.admin.unwrap()).await;
    wait_up(b.admin.unwrap()).await;

    let retry = ["Idempotency-Key: msg-7", "Content-Type: application/json"];
    let body = br#"[{"data": "hi", "event": "chat"}, {"data": {"typing": true}}]"#;
    let first = curl(a_publish, path, &retry, body).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json["subscribers"], 1, "replica A's own subscriber");
    let ids = first.ids();
    let entries = redis.entries("room:42").await;
    let entry_ids: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(entry_ids, ids, "the answer holds the Redis entry ids");
    let expected = vec![
        seen(&ids[0], "chat", "hi"),
        seen(&ids[1], "message", r#"{"typing":true}"#),
    ];
    assert_eq!(sse_seen(on_a.take(2).await), expected);
    let (sse_b, ws_b) = on_b.take(2).await;
    assert_eq!(
        (&sse_b, &ws_b),
        (&expected, &expected),
        "replica B delivers A's publish"
    );

    // The caller retries on B after A answered: A's answer, nothing published.
    let again = curl(b_publish, path, &retry, body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json, first.json);
    let marker = curl(b_publish, path, &[], b"marker").await;
    assert_eq!(
        marker.json["subscribers"], 2,
        "replica B's SSE and WebSocket clients"
    );
    let (sse_b, ws_b) = on_b.take(1).await;
    let next = vec![seen(&marker.ids()[0], "message", "marker")];
    assert_eq!((&sse_b, &ws_b), (&next, &next), "delivered once");
    assert_eq!(redis.entries("room:42").await.len(), 3);
    let duplicate = r#"pushbridge_published_total{result="duplicate",route="/rooms/{room}"}"#;
    assert_eq!(metric(b.admin.unwrap(), duplicate).await, 1.0);

    // Given ids are refused: the entry id is the event id.
    let with_id = curl(a_publish, "/rooms/42?id=x", &[], b"x").await;
    assert_eq!(with_id.status, 400, "{with_id:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_answers_503_and_nothing_acknowledged_is_lost() {
    let mut redis = RedisServer::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b) = (replica(&dirs[0], &redis), replica(&dirs[1], &redis));
    let a_publish = a.publish.unwrap();
    let path = "/rooms/7";
    let mut on_b = sse(b.listen[0], path).await;
    wait_up(b.admin.unwrap()).await;

    let ndjson = ["Content-Type: application/x-ndjson"];
    let before = curl(
        a_publish,
        path,
        &ndjson,
        b"{\"data\":\"b1\"}\n{\"data\":\"b2\"}\n",
    )
    .await;
    assert_eq!(before.status, 200, "{before:?}");
    let mut acknowledged = before.ids();

    redis.kill();
    // On the connection that was open the command may have been written before the failure showed: 503, the
    // outcome unknown (it was not, Redis is gone). The next one finds no Redis to connect to: surely not published.
    let first = curl(a_publish, path, &[], b"lost?").await;
    assert_eq!(first.status, 503, "{first:?}");
    assert_eq!(first.header("retry-after"), Some("1"));
    let refused = curl(a_publish, path, &[], b"lost?").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let error = refused.json["error"].as_str().unwrap();
    assert!(error.contains("were not published"), "{error}");
    let unavailable = r#"pushbridge_published_total{result="unavailable",route="/rooms/{room}"}"#;
    assert_eq!(metric(a.admin.unwrap(), unavailable).await, 2.0);

    redis.restart().await;
    // The caller retries with an Idempotency-Key until Redis answers: published exactly once.
    let mut after = None;
    for _ in 0..100 {
        let answer = curl(a_publish, path, &["Idempotency-Key: after-1"], b"a1").await;
        if answer.status == 200 {
            after = Some(answer);
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    acknowledged.extend(after.expect("Redis is back").ids());
    let got: Vec<String> = sse_seen(on_b.take(3).await)
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(
        got, acknowledged,
        "every acknowledged event, once, in order"
    );
    let entries = redis.entries("room:7").await;
    let data: Vec<&str> = entries.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        data,
        ["b1", "b2", "a1"],
        "the refused POST published nothing"
    );
}

/// Redis stopped (SIGSTOP) after the command was written: the 503 says the outcome is unknown, not that nothing
/// was published; Redis, resumed, runs it; the retry with the same `Idempotency-Key` answers the first result and
/// the event is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_may_have_reached_redis_answers_503_outcome_unknown_and_a_retry_delivers_once()
 {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&dir, &redis);
    let (publish, admin) = (a.publish.unwrap(), a.admin.unwrap());
    let path = "/rooms/9";
    let mut on_a = sse(a.listen[0], path).await;
    wait_up(admin).await;
    let warm = curl(publish, path, &[], b"warm").await;
    assert_eq!(warm.status, 200, "{warm:?}");
    assert_eq!(on_a.next_event().await.unwrap().data, "warm");

    redis.pause();
    let key = ["Idempotency-Key: maybe-1"];
    let unknown = curl(publish, path, &key, b"maybe").await;
    redis.resume();
    assert_eq!(unknown.status, 503, "{unknown:?}");
    assert_eq!(unknown.header("retry-after"), Some("1"));
    let error = unknown.json["error"].as_str().unwrap();
    assert!(
        error.contains("may or may not have been published")
            && error.contains("retry with the same Idempotency-Key"),
        "{error}"
    );
    // It was: Redis ran the command once it was resumed.
    let event = on_a.next_event().await.unwrap();
    assert_eq!(event.data, "maybe");
    let retry = curl(publish, path, &key, b"maybe").await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.ids(), [event.id.unwrap()], "the first result");
    let marker = curl(publish, path, &[], b"marker").await;
    assert_eq!(marker.status, 200, "{marker:?}");
    assert_eq!(
        on_a.next_event().await.unwrap().data,
        "marker",
        "delivered once"
    );
    let data: Vec<String> = redis
        .entries("room:9")
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(data, ["warm", "maybe", "marker"]);
    let duplicate = r#"pushbridge_published_total{result="duplicate",route="/rooms/{room}"}"#;
    assert_eq!(metric(admin, duplicate).await, 1.0);
}
