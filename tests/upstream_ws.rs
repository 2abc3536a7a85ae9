//! `kind: ws` upstreams: a tokio-tungstenite push server and a Python `websockets` server feed SSE, WebSocket
//! and long-poll clients; `map` pointers, subprotocol, binary refused or base64, resume across an upstream
//! restart (`?since=` the newest id), a hung upstream found by pings, and `wss://` with `ca_file` in per-client
//! mode (the client's `Authorization` forwarded).

mod support;

use std::net::SocketAddr;

use support::client::{Proto, SseClient, WAIT, connect, eventually, sse_request};
use support::feeds::{Clients, Seen, long_poll, metric};
use support::proxy;
use support::ws_upstream::WsUpstream;
use tokio::io::{AsyncBufReadExt, BufReader};

fn config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - path: /feed/{{channel}}
    upstream:
      kind: ws
      url: "ws://{upstream}/feed/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
{extra}    idle_timeout: 1m
"#
    )
}

const MAPPED: &str = "      subprotocol: v1.feed
      map: { id: /seq, event: /type, data: /payload }
      resume: { query: since }
";

fn seen(id: &str, event: &str, data: &str) -> Seen {
    (id.into(), event.into(), data.into())
}

async fn malformed(admin: SocketAddr) -> f64 {
    metric(
        admin,
        "pushbridge_upstream_malformed_total{route=\"/feed/{channel}\"}",
    )
    .await
}

#[tokio::test]
async fn mapped_text_messages_reach_every_client_transport() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy::start(&config(upstream.addr, MAPPED)).await;
    let addr = proxy.addr();
    let mut clients = Clients::open(addr, "/feed/x").await;
    upstream.wait_connections(1).await;
    upstream.publish("1", r#"{"seq":1,"type":"tick","payload":{"n":1}}"#);
    upstream.publish("x", "not json");
    upstream.publish_binary(b"\x00\x01");
    upstream.publish("2", r#"{"seq":2,"type":"tick","payload":"plain"}"#);
    upstream.publish("3", r#"{"seq":3,"type":"tock","payload":[1,2]}"#);
    let expected = vec![
        seen("1", "tick", r#"{"n":1}"#),
        seen("2", "tick", "plain"),
        seen("3", "tock", "[1,2]"),
    ];
    let (sse, ws) = clients.take(3).await;
    assert_eq!(sse, expected);
    assert_eq!(ws, expected);
    assert_eq!(long_poll(addr, "/feed/x", "1", 2).await, expected[1..]);
    assert_eq!(
        malformed(proxy.admin()).await,
        2.0,
        "a non-JSON text and a binary message"
    );
    let request = &upstream.requests()[0];
    assert_eq!(request.protocol.as_deref(), Some("v1.feed"));
    assert_eq!(request.since, None, "nothing held yet: no resume position");
}

#[tokio::test]
async fn resume_across_an_upstream_restart_sends_the_newest_id() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy::start(&config(upstream.addr, MAPPED)).await;
    let addr = proxy.addr();
    let mut clients = Clients::open(addr, "/feed/x").await;
    upstream.wait_connections(1).await;
    for seq in 1..=3 {
        upstream.publish(
            &seq.to_string(),
            format!(r#"{{"seq":{seq},"payload":"e{seq}"}}"#),
        );
    }
    clients.take(3).await;
    upstream.kill();
    // Published while the upstream is down: fetched on reconnect after ?since=3.
    for seq in 4..=5 {
        upstream.publish(
            &seq.to_string(),
            format!(r#"{{"seq":{seq},"payload":"e{seq}"}}"#),
        );
    }
    upstream.restart().await;
    upstream.wait_connections(2).await;
    let (sse, ws) = clients.take(2).await;
    let expected = vec![seen("4", "message", "e4"), seen("5", "message", "e5")];
    assert_eq!((sse, ws), (expected.clone(), expected.clone()));
    assert_eq!(long_poll(addr, "/feed/x", "3", 2).await, expected);
    let since: Vec<_> = upstream.requests().into_iter().map(|r| r.since).collect();
    assert_eq!(since, [None, Some("3".to_owned())]);
}

#[tokio::test]
async fn binary_as_base64_and_a_hung_upstream_is_found_by_pings() {
    let upstream = WsUpstream::start().await;
    let extra = "      binary: base64\n    heartbeat: 200ms\n";
    let proxy = proxy::start(&config(upstream.addr, extra)).await;
    let mut clients = Clients::open(proxy.addr(), "/feed/x").await;
    upstream.wait_connections(1).await;
    upstream.publish_binary(b"\x00\x01hi");
    upstream.publish("t", "plain text, no map");
    let (sse, ws) = clients.take(2).await;
    for got in [sse, ws] {
        let data: Vec<&str> = got.iter().map(|(_, _, d)| d.as_str()).collect();
        assert_eq!(data, ["AAFoaQ==", "plain text, no map"]);
    }
    upstream.freeze();
    upstream.wait_connections(2).await;
    assert_eq!(malformed(proxy.admin()).await, 0.0);
}

#[tokio::test]
async fn python_websockets_server_feeds_every_transport_with_resume() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ws_upstream.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("python output in time")
            .unwrap()
            .expect("python server running (pip install websockets)")
    };
    let port: u16 = next_line()
        .await
        .strip_prefix("port ")
        .unwrap()
        .parse()
        .unwrap();
    let upstream: SocketAddr = ([127, 0, 0, 1], port).into();
    let proxy = proxy::start(&config(upstream, MAPPED)).await;
    let addr = proxy.addr();
    let mut clients = Clients::open(addr, "/feed/x").await;
    // The server sends three events per connection and closes (but the last); each reconnect resumes after
    // the newest id.
    let (sse, ws) = clients.take(9).await;
    let expected: Vec<Seen> = (1..=9)
        .map(|s| seen(&s.to_string(), "py", &format!(r#"{{"seq":{s}}}"#)))
        .collect();
    assert_eq!(sse, expected);
    assert_eq!(ws, expected);
    assert_eq!(long_poll(addr, "/feed/x", "6", 3).await, expected[6..]);
    let mut connects = Vec::new();
    while connects.len() < 3 {
        connects.push(next_line().await);
    }
    assert_eq!(
        connects,
        [0, 3, 6].map(|s| format!("connect since={s} protocol=v1.feed"))
    );
    eventually("nothing skipped", || async {
        malformed(proxy.admin()).await == 0.0
    })
    .await;
}

#[tokio::test]
async fn wss_with_the_upstream_ca_file_and_forwarded_headers_per_client() {
    let (upstream, ca_pem) = WsUpstream::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /feed/{{channel}}
    mode: per-client
    transports: [sse]
    upstream:
      kind: ws
      url: "wss://localhost:{port}/feed/{{channel}}"
      ca_file: "{ca}"
"#,
        port = upstream.addr.port(),
        ca = ca.display()
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let mut request = sse_request(addr, "/feed/x", None, false);
    request
        .headers_mut()
        .insert("authorization", "Bearer alice".parse().unwrap());
    let response = connect(addr, Proto::H1).await.send(request).await;
    assert_eq!(response.status(), 200);
    let mut sse = SseClient::new(response);
    upstream.wait_connections(1).await;
    upstream.publish("1", "over TLS");
    assert_eq!(sse.next_event().await.unwrap().data, "over TLS");
    let request = &upstream.requests()[0];
    assert_eq!(request.authorization.as_deref(), Some("Bearer alice"));
}
