//! The scripted application of the stream corpus, one server for every upstream kind but Redis: SSE at
//! `/up/<channel>`, NDJSON at `/nd/<channel>`, a JSON poll endpoint at `/poll/<channel>` (held when its script is
//! done: a long-poll endpoint), WebSocket on its own listener at `/ws/<channel>`, and `/page` (an empty page for
//! Chromium on the app's origin). Each channel plays its script: the n-th request (connection) on it plays
//! `conns[n]` when the position it carries (`Last-Event-ID`, `?since=`, `?cursor=`) is the one the script expects,
//! else the channel's "unexpected" steps; past the script it holds the connection open without writing. A
//! `Gate(n)` step waits until the test released the channel `n` times.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::support::app;
use super::support::client::WAIT;

type Body = BoxBody<Bytes, Infallible>;

#[derive(Debug, Clone)]
pub enum Step {
    /// SSE/NDJSON: a body chunk; WebSocket: a text message; poll: part of the answer's body.
    Write(Vec<u8>),
    /// WebSocket: a binary message.
    Binary(Vec<u8>),
    /// Poll: the answer's status (default 200).
    Status(u16),
    /// Wait until the test released the channel this many times.
    Gate(usize),
    /// End the response (SSE/NDJSON) or close the WebSocket.
    Close,
}

/// The position a connection must carry for its script to play.
#[derive(Debug, Clone)]
pub enum Expect {
    Any,
    Is(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Conn {
    pub expect: Expect,
    pub steps: Vec<Step>,
}

impl Conn {
    pub fn any(steps: Vec<Step>) -> Conn {
        Conn {
            expect: Expect::Any,
            steps,
        }
    }

    pub fn after(position: Option<&str>, steps: Vec<Step>) -> Conn {
        Conn {
            expect: Expect::Is(position.map(str::to_owned)),
            steps,
        }
    }
}

/// The steps a connection with an unexpected position plays (it gets the position).
pub type Unexpected = Arc<dyn Fn(Option<&str>) -> Vec<Step> + Send + Sync>;

struct Channel {
    conns: Vec<Conn>,
    unexpected: Unexpected,
    count: watch::Sender<usize>,
    positions: Mutex<Vec<Option<String>>>,
    released: watch::Sender<usize>,
}

#[derive(Default)]
struct Registry {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
}

impl Registry {
    fn get(&self, channel: &str) -> Option<Arc<Channel>> {
        self.channels.lock().unwrap().get(channel).cloned()
    }

    /// Counts a connection on `channel`: the steps it plays.
    fn connect(&self, channel: &str, position: Option<String>) -> Option<Vec<Step>> {
        let channel = self.get(channel)?;
        let n = {
            let mut positions = channel.positions.lock().unwrap();
            positions.push(position.clone());
            positions.len() - 1
        };
        channel.count.send_modify(|c| *c += 1);
        let steps = match channel.conns.get(n) {
            None => Vec::new(),
            Some(conn) => match &conn.expect {
                Expect::Is(expected) if *expected != position => {
                    (channel.unexpected)(position.as_deref())
                }
                _ => conn.steps.clone(),
            },
        };
        Some(steps)
    }
}

pub struct Apps {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    registry: Arc<Registry>,
}

impl Apps {
    pub async fn start() -> Apps {
        let registry = Arc::new(Registry::default());
        let shared = registry.clone();
        let http = app::serve(move |req| serve_http(shared.clone(), req)).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ws = listener.local_addr().expect("addr");
        tokio::spawn(accept_ws(listener, registry.clone()));
        Apps { http, ws, registry }
    }

    /// Sets the script of `channel`.
    pub fn script(&self, channel: &str, conns: Vec<Conn>, unexpected: Unexpected) {
        let channel_state = Arc::new(Channel {
            conns,
            unexpected,
            count: watch::Sender::new(0),
            positions: Mutex::new(Vec::new()),
            released: watch::Sender::new(0),
        });
        self.registry
            .channels
            .lock()
            .unwrap()
            .insert(channel.to_owned(), channel_state);
    }

    /// Lets the channel's next gate open.
    pub fn release(&self, channel: &str) {
        if let Some(channel) = self.registry.get(channel) {
            channel.released.send_modify(|n| *n += 1);
        }
    }

    /// Waits until `channel` had `n` connections (false after [`WAIT`]).
    pub async fn wait_connections(&self, channel: &str, n: usize) -> bool {
        let Some(channel) = self.registry.get(channel) else {
            return false;
        };
        let mut rx = channel.count.subscribe();
        matches!(
            tokio::time::timeout(WAIT, rx.wait_for(|&c| c >= n)).await,
            Ok(Ok(_))
        )
    }
}

async fn wait_release(registry: &Registry, channel: &str, gate: usize) {
    if let Some(channel) = registry.get(channel) {
        let mut rx = channel.released.subscribe();
        let _ = rx.wait_for(|&released| released >= gate).await;
    }
}

fn query(req_query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(req_query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
}

async fn serve_http(registry: Arc<Registry>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/page" {
        let mut response = plain(StatusCode::OK, "<!doctype html><title>app</title>");
        response
            .headers_mut()
            .insert("content-type", "text/html".parse().unwrap());
        return response;
    }
    let Some((kind, channel)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(k, c)| (k.to_owned(), c.to_owned()))
    else {
        return plain(StatusCode::NOT_FOUND, "no such path");
    };
    let position = match kind.as_str() {
        "up" => req
            .headers()
            .get("last-event-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        "nd" => query(req.uri().query(), "since"),
        "poll" => query(req.uri().query(), "cursor"),
        _ => return plain(StatusCode::NOT_FOUND, "no such kind"),
    };
    let Some(steps) = registry.connect(&channel, position) else {
        return plain(StatusCode::NOT_FOUND, "no such channel");
    };
    if kind == "poll" {
        return poll_answer(&registry, &channel, steps).await;
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for step in steps {
            match step {
                Step::Write(bytes) => {
                    if tx.send(Ok(Frame::data(bytes.into()))).await.is_err() {
                        return;
                    }
                }
                Step::Gate(n) => wait_release(&registry, &channel, n).await,
                Step::Close => return,
                Step::Binary(_) | Step::Status(_) => {}
            }
        }
        tx.closed().await;
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let content_type = if kind == "up" {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    response
}

/// A poll: the answer its steps make, or (past the script) no answer at all.
async fn poll_answer(registry: &Registry, channel: &str, steps: Vec<Step>) -> Response<Body> {
    if steps.is_empty() {
        std::future::pending::<()>().await;
    }
    let mut status = StatusCode::OK;
    let mut body = Vec::new();
    for step in steps {
        match step {
            Step::Write(bytes) => body.extend_from_slice(&bytes),
            Step::Status(code) => status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            Step::Gate(n) => wait_release(registry, channel, n).await,
            Step::Binary(_) | Step::Close => {}
        }
    }
    let mut response = plain(status, body);
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

async fn accept_ws(listener: TcpListener, registry: Arc<Registry>) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(serve_ws(tcp, registry.clone()));
    }
}

// tungstenite's handshake callback returns its large `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn serve_ws(tcp: tokio::net::TcpStream, registry: Arc<Registry>) {
    let mut target = (String::new(), None);
    let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                    response| {
        let uri = request.uri();
        target = (
            uri.path().trim_start_matches("/ws/").to_owned(),
            query(uri.query(), "since"),
        );
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let (channel, position) = target;
    let Some(steps) = registry.connect(&channel, position) else {
        let _ = ws.close(None).await;
        return;
    };
    for step in steps {
        let sent = match step {
            Step::Write(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                ws.send(Message::text(text)).await
            }
            Step::Binary(bytes) => ws.send(Message::binary(bytes)).await,
            Step::Gate(n) => {
                wait_release(&registry, &channel, n).await;
                Ok(())
            }
            Step::Close => {
                let _ = ws.close(None).await;
                return;
            }
            Step::Status(_) => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
    // Hold: keep reading (pings are answered) until the peer goes.
    while let Some(Ok(_)) = ws.next().await {}
}
