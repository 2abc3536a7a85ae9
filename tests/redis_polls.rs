//! Issue 15 item 5, long-poll on `kind: redis` routes against a real `redis-server` and real binaries: a poll
//! answered at once (`wait=0`) from a cursor older than the ring gets the entries from Redis (deep resume) as a held
//! poll and SSE do; every answer's cursor is a Redis entry id — on a replica that never had the stream, for a client
//! without a cursor, for a held poll that timed out, across a Redis restart — so the next poll, on any replica,
//! continues without a gap and without loss.

mod support;

use std::net::SocketAddr;

use support::binary::{self, Binary};
use support::client::{Proto, connect, eventually, get_text};
use support::feeds::{Seen, long_poll, metric};
use support::redis::RedisServer;

const UP: &str = r#"pushbridge_upstream_up{route="/events/{channel}"}"#;

fn replica(dir: &tempfile::TempDir, redis: &RedisServer, ring: usize) -> Binary {
    replica_with(dir, redis, ring, "{ initial: 10ms, max: 50ms }", "1s")
}

/// A replica with `reconnect` (YAML) and `long_poll.timeout`.
fn replica_with(
    dir: &tempfile::TempDir,
    redis: &RedisServer,
    ring: usize,
    reconnect: &str,
    poll_timeout: &str,
) -> Binary {
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
streams:
  - path: /events/{{channel}}
    upstream:
      kind: redis
      url: "{url}"
      key: "events:{{channel}}"
      reconnect: {reconnect}
    buffer: {{ events: {ring} }}
    idle_timeout: 1m
    long_poll: {{ timeout: {poll_timeout}, max_batch: 8 }}
"#,
        url = redis.url()
    );
    binary::start(dir.path(), &yaml, 1, true)
}

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

/// One poll: (events, cursor, gap).
async fn poll(addr: SocketAddr, path: &str, query: &str) -> (Vec<Seen>, String, bool) {
    let (status, body) = get_text(addr, &format!("{path}?transport=long-poll&{query}")).await;
    assert_eq!(status, 200, "{body}");
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let events = batch["events"].as_array().expect("events").iter();
    let events = events
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("id"), text("event"), text("data"))
        })
        .collect();
    let cursor = batch["last_event_id"].as_str().expect("cursor").to_owned();
    (events, cursor, batch["gap"] == true)
}

/// `wait=0` polls from `cursor` until `n` events came (each answer at once, none with a gap); at most `n` polls.
async fn polls_now(addr: SocketAddr, path: &str, cursor: &str, n: usize) -> Vec<Seen> {
    let mut cursor = cursor.to_owned();
    let mut got = Vec::new();
    for _ in 0..n {
        let query = format!("wait=0&last_event_id={cursor}");
        let (events, next, gap) = poll(addr, path, &query).await;
        assert!(!gap, "no gap: Redis holds every entry");
        got.extend(events);
        cursor = next;
        if got.len() >= n {
            break;
        }
    }
    got
}

fn is_entry_id(id: &str) -> bool {
    pushbridge::hub::LogId::parse(id).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_0_from_a_cursor_older_than_the_ring_is_served_from_redis() {
    let redis = RedisServer::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let live = replica(&dirs[0], &redis, 2);
    let fresh = replica(&dirs[1], &redis, 2);
    let path = "/events/deep";
    let (addr, admin) = (live.listen[0], live.admin.unwrap());
    let mut keeper = connect(addr, Proto::H1).await.sse(addr, path, None).await;
    eventually("the Redis upstream is connected", || async move {
        metric(admin, UP).await == 1.0
    })
    .await;
    let entries = append(&redis, "deep", "e", 20).await;
    assert_eq!(keeper.take(20).await.len(), 20, "the ring holds the last 2");

    // The stream is live with a tiny ring; on the other replica it does not exist yet.
    for binary in [&live, &fresh] {
        let got = polls_now(binary.listen[0], path, &entries[0].0, 19).await;
        assert_eq!(got, entries[1..], "wait=0, as a held poll and SSE");
        let held = long_poll(binary.listen[0], path, &entries[0].0, 19).await;
        assert_eq!(held, entries[1..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_routes_cursor_is_always_an_entry_id_across_replicas_and_a_restart() {
    let mut redis = RedisServer::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<Binary> = dirs.iter().map(|d| replica(d, &redis, 1000)).collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|b| b.listen[0]).collect();
    let path = "/events/restart";
    let before = append(&redis, "restart", "a", 3).await;
    let newest = before[2].0.clone();

    // A client without a cursor opens the stream on replica 0: its position is the newest entry.
    let (events, page_load, gap) = poll(addrs[0], path, "wait=0").await;
    assert_eq!((events.len(), gap), (0, false));
    // A held poll up to date on replica 1, which has no stream yet: times out.
    let (events, timed_out, _) = poll(addrs[1], path, &format!("last_event_id={newest}")).await;
    assert!(events.is_empty());
    let mut cursors = vec![page_load, timed_out];
    assert_eq!(
        cursors,
        [newest.clone(), newest.clone()],
        "entry ids, not position tokens of one replica"
    );

    redis.kill();
    for admin in replicas.iter().map(|b| b.admin.unwrap()) {
        eventually("the Redis upstream is down", || async move {
            metric(admin, UP).await == 0.0
        })
        .await;
    }
    // Held polls during the outage, on every replica, come back with the cursor they were given.
    for &addr in &addrs {
        let (events, cursor, gap) = poll(addr, path, &format!("last_event_id={newest}")).await;
        assert_eq!((events.len(), gap), (0, false));
        assert!(is_entry_id(&cursor), "{cursor}");
        assert_eq!(cursor, newest);
        cursors.push(cursor);
    }
    redis.restart().await;
    let after = append(&redis, "restart", "b", 5).await;
    // Each cursor, on another replica: exactly the entries added meanwhile, no gap.
    for (i, cursor) in cursors.iter().enumerate() {
        let addr = addrs[(i + 1) % addrs.len()];
        assert_eq!(long_poll(addr, path, cursor, 5).await, after);
    }
}

/// A poll held on a replica whose upstream is behind the client's cursor (still reconnecting after a Redis
/// restart): when that replica catches up, the entries the client already has are not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_clients_cursor_repeats_nothing() {
    let mut redis = RedisServer::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let ahead = replica(&dirs[0], &redis, 1000);
    let behind = replica_with(&dirs[1], &redis, 1000, "{ initial: 4s, max: 4s }", "20s");
    let path = "/events/behind";
    for binary in [&ahead, &behind] {
        let _ = poll(binary.listen[0], path, "wait=0").await;
    }
    let admins = [ahead.admin.unwrap(), behind.admin.unwrap()];
    let up = |admin, value| async move {
        eventually("the Redis upstream state", || async move {
            metric(admin, UP).await == value
        })
        .await;
    };
    for admin in admins {
        up(admin, 1.0).await;
    }
    let first = append(&redis, "behind", "a", 2).await;
    // Both replicas hold a0 and a1.
    for binary in [&ahead, &behind] {
        assert_eq!(
            long_poll(binary.listen[0], path, &first[0].0, 1).await,
            first[1..]
        );
    }
    redis.kill();
    for admin in admins {
        up(admin, 0.0).await;
    }
    redis.restart().await;
    up(admins[0], 1.0).await;
    let second = append(&redis, "behind", "b", 3).await;
    let cursor = second[2].0.clone();
    assert_eq!(
        long_poll(ahead.listen[0], path, &first[1].0, 3).await,
        second
    );
    // Held on the replica still reconnecting, from the newest entry the client has.
    let held = tokio::spawn({
        let addr = behind.listen[0];
        let query = format!("last_event_id={cursor}");
        async move { poll(addr, path, &query).await }
    });
    up(admins[1], 1.0).await;
    let third = append(&redis, "behind", "c", 1).await;
    let (events, next, gap) = held.await.unwrap();
    assert!(!gap);
    assert_eq!(events, third, "b0..b2 are not sent again");
    assert_eq!(next, third[0].0);
}
