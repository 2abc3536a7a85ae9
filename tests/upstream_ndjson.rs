//! `kind: ndjson` upstreams: a streaming NDJSON server in the Kubernetes watch shape feeds SSE, WebSocket and
//! long-poll clients; a line that is not JSON and an over-long line are counted and skipped without ending the
//! stream; after an upstream restart the newest id goes back in `X-Resume-After`.

mod support;

use support::feeds::{Clients, Seen, long_poll, metric};
use support::json_upstream::NdjsonUpstream;
use support::proxy;

fn config(upstream: std::net::SocketAddr, upstream_extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
limits: {{ max_event_bytes: 1KiB }}
streams:
  - path: /watch/{{channel}}
    upstream:
      kind: ndjson
      url: "http://{upstream}/watch/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
{upstream_extra}    idle_timeout: 1m
"#
    )
}

fn pod(kind: &str, version: u32) -> (String, String, Seen) {
    let object =
        format!(r#"{{"kind":"Pod","metadata":{{"name":"web","resourceVersion":"{version}"}}}}"#);
    let line = format!(r#"{{"type":"{kind}","object":{object}}}"#);
    (
        version.to_string(),
        line,
        (version.to_string(), kind.to_owned(), object),
    )
}

#[tokio::test]
async fn kubernetes_watch_lines_become_events_and_resume_after_a_restart() {
    let upstream = NdjsonUpstream::start().await;
    let extra = "      map: { id: /object/metadata/resourceVersion, event: /type, data: /object }
      resume: { header: X-Resume-After }
";
    let proxy = proxy::start(&config(upstream.addr, extra)).await;
    let addr = proxy.addr();
    let mut clients = Clients::open(addr, "/watch/pods").await;
    upstream.wait_connections(1).await;
    let mut expected = Vec::new();
    for (i, kind) in ["ADDED", "MODIFIED", "DELETED"].into_iter().enumerate() {
        let (id, line, seen) = pod(kind, 10 + i as u32);
        upstream.publish(Some(&id), line);
        expected.push(seen);
        if i == 0 {
            upstream.publish(None, "this line is not JSON");
            upstream.publish(
                None,
                format!(r#"{{"type":"ADDED","object":"{}"}}"#, "x".repeat(2000)),
            );
        }
    }
    let (sse, ws) = clients.take(3).await;
    assert_eq!(sse, expected);
    assert_eq!(ws, expected);
    assert_eq!(long_poll(addr, "/watch/pods", "10", 2).await, expected[1..]);
    let malformed = r#"pushbridge_upstream_malformed_total{route="/watch/{channel}"}"#;
    assert_eq!(metric(proxy.admin(), malformed).await, 2.0);

    // The upstream restarts: refused for a moment, then the stream resumes after the newest id held.
    upstream.set_down(true);
    upstream.end_streams();
    let (id, line, seen) = pod("ADDED", 13);
    upstream.publish(Some(&id), line);
    upstream.set_down(false);
    upstream.wait_connections(2).await;
    let (sse, ws) = clients.take(1).await;
    assert_eq!((sse, ws), (vec![seen.clone()], vec![seen]));
    let resumes = upstream.resume_after();
    assert_eq!(resumes.first(), Some(&None));
    assert_eq!(resumes.last(), Some(&Some("12".to_owned())), "{resumes:?}");
}

#[tokio::test]
async fn without_map_each_json_line_is_the_data() {
    let upstream = NdjsonUpstream::start().await;
    let proxy = proxy::start(&config(upstream.addr, "")).await;
    let mut clients = Clients::open(proxy.addr(), "/watch/x").await;
    upstream.wait_connections(1).await;
    upstream.publish(None, r#"{"a": 1}"#);
    upstream.publish(None, "{broken");
    upstream.publish(None, "");
    upstream.publish(None, r#"[1, "two"]"#);
    let (sse, ws) = clients.take(2).await;
    for got in [sse, ws] {
        let data: Vec<&str> = got.iter().map(|(_, _, d)| d.as_str()).collect();
        assert_eq!(data, [r#"{"a": 1}"#, r#"[1, "two"]"#]);
    }
    let malformed = r#"pushbridge_upstream_malformed_total{route="/watch/{channel}"}"#;
    assert_eq!(
        metric(proxy.admin(), malformed).await,
        1.0,
        "the empty line is not counted"
    );
}
