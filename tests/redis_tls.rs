//! Issue 15 item 6: `rediss://` with a private CA, against a TLS-only `redis-server` and the real binary. A
//! `kind: redis` route trusts `upstream.ca_file` (it passed `check` but was ignored at run time: UnknownIssuer), and
//! `upstream.tee.ca_file` does the same for a tee; without the CA the connection is refused and counted.

mod support;

use std::net::SocketAddr;

use support::binary::{self, Binary};
use support::certs::{KeyKind, TestCa};
use support::client::{Proto, connect, eventually};
use support::feeds::metric;
use support::redis::{RedisServer, Tls};
use support::upstream::SseUpstream;

const UP: &str = r#"pushbridge_upstream_up{route="/events/{channel}"}"#;

/// A TLS-only Redis with a leaf of a fresh private CA; the CA is also written to `dir/ca.pem`.
async fn tls_redis(dir: &tempfile::TempDir) -> (RedisServer, std::path::PathBuf) {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let redis = RedisServer::start_tls(Tls {
        cert,
        key,
        ca_pem: ca.ca_pem(),
    })
    .await;
    (redis, ca_file)
}

fn start(dir: &tempfile::TempDir, streams: &str) -> Binary {
    let yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\nadmin: {{ address: \"127.0.0.1:0\" }}\nlog: {{ format: json }}\n{streams}"
    );
    binary::start(dir.path(), &yaml, 1, true)
}

async fn wait_metric(admin: SocketAddr, series: &'static str, value: f64) {
    eventually(
        series,
        || async move { metric(admin, series).await == value },
    )
    .await;
}

/// The value of `series` on `/metrics`, 0 while it is not exposed yet.
async fn counted(admin: SocketAddr, series: &str) -> f64 {
    let (_, text) = support::client::get_text(admin, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_route_trusts_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (redis, ca_file) = tls_redis(&dir).await;
    let route = |path: &str, ca: &str| {
        format!(
            r#"
  - path: {path}
    upstream:
      kind: redis
      url: "{url}"
      key: "events:{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}{ca}"#,
            url = redis.url()
        )
    };
    let with_ca = format!("\n      ca_file: \"{}\"", ca_file.display());
    let streams = format!(
        "streams:{}{}\n",
        route("/events/{channel}", &with_ca),
        route("/untrusted/{channel}", "")
    );
    let binary = start(&dir, &streams);
    let (addr, admin) = (binary.listen[0], binary.admin.unwrap());
    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/news", None)
        .await;
    wait_metric(admin, UP, 1.0).await;
    let id = redis.xadd("events:news", "tick", "over TLS").await;
    let event = client.next_event().await.expect("an event");
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(id.as_str()), "over TLS")
    );

    // Without the CA: the webpki roots do not know it, the connection fails (counted), nothing is delivered.
    let _untrusted = connect(addr, Proto::H1)
        .await
        .sse(addr, "/untrusted/news", None)
        .await;
    let failed =
        r#"pushbridge_upstream_connects_total{result="error",route="/untrusted/{channel}"}"#;
    eventually("the untrusted connection fails", || async move {
        counted(admin, failed).await >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            admin,
            r#"pushbridge_upstream_up{route="/untrusted/{channel}"}"#
        )
        .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tee_to_rediss_trusts_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (redis, ca_file) = tls_redis(&dir).await;
    let upstream = SseUpstream::start(true).await;
    let streams = format!(
        r#"streams:
  - path: /events/{{channel}}
    upstream:
      url: "http://{app}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
      tee: {{ url: "{url}", key: "teed:{{channel}}", ca_file: "{ca}" }}
"#,
        app = upstream.addr,
        url = redis.url(),
        ca = ca_file.display()
    );
    let binary = start(&dir, &streams);
    let (addr, admin) = (binary.listen[0], binary.admin.unwrap());
    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/news", None)
        .await;
    upstream.wait_connections(1).await;
    upstream.publish("one");
    upstream.publish("two");
    assert_eq!(client.take(2).await.len(), 2);
    let teed = r#"pushbridge_redis_operations_total{op="tee",result="ok"}"#;
    eventually("the tee wrote both events", || async move {
        metric(admin, teed).await >= 1.0
    })
    .await;
    let entries = redis.entries("teed:news").await;
    let data: Vec<&str> = entries.iter().map(|(_, _, d)| d.as_str()).collect();
    assert_eq!(data, ["one", "two"]);
}
