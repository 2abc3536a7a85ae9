//! `kind: redis` upstreams against a real `redis-server`: three pushbridge processes serve the same ids for the same
//! entries; a client moves from replica A to replica B (whose ring is deliberately tiny) and resumes exactly after its
//! last id through XRANGE; a trimmed stream gives exactly one gap notice; a Redis restart (AOF) mid-stream loses and
//! repeats nothing. SSE, WebSocket and long-poll clients throughout.

mod support;

use std::net::SocketAddr;

use futures_util::StreamExt;
use support::binary::{self, Binary};
use support::client::{Proto, WAIT, connect, eventually, get_text};
use support::feeds::{Clients, Seen, long_poll, metric};
use support::proxy;
use support::redis::RedisServer;

const UP: &str = r#"pushbridge_upstream_up{route="/events/{channel}"}"#;
const GAP_EVENT: &str = "pushbridge-gap";

fn config(redis: &RedisServer, ring: usize, log_json: bool) -> String {
    let log = if log_json {
        "log: { format: json }\n"
    } else {
        ""
    };
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
{log}streams:
  - path: /events/{{channel}}
    upstream:
      kind: redis
      url: "{url}"
      key: "events:{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
    buffer: {{ events: {ring} }}
    idle_timeout: 1m
"#,
        url = redis.url()
    )
}

async fn wait_up(admin: SocketAddr, n: f64) {
    eventually("the Redis upstream is connected", || async move {
        metric(admin, UP).await == n
    })
    .await;
}

/// Appends `n` entries named `tick` with data `{prefix}{i}`; returns them as clients should see them.
async fn append(redis: &RedisServer, channel: &str, prefix: &str, n: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    for i in 0..n {
        let data = format!("{prefix}{i}");
        let id = redis
            .xadd(&format!("events:{channel}"), "tick", &data)
            .await;
        out.push((id, "tick".to_owned(), data));
    }
    out
}

async fn sse_from(addr: SocketAddr, path: &str, last: Option<&str>) -> support::client::SseClient {
    connect(addr, Proto::H1).await.sse(addr, path, last).await
}

fn seen(event: pushbridge::sse::SseEvent) -> Seen {
    (
        event.id.unwrap_or_default(),
        event.event.unwrap_or_else(|| "message".into()),
        event.data,
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_from(addr: SocketAddr, path: &str, last: &str) -> Ws {
    let url = format!("ws://{addr}{path}?last_event_id={last}");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket client")
        .0
}

/// The next `n` envelopes of a WebSocket client, gap notices included.
async fn ws_take(ws: &mut Ws, n: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("WebSocket event in time")
            .expect("WebSocket open")
            .expect("WebSocket frame");
        if let Ok(text) = frame.to_text()
            && !text.is_empty()
        {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            out.push((field("id"), field("event"), field("data")));
        }
    }
    out
}

fn replica(dir: &tempfile::TempDir, redis: &RedisServer, ring: usize) -> Binary {
    binary::start(dir.path(), &config(redis, ring, true), 1, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_the_same_ids_and_a_client_resumes_on_another_replica() {
    let redis = RedisServer::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = replica(&dirs[0], &redis, 1000);
    let b = replica(&dirs[1], &redis, 2);
    let c = replica(&dirs[2], &redis, 1000);
    let path = "/events/news";

    let mut on_a = sse_from(a.listen[0], path, None).await;
    let mut on_b = Clients::open(b.listen[0], path).await;
    wait_up(a.admin.unwrap(), 1.0).await;
    wait_up(b.admin.unwrap(), 1.0).await;

    let mut entries = append(&redis, "news", "e", 6).await;
    let got: Vec<Seen> = on_a.take(6).await.into_iter().map(seen).collect();
    assert_eq!(got, entries, "replica A serves the entry ids");
    let (sse, ws) = on_b.take(6).await;
    assert_eq!(
        (&sse, &ws),
        (&entries, &entries),
        "replica B serves the same ids"
    );

    // The client leaves A after entry 2 (index 1); more entries arrive; B's ring keeps only the newest two.
    drop(on_a);
    entries.extend(append(&redis, "news", "f", 4).await);
    let (sse, _) = on_b.take(4).await;
    assert_eq!(sse, entries[6..]);

    let mut moved = sse_from(b.listen[0], path, Some(&entries[1].0)).await;
    let got: Vec<Seen> = moved.take(8).await.into_iter().map(seen).collect();
    assert_eq!(
        got,
        entries[2..],
        "exactly the entries after the last id, from XRANGE then the ring"
    );
    entries.extend(append(&redis, "news", "g", 1).await);
    assert_eq!(
        seen(moved.next_event().await.unwrap()),
        entries[10],
        "then live"
    );
    let b_admin = b.admin.unwrap();
    assert_eq!(
        metric(b_admin, r#"pushbridge_resumes_total{result="log"}"#).await,
        1.0
    );
    assert_eq!(metric(b_admin, "pushbridge_resume_gaps_total").await, 0.0);
    assert!(
        metric(
            b_admin,
            r#"pushbridge_redis_operations_total{op="history",result="ok"}"#
        )
        .await
            >= 2.0
    );

    // Replica C has no stream for the channel yet: long-poll and WebSocket resumes are served from Redis too.
    let polled = long_poll(c.listen[0], path, &entries[0].0, 10).await;
    assert_eq!(polled, entries[1..]);
    let mut ws = ws_from(c.listen[0], path, &entries[4].0).await;
    assert_eq!(ws_take(&mut ws, 6).await, entries[5..]);
    entries.extend(append(&redis, "news", "h", 1).await);
    assert_eq!(ws_take(&mut ws, 1).await, entries[11..]);
}

#[tokio::test]
async fn a_trimmed_stream_gives_exactly_one_gap_notice() {
    let redis = RedisServer::start().await;
    let proxy = proxy::start(&config(&redis, 2, false)).await;
    let addr = proxy.addr();
    let path = "/events/trim";
    let mut entries = append(&redis, "trim", "e", 10).await;
    redis.trim("events:trim", 3).await;
    assert_eq!(redis.entries("events:trim").await, entries[7..]);

    let mut sse = sse_from(addr, path, Some(&entries[1].0)).await;
    let gap = sse.next_event().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some(GAP_EVENT));
    assert!(gap.data.contains(&entries[1].0), "{}", gap.data);
    let got: Vec<Seen> = sse.take(3).await.into_iter().map(seen).collect();
    assert_eq!(got, entries[7..], "then what Redis still has");

    let mut ws = ws_from(addr, path, &entries[1].0).await;
    let got = ws_take(&mut ws, 4).await;
    assert_eq!(got[0].1, GAP_EVENT);
    assert_eq!(got[1..], entries[7..]);

    // Long-poll: the first answer says gap; the next poll, from the cursor it got, does not.
    let query = format!("?transport=long-poll&last_event_id={}", entries[1].0);
    let (status, body) = get_text(addr, &format!("{path}{query}")).await;
    assert_eq!(status, 200, "{body}");
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(batch["gap"], true, "{body}");
    let cursor = batch["last_event_id"].as_str().unwrap().to_owned();

    entries.extend(append(&redis, "trim", "f", 1).await);
    let polled = long_poll(
        addr,
        path,
        &cursor,
        11 - 7 - batch["events"].as_array().unwrap().len(),
    )
    .await;
    assert_eq!(polled.last(), entries.last());
    let next = sse.next_event().await.unwrap();
    assert_eq!(
        seen(next),
        entries[10],
        "no second gap notice, just the next event"
    );
    assert_eq!(ws_take(&mut ws, 1).await, entries[10..]);
    assert_eq!(
        metric(proxy.admin(), "pushbridge_resume_gaps_total").await,
        3.0
    );
}

#[tokio::test]
async fn a_redis_restart_mid_stream_loses_and_repeats_nothing() {
    let mut redis = RedisServer::start().await;
    let proxy = proxy::start(&config(&redis, 1000, false)).await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    let path = "/events/restart";
    let mut clients = Clients::open(addr, path).await;
    wait_up(admin, 1.0).await;
    let before = append(&redis, "restart", "a", 3).await;
    let (sse, ws) = clients.take(3).await;
    assert_eq!((&sse, &ws), (&before, &before));

    redis.kill();
    let read_errors = r#"pushbridge_redis_operations_total{op="read",result="error"}"#;
    eventually("the read failure is counted", || async move {
        metric(admin, read_errors).await >= 1.0
    })
    .await;
    wait_up(admin, 0.0).await;
    // The status page shows this replica's Redis trouble: the read errors, and the stream reconnecting with its error.
    let status: serde_json::Value =
        serde_json::from_str(&get_text(admin, "/status.json").await.1).unwrap();
    let read_errors = &status["redis"]["operations_total"]["read"]["error"];
    assert!(read_errors.as_u64() >= Some(1), "{status:#}");
    let stream = &status["routes"][0]["busiest"][0];
    assert!(
        stream["upstream"] == "reconnecting" || stream["upstream"] == "connecting",
        "{status:#}"
    );
    // Readiness never follows stream upstreams (issue 8): a shared Redis down must not empty every Service.
    assert_eq!(get_text(admin, "/readyz").await.0, 200);
    redis.restart().await;
    assert_eq!(
        redis.entries("events:restart").await,
        before,
        "the AOF kept every entry"
    );
    // Appended at once, possibly before the upstream reconnected: it resumes after the last id it read.
    let after = append(&redis, "restart", "b", 3).await;
    let (sse, ws) = clients.take(3).await;
    assert_eq!(
        (&sse, &ws),
        (&after, &after),
        "nothing lost, nothing repeated"
    );
    wait_up(admin, 1.0).await;
    let polled = long_poll(addr, path, &before[2].0, 3).await;
    assert_eq!(polled, after);
}

#[tokio::test]
async fn tee_writes_another_upstream_into_redis_for_every_replica() {
    let mut redis = RedisServer::start().await;
    let app = support::upstream::SseUpstream::start(true).await;
    let writer_yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - path: /app/{{channel}}
    upstream:
      url: "http://{app}/events/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
      tee: {{ url: "{url}", key: "events:{{channel}}", maxlen: 1000, queue: 4 }}
"#,
        app = app.addr,
        url = redis.url()
    );
    let writer = proxy::start(&writer_yaml).await;
    let reader = proxy::start(&config(&redis, 1000, false)).await;
    let mut direct = sse_from(writer.addr(), "/app/news", None).await;
    let mut shared = sse_from(reader.addr(), "/events/news", None).await;
    wait_up(reader.admin(), 1.0).await;
    eventually("the writer's upstream is connected", || async {
        metric(
            writer.admin(),
            r#"pushbridge_upstream_up{route="/app/{channel}"}"#,
        )
        .await
            == 1.0
    })
    .await;
    for i in 0..3 {
        app.publish(format!("d{i}"));
    }
    let direct_data: Vec<String> = direct.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(direct_data, ["d0", "d1", "d2"]);
    let got: Vec<Seen> = shared.take(3).await.into_iter().map(seen).collect();
    let entries = redis.entries("events:news").await;
    assert_eq!(
        got.iter().map(|s| s.2.as_str()).collect::<Vec<_>>(),
        ["d0", "d1", "d2"]
    );
    assert_eq!(
        got.iter().map(|s| &s.0).collect::<Vec<_>>(),
        entries.iter().map(|e| &e.0).collect::<Vec<_>>(),
        "the reader serves the entry ids"
    );

    // Redis down: the writer's own clients are not held up; the failures and the overflow of its queue are counted.
    redis.kill();
    // More than one write batch (64) plus the queue (4): some must be dropped, whatever the timing.
    for i in 3..80 {
        app.publish(format!("d{i}"));
    }
    let direct_data: Vec<String> = direct.take(77).await.into_iter().map(|e| e.data).collect();
    assert_eq!(direct_data.last().map(String::as_str), Some("d79"));
    let admin = writer.admin();
    eventually("tee failures and drops are counted", || async move {
        metric(
            admin,
            r#"pushbridge_redis_operations_total{op="tee",result="error"}"#,
        )
        .await
            >= 1.0
            && metric(admin, "pushbridge_tee_dropped_total").await >= 1.0
    })
    .await;
}

#[tokio::test]
async fn malformed_entries_are_skipped_live_and_read_past_in_deep_resume() {
    let redis = RedisServer::start().await;
    let yaml = config(&redis, 2, false).replace(
        "    idle_timeout: 1m\n",
        "    idle_timeout: 1m\n    long_poll: { max_batch: 2 }\n",
    );
    let proxy = proxy::start(&yaml).await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    let path = "/events/bad";
    let mut live = sse_from(addr, path, None).await;
    wait_up(admin, 1.0).await;
    let mut good = append(&redis, "bad", "a", 1).await;
    for _ in 0..2 {
        let _: String = redis::cmd("XADD")
            .arg("events:bad")
            .arg("*")
            .arg("other")
            .arg("no data field")
            .query_async(&mut redis.connection().await)
            .await
            .unwrap();
    }
    good.extend(append(&redis, "bad", "b", 3).await);
    let got: Vec<Seen> = live.take(4).await.into_iter().map(seen).collect();
    assert_eq!(got, good);
    let malformed = r#"pushbridge_upstream_malformed_total{route="/events/{channel}"}"#;
    assert_eq!(metric(admin, malformed).await, 2.0);
    // Batches of 2 from Redis: the first holds only the two bad entries; the resume reads past them.
    assert_eq!(long_poll(addr, path, &good[0].0, 3).await, good[1..]);
}

#[tokio::test]
async fn a_dormant_stream_wakes_up_after_the_last_id_it_read() {
    let redis = RedisServer::start().await;
    let yaml = config(&redis, 1000, false).replace("idle_timeout: 1m", "idle_timeout: 50ms");
    let proxy = proxy::start(&yaml).await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    let path = "/events/nap";
    let mut first = sse_from(addr, path, None).await;
    wait_up(admin, 1.0).await;
    let mut entries = append(&redis, "nap", "a", 2).await;
    let got: Vec<Seen> = first.take(2).await.into_iter().map(seen).collect();
    assert_eq!(got, entries);
    drop(first);
    wait_up(admin, 0.0).await;
    // Appended while no upstream reads: the woken upstream reads them after the last id it had read.
    entries.extend(append(&redis, "nap", "b", 2).await);
    let mut back = sse_from(addr, path, Some(&entries[1].0)).await;
    let got: Vec<Seen> = back.take(2).await.into_iter().map(seen).collect();
    assert_eq!(got, entries[2..]);
}
