//! Issue 15 item 3, on the real binary: the client whose request opens a stream gets every event the application
//! sent on the connection it opened — on SSE, WebSocket and long-poll (a first poll answered at once, `wait=0`, or
//! held), shared and per-client, and when its request re-wakes a dormant stream — with no gap notice.
//!
//! The application writes two events the moment a connection opens, then a `tail` event when the test says so
//! (once the client is known to be subscribed): what a client got before `tail` is exactly what it could miss.

#[allow(dead_code)]
#[path = "lossless/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "longpoll/polls.rs"]
mod polls;
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{Notify, watch};

use clients::Proxy;
use support::client::{Proto, WAIT, connect};

/// The application: connection `n` to a path gets `c<n>-a` and `c<n>-b` (ids `c<n>a`, `c<n>b`) at once, then
/// `tail` (id `c<n>t`) when [`FreshApp::tail`] is called for that path, and stays open.
#[derive(Clone)]
struct FreshApp {
    addr: SocketAddr,
    state: Arc<AppState>,
}

#[derive(Default)]
struct AppState {
    /// Connections made per path.
    made: Mutex<HashMap<String, usize>>,
    tails: Mutex<HashMap<String, Arc<Notify>>>,
    /// Open connections (all paths), for waiting on the proxy's idle teardown.
    open: watch::Sender<usize>,
}

impl AppState {
    fn tail(&self, path: &str) -> Arc<Notify> {
        self.tails
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .clone()
    }
}

/// Counts a connection open until its response body is dropped.
struct Open(Arc<AppState>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

impl FreshApp {
    async fn start() -> FreshApp {
        let state = Arc::new(AppState::default());
        let shared = state.clone();
        let addr = support::app::serve(move |req: http::Request<hyper::body::Incoming>| {
            let state = shared.clone();
            async move {
                let path = req.uri().path().to_owned();
                let n = {
                    let mut made = state.made.lock().unwrap();
                    let n = made.entry(path.clone()).or_default();
                    *n += 1;
                    *n
                };
                state.open.send_modify(|open| *open += 1);
                let open = Open(state.clone());
                let tail = state.tail(&path);
                let first = format!("id: c{n}a\ndata: c{n}-a\n\nid: c{n}b\ndata: c{n}-b\n\n");
                let body = stream::once(async move { Ok(Frame::data(Bytes::from(first))) }).chain(
                    stream::once(async move {
                        tail.notified().await;
                        let tail = format!("id: c{n}t\ndata: tail\n\n");
                        Ok::<_, Infallible>(Frame::data(Bytes::from(tail)))
                    }),
                );
                // Held open after the tail, counted open until the body is dropped.
                let body = body.chain(stream::once(async move {
                    let _open = open;
                    std::future::pending().await
                }));
                let mut response = http::Response::new(BodyExt::boxed(StreamBody::new(body)));
                response
                    .headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                response
            }
        })
        .await;
        FreshApp { addr, state }
    }

    /// Lets the current connection of `/up/<channel>` send its `tail`.
    fn tail(&self, channel: &str) {
        self.state.tail(&format!("/up/{channel}")).notify_one();
    }

    fn connections(&self, channel: &str) -> usize {
        let made = self.state.made.lock().unwrap();
        made.get(&format!("/up/{channel}")).copied().unwrap_or(0)
    }

    async fn wait_open(&self, n: usize) {
        let mut open = self.state.open.subscribe();
        tokio::time::timeout(WAIT, open.wait_for(|&open| open == n))
            .await
            .expect("app connections in time")
            .expect("app alive");
    }
}

/// How a test client reads a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Sse,
    Ws,
    /// A first poll without cursor answered at once (`wait=0`), then polls from its cursor.
    PollNow,
    /// A first poll without cursor that is held until events arrive.
    PollHeld,
}

const CLIENTS: [Client; 4] = [Client::Sse, Client::Ws, Client::PollNow, Client::PollHeld];

/// What the client got before `tail` on `/<prefix>/<channel>` (a gap notice as `gap`, a named event as
/// `name:data`), the tail itself excluded.
async fn before_tail(
    addr: SocketAddr,
    app: &FreshApp,
    client: Client,
    prefix: &str,
    channel: &str,
) -> Vec<String> {
    let path = format!("/{prefix}/{channel}");
    let mut got = Vec::new();
    let mut seen = |event: Option<&str>, data: &str| -> bool {
        if data == "tail" {
            return true;
        }
        match event {
            None | Some("message") => got.push(data.to_owned()),
            Some(event) if event.contains("gap") => got.push("gap".to_owned()),
            Some(event) => got.push(format!("{event}:{data}")),
        }
        false
    };
    match client {
        Client::Sse => {
            let mut sse = connect(addr, Proto::H1).await.sse(addr, &path, None).await;
            // The response head came: the client is subscribed.
            app.tail(channel);
            loop {
                let event = sse.next_event().await.expect("stream open");
                if seen(event.event.as_deref(), &event.data) {
                    break;
                }
            }
        }
        Client::Ws => {
            let mut ws = clients::ws(addr, &path).await;
            app.tail(channel);
            'read: loop {
                for envelope in clients::next_envelopes(&mut ws, 1).await {
                    let text = |k: &str| envelope[k].as_str().map(str::to_owned);
                    let data = text("data").unwrap_or_default();
                    if seen(text("event").as_deref(), &data) {
                        break 'read;
                    }
                }
            }
        }
        Client::PollNow | Client::PollHeld => {
            let first = if client == Client::PollNow {
                "?wait=0"
            } else {
                "?wait=5"
            };
            let mut answer = polls::poll(addr, Proto::H1, &format!("{path}{first}"), &[]).await;
            app.tail(channel);
            'polls: loop {
                if answer.gap() {
                    seen(Some("gap"), "");
                }
                for event in answer.json()["events"].as_array().expect("events") {
                    let text = |k: &str| event[k].as_str().map(str::to_owned);
                    let data = text("data").unwrap_or_default();
                    if seen(text("event").as_deref(), &data) {
                        break 'polls;
                    }
                }
                let next = format!("{path}?last_event_id={}", answer.cursor());
                answer = polls::poll(addr, Proto::H1, &next, &[]).await;
            }
        }
    }
    got
}

fn config(app: &FreshApp, extra: &str) -> String {
    format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{app}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
    idle_timeout: 2s
  - path: /dormant/{{channel}}
    upstream: {{ url: "http://{app}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
    idle_timeout: 1s
  - path: /own/{{channel}}
    mode: per-client
    transports: [sse, ws]
    upstream: {{ url: "http://{app}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
{extra}"#,
        app = app.addr
    )
}

/// Opens `count` fresh streams per client kind, `parallel` at a time, on `/<prefix>/…`; returns the misses as
/// (client, channel, what it got before `tail`).
async fn open_fresh(
    addr: SocketAddr,
    app: &FreshApp,
    clients: &[Client],
    prefix: &'static str,
    count: usize,
    parallel: usize,
) -> Vec<(Client, String, Vec<String>)> {
    let runs = clients
        .iter()
        .flat_map(|&client| (0..count).map(move |i| (client, format!("{client:?}-{i}"))));
    stream::iter(runs)
        .map(|(client, channel)| async move {
            let got = before_tail(addr, app, client, prefix, &channel).await;
            (client, channel, got)
        })
        .buffer_unordered(parallel)
        .filter(|(_, _, got)| std::future::ready(got != &["c1-a", "c1-b"]))
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_that_opens_a_stream_gets_its_first_events() {
    let app = FreshApp::start().await;
    let proxy = Proxy::start(&config(&app, ""));
    let misses = open_fresh(proxy.addr(), &app, &CLIENTS, "events", 200, 16).await;
    assert!(
        misses.is_empty(),
        "{} of {} fresh streams missed events: {:?}",
        misses.len(),
        200 * CLIENTS.len(),
        &misses[..misses.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_client_session_gets_its_first_events() {
    let app = FreshApp::start().await;
    let proxy = Proxy::start(&config(&app, ""));
    let clients = [Client::Sse, Client::Ws];
    let misses = open_fresh(proxy.addr(), &app, &clients, "own", 100, 12).await;
    assert!(misses.is_empty(), "{misses:?}");
}

/// A dormant stream keeps its history; a fresh client (no cursor) whose request re-wakes it starts at the head as
/// before — without the old events — but gets every event of the connection it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_rewakes_a_dormant_stream_gets_the_new_connections_events() {
    let app = FreshApp::start().await;
    let proxy = Proxy::start(&config(&app, ""));
    let addr = proxy.addr();
    for client in CLIENTS {
        let channel = format!("{client:?}");
        let got = before_tail(addr, &app, client, "dormant", &channel).await;
        assert_eq!(got, ["c1-a", "c1-b"], "{client:?}, first connection");
        // idle_timeout passes without subscribers: the proxy closes its upstream connection.
        app.wait_open(0).await;
        let got = before_tail(addr, &app, client, "dormant", &channel).await;
        assert_eq!(got, ["c2-a", "c2-b"], "{client:?}, re-woken");
        assert_eq!(app.connections(&channel), 2);
        app.wait_open(0).await;
    }
}

/// The load measurement of docs/BENCHMARKS.md ("Fresh streams"): `PB_FRESH_STREAMS` (default 10 000) fresh streams
/// spread over the four client kinds, `PB_FRESH_PARALLEL` (default 20) at a time; prints the misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load measurement: cargo test --test fresh_streams -- --ignored --nocapture"]
async fn fresh_streams_under_load() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let total = env("PB_FRESH_STREAMS", 10_000);
    let parallel = env("PB_FRESH_PARALLEL", 20);
    let app = FreshApp::start().await;
    let proxy = Proxy::start(&config(&app, "limits: { max_streams: 1000000 }\n"));
    let started = std::time::Instant::now();
    let per_kind = total.div_ceil(CLIENTS.len());
    let misses = open_fresh(proxy.addr(), &app, &CLIENTS, "events", per_kind, parallel).await;
    let opened = per_kind * CLIENTS.len();
    println!(
        "fresh streams: {opened} opened ({per_kind} per client kind), {parallel} at a time, in {:.1} s; misses: {}",
        started.elapsed().as_secs_f64(),
        misses.len()
    );
    for kind in CLIENTS {
        let n = misses.iter().filter(|(c, _, _)| *c == kind).count();
        println!("  {kind:?}: {n} misses");
    }
    assert!(misses.is_empty(), "{:?}", &misses[..misses.len().min(10)]);
}
