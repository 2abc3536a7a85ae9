//! A real SSE upstream application for tests: events are appended with `publish`; every connection gets the events
//! after its `Last-Event-ID` (or only new ones), then live events. It can be killed (listener and every
//! connection dropped) and restarted on the same port, and it counts connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

struct State {
    events: Mutex<Vec<String>>,
    len: watch::Sender<usize>,
    connections: watch::Sender<usize>,
    last_event_ids: Mutex<Vec<Option<String>>>,
    /// The `authorization` header of each connection.
    authorizations: Mutex<Vec<Option<String>>>,
    /// Whether events carry `id:` lines.
    with_ids: bool,
}

pub struct SseUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Mutex<CancellationToken>,
}

impl SseUpstream {
    /// Starts on 127.0.0.1:0. Events have ids "1", "2", … when `with_ids`.
    pub async fn start(with_ids: bool) -> SseUpstream {
        let state = Arc::new(State {
            events: Mutex::new(Vec::new()),
            len: watch::Sender::new(0),
            connections: watch::Sender::new(0),
            last_event_ids: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            with_ids,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        spawn_server(listener, state.clone(), stop.clone());
        SseUpstream {
            addr,
            state,
            stop: Mutex::new(stop),
        }
    }

    /// Appends an event (data = `data`), delivered to every connected client.
    pub fn publish(&self, data: impl Into<String>) {
        let mut events = self.state.events.lock().unwrap();
        events.push(data.into());
        self.state.len.send_replace(events.len());
    }

    /// Drops the listener and every open connection.
    pub fn kill(&self) {
        self.stop.lock().unwrap().cancel();
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        let stop = CancellationToken::new();
        spawn_server(listener, self.state.clone(), stop.clone());
        *self.stop.lock().unwrap() = stop;
    }

    pub fn connections(&self) -> usize {
        *self.state.connections.borrow()
    }

    /// The Last-Event-ID of each connection, in order.
    pub fn last_event_ids(&self) -> Vec<Option<String>> {
        self.state.last_event_ids.lock().unwrap().clone()
    }

    /// The `authorization` header of each connection, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.authorizations.lock().unwrap().clone()
    }

    /// Waits until `n` connections were made.
    pub async fn wait_connections(&self, n: usize) {
        let mut rx = self.state.connections.subscribe();
        tokio::time::timeout(super::client::WAIT, rx.wait_for(|&c| c >= n))
            .await
            .expect("upstream connections in time")
            .expect("upstream alive");
    }
}

fn spawn_server(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted { Ok((tcp, _)) => tcp, Err(_) => continue },
            };
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(respond(req, state)) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tcp), service);
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
}

fn respond(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The start position is fixed before the connection is announced, so a test that waits for the connection
    // and then publishes never races it.
    let start = match last.as_deref().and_then(|l| l.parse::<usize>().ok()) {
        Some(last) => last,
        None => *state.len.borrow(),
    };
    state.last_event_ids.lock().unwrap().push(last.clone());
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.authorizations.lock().unwrap().push(authorization);
    state.connections.send_modify(|c| *c += 1);
    let rx = state.len.subscribe();
    let body = stream::unfold((start, rx, state), |(mut next, mut rx, state)| async move {
        loop {
            let len = *rx.borrow_and_update();
            if next < len {
                let data = state.events.lock().unwrap()[next].clone();
                next += 1;
                let id = next.to_string();
                let frame = pushbridge::sse::encode_event(
                    state.with_ids.then_some(id.as_str()),
                    None,
                    &data,
                );
                return Some((Ok::<_, Infallible>(Frame::data(frame)), (next, rx, state)));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    let mut response = Response::new(StreamBody::new(body).boxed());
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}
