//! Long-poll test helpers: the route config, a poll client over hyper (h1/h2), the answer's JSON, an SSE keeper
//! holding the stream open, and waits on the proxy's subscriber count and the binary's open-poll gauge.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use serde_json::Value;

use crate::support::client::{Proto, ReqBody, SseClient, WAIT, connect, empty};
use crate::support::proxy::TestProxy;
use crate::support::upstream::SseUpstream;

/// A route on `/events/{channel}` with `long_poll` settings `long_poll` and any `extra` route keys.
pub fn config(upstream: SocketAddr, long_poll: &str, extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream:
      url: "http://{upstream}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
    idle_timeout: 1m
    long_poll: {{ {long_poll} }}
{extra}
"#
    )
}

/// One answered poll.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// (id, data) of each event.
    pub fn events(&self) -> Vec<(String, String)> {
        let json = self.json();
        let events = json["events"].as_array().expect("events array");
        events
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e["data"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn cursor(&self) -> String {
        self.json()["last_event_id"]
            .as_str()
            .expect("last_event_id string")
            .to_owned()
    }

    pub fn gap(&self) -> bool {
        self.json()["gap"].as_bool().expect("gap bool")
    }
}

/// A GET of `path_and_query` (absolute URI for h2, origin-form + Host for h1) with extra headers.
pub fn get(
    addr: SocketAddr,
    path_and_query: &str,
    proto: Proto,
    headers: &[(&str, &str)],
) -> Request<ReqBody> {
    request(http::Method::GET, addr, path_and_query, proto, headers)
}

pub fn request(
    method: http::Method,
    addr: SocketAddr,
    path_and_query: &str,
    proto: Proto,
    headers: &[(&str, &str)],
) -> Request<ReqBody> {
    let uri = match proto {
        Proto::H2 => format!("http://{addr}{path_and_query}"),
        Proto::H1 => path_and_query.to_owned(),
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/json");
    if proto == Proto::H1 {
        builder = builder.header("host", addr.to_string());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

pub async fn answer(response: http::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Polls once on a fresh connection.
pub async fn poll(
    addr: SocketAddr,
    proto: Proto,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut sender = connect(addr, proto).await;
    answer(sender.send(get(addr, path_and_query, proto, headers)).await).await
}

/// Polls once in a task (a held poll).
pub fn spawn_poll(
    addr: SocketAddr,
    proto: Proto,
    path_and_query: String,
) -> tokio::task::JoinHandle<Answer> {
    tokio::spawn(async move { poll(addr, proto, &path_and_query, &[]).await })
}

/// An SSE subscriber that keeps the stream (and its upstream connection) alive between polls.
pub async fn keeper(addr: SocketAddr, path: &str) -> SseClient {
    connect(addr, Proto::H1).await.sse(addr, path, None).await
}

/// Publishes `from..=to` as data `e<n>` (ids are `<n>`) and waits until `keeper` has them (so the ring does).
pub async fn publish(upstream: &SseUpstream, keeper: &mut SseClient, from: usize, to: usize) {
    for n in from..=to {
        upstream.publish(format!("e{n}"));
    }
    let got = keeper.take(to + 1 - from).await;
    assert_eq!(
        got.last().unwrap().id.as_deref(),
        Some(to.to_string().as_str())
    );
}

pub fn expected(from: usize, to: usize) -> Vec<(String, String)> {
    (from..=to)
        .map(|n| (n.to_string(), format!("e{n}")))
        .collect()
}

/// Waits (yielding, bounded by [`WAIT`]) until the hub's only stream has `n` subscribers.
pub async fn wait_subscribers(proxy: &TestProxy, n: usize) {
    let counted = async {
        loop {
            let streams = proxy.running().hub().all();
            if streams.iter().map(|s| s.subscriber_count()).sum::<usize>() == n {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, counted)
        .await
        .expect("subscribers in time");
}

pub fn long_poll_gauge(proxy: &TestProxy) -> i64 {
    let metrics = proxy.running().metrics();
    ["http1", "http2"]
        .iter()
        .map(|v| {
            metrics
                .connections_open
                .with_label_values(&["long-poll", v])
                .get()
        })
        .sum()
}

/// Opens `connections` h2 connections and sends `per_connection` concurrent polls on each.
pub async fn held_polls(
    addr: SocketAddr,
    connections: usize,
    per_connection: usize,
    path: &str,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    let mut polls = Vec::new();
    for _ in 0..connections {
        let crate::support::client::Sender::H2(sender) = connect(addr, Proto::H2).await else {
            unreachable!()
        };
        for _ in 0..per_connection {
            let mut sender: http2::SendRequest<ReqBody> = sender.clone();
            let req = get(addr, path, Proto::H2, &[]);
            polls.push(tokio::spawn(async move {
                sender.ready().await.expect("ready");
                answer(sender.send_request(req).await.expect("response")).await
            }));
        }
    }
    polls
}

/// `pushbridge_connections_open` for long-poll, read from the binary's admin `/metrics`.
pub async fn open_polls(admin: SocketAddr) -> i64 {
    let mut sender = connect(admin, Proto::H1).await;
    let got = answer(sender.send(get(admin, "/metrics", Proto::H1, &[])).await).await;
    let text = String::from_utf8(got.body.to_vec()).unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("pushbridge_connections_open{") && l.contains("transport=\"long-poll\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// Waits until the binary holds `n` polls.
pub async fn wait_open_polls(admin: SocketAddr, n: i64) {
    let held = async {
        while open_polls(admin).await != n {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, held)
        .await
        .expect("polls held in time");
}
