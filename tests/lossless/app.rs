//! Third-party-style SSE applications for the loss-free tests, on [`crate::support::app::serve`]:
//! - [`ReplayApp`]: a log of events per path with ids "1", "2", …; a connection with `Last-Event-ID: n` gets the
//!   events after n, one without gets the whole log from the start (as many apps do), then live events.
//! - [`ScriptApp`]: connection i to a path gets that path's i-th script (raw SSE bytes, ids as the script says,
//!   whatever `Last-Event-ID` asked), then ends or stays open. The first connection to each path waits for
//!   [`ScriptApp::release`], so a test can subscribe before anything is sent.
//!
//! Both record each connection's `Last-Event-ID` and count open connections per path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use tokio::sync::watch;

use crate::support::client::WAIT;

type Body = BoxBody<Bytes, Infallible>;

/// Connections made and open per path, and each connection's `Last-Event-ID`.
#[derive(Default)]
struct Connections {
    made: HashMap<String, Vec<Option<String>>>,
    open: HashMap<String, usize>,
}

#[derive(Clone, Default)]
struct Tracker(Arc<(Mutex<Connections>, watch::Sender<u64>)>);

impl Tracker {
    /// Records a new connection; the guard counts it open until the response body is dropped.
    fn connect(&self, path: &str, last_event_id: Option<String>) -> (usize, OpenGuard) {
        let mut c = self.0.0.lock().unwrap();
        let made = c.made.entry(path.to_owned()).or_default();
        made.push(last_event_id);
        let index = made.len() - 1;
        *c.open.entry(path.to_owned()).or_default() += 1;
        drop(c);
        self.0.1.send_modify(|v| *v += 1);
        let guard = OpenGuard {
            tracker: self.clone(),
            path: path.to_owned(),
        };
        (index, guard)
    }

    fn last_event_ids(&self, path: &str) -> Vec<Option<String>> {
        let c = self.0.0.lock().unwrap();
        c.made.get(path).cloned().unwrap_or_default()
    }

    async fn wait(&self, what: &str, check: impl Fn(&Connections) -> bool) {
        let mut rx = self.0.1.subscribe();
        let done = async {
            loop {
                if check(&self.0.0.lock().unwrap()) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        };
        tokio::time::timeout(WAIT, done)
            .await
            .unwrap_or_else(|_| panic!("never: {what}"));
    }
}

struct OpenGuard {
    tracker: Tracker,
    path: String,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut c = self.tracker.0.0.lock().unwrap();
        if let Some(open) = c.open.get_mut(&self.path) {
            *open -= 1;
        }
        drop(c);
        self.tracker.0.1.send_modify(|v| *v += 1);
    }
}

fn header(req: &Request<hyper::body::Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn sse_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// See the module documentation.
#[derive(Clone)]
pub struct ReplayApp {
    pub addr: SocketAddr,
    logs: Arc<Mutex<HashMap<String, Vec<String>>>>,
    published: watch::Sender<u64>,
    tracker: Tracker,
}

impl ReplayApp {
    pub async fn start() -> ReplayApp {
        let logs: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let published = watch::Sender::new(0);
        let tracker = Tracker::default();
        let (l, p, t) = (logs.clone(), published.clone(), tracker.clone());
        let addr = crate::support::app::serve(move |req| {
            let (logs, published, tracker) = (l.clone(), p.clone(), t.clone());
            async move { Self::respond(req, logs, published, tracker) }
        })
        .await;
        ReplayApp {
            addr,
            logs,
            published,
            tracker,
        }
    }

    fn respond(
        req: Request<hyper::body::Incoming>,
        logs: Arc<Mutex<HashMap<String, Vec<String>>>>,
        published: watch::Sender<u64>,
        tracker: Tracker,
    ) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let last = header(&req, "last-event-id");
        let start = last.as_deref().and_then(|l| l.parse().ok()).unwrap_or(0);
        let (_, guard) = tracker.connect(&path, last);
        let rx = published.subscribe();
        let body = stream::unfold(
            (start, rx, logs, path, guard),
            |(mut next, mut rx, logs, path, guard)| async move {
                loop {
                    let event = logs
                        .lock()
                        .unwrap()
                        .get(&path)
                        .and_then(|log| log.get(next).cloned());
                    if let Some(data) = event {
                        next += 1;
                        let frame =
                            pushbridge::sse::encode_event(Some(&next.to_string()), None, &data);
                        return Some((Ok(Frame::data(frame)), (next, rx, logs, path, guard)));
                    }
                    rx.changed().await.ok()?;
                }
            },
        );
        sse_response(StreamBody::new(body).boxed())
    }

    /// Appends `data` to the log of `path` (its id is its 1-based position).
    pub fn publish(&self, path: &str, data: &str) {
        self.logs
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .push(data.to_owned());
        self.published.send_modify(|v| *v += 1);
    }

    /// The `Last-Event-ID` of each connection to `path`, in order.
    pub fn last_event_ids(&self, path: &str) -> Vec<Option<String>> {
        self.tracker.last_event_ids(path)
    }

    /// Connections made to every path whose name starts with `prefix`.
    pub fn connections_under(&self, prefix: &str) -> usize {
        let c = self.tracker.0.0.lock().unwrap();
        c.made
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, made)| made.len())
            .sum()
    }

    /// Waits until `path` has had `made` connections and has `open` open.
    pub async fn wait_connections(&self, path: &str, made: usize, open: usize) {
        self.tracker
            .wait(&format!("{path}: {made} connections, {open} open"), |c| {
                c.made.get(path).map_or(0, Vec::len) >= made
                    && c.open.get(path).copied().unwrap_or(0) == open
            })
            .await;
    }
}

/// One connection's script.
pub struct Script {
    pub bytes: &'static str,
    /// Stay open after the script (else the response ends).
    pub hold: bool,
}

/// See the module documentation.
pub struct ScriptApp {
    pub addr: SocketAddr,
    release: watch::Sender<bool>,
    tracker: Tracker,
}

impl ScriptApp {
    /// `scripts`: per path, the script of each connection in order (the last one repeats).
    pub async fn start(scripts: Vec<(&'static str, Vec<Script>)>) -> ScriptApp {
        let scripts: Arc<HashMap<&'static str, Vec<Script>>> =
            Arc::new(scripts.into_iter().collect());
        let release = watch::Sender::new(false);
        let tracker = Tracker::default();
        let (s, r, t) = (scripts, release.clone(), tracker.clone());
        let addr = crate::support::app::serve(move |req| {
            let (scripts, release, tracker) = (s.clone(), r.clone(), t.clone());
            async move {
                let path = req.uri().path().to_owned();
                let (index, guard) = tracker.connect(&path, header(&req, "last-event-id"));
                let Some(list) = scripts.get(path.as_str()) else {
                    let mut response = Response::new(http_body_util::Empty::new().boxed());
                    *response.status_mut() = http::StatusCode::NOT_FOUND;
                    return response;
                };
                let script = &list[index.min(list.len() - 1)];
                let (bytes, hold) = (script.bytes, script.hold);
                let mut released = release.subscribe();
                let first = stream::once(async move {
                    if index == 0 {
                        let _ = released.wait_for(|r| *r).await;
                    }
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(bytes.as_bytes())))
                });
                // Open until the client goes: the guard lives as long as the body.
                let rest = stream::unfold(guard, move |guard| async move {
                    if hold {
                        std::future::pending::<()>().await;
                    }
                    drop(guard);
                    None::<(Result<Frame<Bytes>, Infallible>, OpenGuard)>
                });
                let body: Body =
                    BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(first, rest)));
                sse_response(body)
            }
        })
        .await;
        ScriptApp {
            addr,
            release,
            tracker,
        }
    }

    /// Lets the first connection of every path send its script.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    pub fn last_event_ids(&self, path: &str) -> Vec<Option<String>> {
        self.tracker.last_event_ids(path)
    }
}
