//! HTTP test upstreams for the JSON kinds on 127.0.0.1:0: an NDJSON streaming server (one line per logged
//! entry after the `X-Resume-After` id, then new ones; its open streams can be ended as by a restart) and a
//! polling server (events after `?cursor=`, an `ETag` per answer, `304` for `If-None-Match`; short-poll, or
//! long-poll holding the request until something is new). Both answer 503 while `down`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, watch};

use super::app;
use super::client::WAIT;
use super::feeds::Log;

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

struct NdState {
    log: Log<String>,
    resume_after: Mutex<Vec<Option<String>>>,
    connections: watch::Sender<usize>,
    /// Bumped by `end_streams`: responses opened before the bump end.
    generation: watch::Sender<u64>,
    down: AtomicBool,
}

pub struct NdjsonUpstream {
    pub addr: SocketAddr,
    state: Arc<NdState>,
}

impl NdjsonUpstream {
    pub async fn start() -> NdjsonUpstream {
        let state = Arc::new(NdState {
            log: Log::new(),
            resume_after: Mutex::new(Vec::new()),
            connections: watch::Sender::new(0),
            generation: watch::Sender::new(0),
            down: AtomicBool::new(false),
        });
        let shared = state.clone();
        let addr = app::serve(move |req| ndjson(shared.clone(), req)).await;
        NdjsonUpstream { addr, state }
    }

    /// Logs one line (`\n` is added); `id` is what `X-Resume-After` is compared with.
    pub fn publish(&self, id: Option<&str>, line: impl Into<String>) {
        self.state.log.push(id, line.into());
    }

    /// Ends every open response (the upstream restarted); set `down` to refuse the reconnects meanwhile.
    pub fn end_streams(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// The `X-Resume-After` header of each stream request, in order.
    pub fn resume_after(&self) -> Vec<Option<String>> {
        self.state.resume_after.lock().unwrap().clone()
    }

    pub async fn wait_connections(&self, n: usize) {
        let mut rx = self.state.connections.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|&c| c >= n))
            .await
            .expect("upstream connections in time")
            .expect("upstream alive");
    }
}

async fn ndjson(state: Arc<NdState>, req: Request<Incoming>) -> Response<Body> {
    if state.down.load(Ordering::SeqCst) {
        return full(StatusCode::SERVICE_UNAVAILABLE, "down");
    }
    let after = header(&req, "x-resume-after");
    let mut next = state.log.start(after.as_deref());
    state.resume_after.lock().unwrap().push(after);
    state.connections.send_modify(|c| *c += 1);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let mut len = state.log.watch();
    let mut generation = state.generation.subscribe();
    let opened = *generation.borrow();
    tokio::spawn(async move {
        loop {
            for line in state.log.from(next) {
                // Ended: send nothing more, even what was logged since.
                if *generation.borrow() > opened {
                    return;
                }
                next += 1;
                if tx
                    .send(Ok(Frame::data(format!("{line}\n").into())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            tokio::select! {
                () = async { drop(generation.wait_for(|&g| g > opened).await) } => return,
                changed = len.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// One request the polling server answered.
#[derive(Debug, Clone)]
pub struct PollRequest {
    pub cursor: Option<String>,
    pub if_none_match: Option<String>,
    pub status: u16,
}

struct PollState {
    /// (id, text) per event; the id is also the cursor after it.
    log: Log<(String, String)>,
    requests: Mutex<Vec<PollRequest>>,
    answered: watch::Sender<usize>,
    down: AtomicBool,
    /// Long-poll: hold a request with nothing new for up to this long.
    hold: Option<Duration>,
}

pub struct PollUpstream {
    pub addr: SocketAddr,
    state: Arc<PollState>,
}

impl PollUpstream {
    /// `hold`: None for a short-poll endpoint, else how long a request with nothing new is held.
    pub async fn start(hold: Option<Duration>) -> PollUpstream {
        let state = Arc::new(PollState {
            log: Log::new(),
            requests: Mutex::new(Vec::new()),
            answered: watch::Sender::new(0),
            down: AtomicBool::new(false),
            hold,
        });
        let shared = state.clone();
        let addr = app::serve(move |req| poll(shared.clone(), req)).await;
        PollUpstream { addr, state }
    }

    pub fn publish(&self, id: &str, text: &str) {
        self.state
            .log
            .push(Some(id), (id.to_owned(), text.to_owned()));
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<PollRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until a request answered with `status` was made after the first `skip` requests; its index.
    pub async fn wait_status(&self, status: u16, skip: usize) -> usize {
        let mut rx = self.state.answered.subscribe();
        let found = || {
            let requests = self.state.requests.lock().unwrap();
            requests
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, r)| r.status == status)
                .map(|(i, _)| i)
        };
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(i) = found() {
                    return i;
                }
                rx.changed().await.expect("upstream alive");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {status} answer in time"))
    }
}

async fn poll(state: Arc<PollState>, req: Request<Incoming>) -> Response<Body> {
    let cursor = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned());
    let if_none_match = header(&req, "if-none-match");
    let response = answer(&state, cursor.as_deref(), if_none_match.as_deref()).await;
    state.requests.lock().unwrap().push(PollRequest {
        cursor,
        if_none_match,
        status: response.status().as_u16(),
    });
    state.answered.send_modify(|n| *n += 1);
    response
}

async fn answer(
    state: &PollState,
    cursor: Option<&str>,
    if_none_match: Option<&str>,
) -> Response<Body> {
    if state.down.load(Ordering::SeqCst) {
        return full(StatusCode::SERVICE_UNAVAILABLE, "down");
    }
    let start = state.log.start(cursor);
    if let Some(hold) = state.hold {
        let mut len = state.log.watch();
        let _ = tokio::time::timeout(hold, len.wait_for(|&n| n > start)).await;
    }
    let etag = format!("\"{start}-{}\"", state.log.len());
    if if_none_match == Some(etag.as_str()) {
        let mut response = full(StatusCode::NOT_MODIFIED, "");
        response.headers_mut().insert("etag", etag.parse().unwrap());
        return response;
    }
    let events: Vec<serde_json::Value> = state
        .log
        .from(start)
        .into_iter()
        .map(|(id, text)| serde_json::json!({ "id": id, "text": text }))
        .collect();
    let next = events
        .last()
        .map(|e| e["id"].clone())
        .unwrap_or_else(|| cursor.map_or(serde_json::Value::Null, serde_json::Value::from));
    let body = serde_json::json!({ "events": events, "cursor": next }).to_string();
    let mut response = full(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert("etag", etag.parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    response
}
