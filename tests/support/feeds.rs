//! For the upstream-kind tests: an append-only event log the test upstreams serve from (each entry with the
//! id it carries, so a resume position maps to a place in the log), and SSE + WebSocket + long-poll clients
//! reading one stream path of the proxy, each event reduced to `(id, event, data)`.

use std::net::SocketAddr;
use std::sync::Mutex;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::client::{Proto, SseClient, WAIT, connect, get_text};

/// What a client saw: id, event name (`message` when none), data.
pub type Seen = (String, String, String);

/// Entries of an upstream's stream: the id the entry carries (to resume after) and its payload.
pub struct Log<T> {
    entries: Mutex<Vec<(Option<String>, T)>>,
    len: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    pub fn new() -> Log<T> {
        Log {
            entries: Mutex::new(Vec::new()),
            len: watch::Sender::new(0),
        }
    }

    pub fn push(&self, id: Option<&str>, payload: T) {
        let mut entries = self.entries.lock().unwrap();
        entries.push((id.map(str::to_owned), payload));
        self.len.send_replace(entries.len());
    }

    /// The index after the entry with id `after` (0 when absent or unknown).
    pub fn start(&self, after: Option<&str>) -> usize {
        let entries = self.entries.lock().unwrap();
        after
            .and_then(|after| {
                entries
                    .iter()
                    .position(|(id, _)| id.as_deref() == Some(after))
            })
            .map_or(0, |i| i + 1)
    }

    /// Entries from index `from` on.
    pub fn from(&self, from: usize) -> Vec<T> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        *self.len.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<usize> {
        self.len.subscribe()
    }
}

/// An SSE and a WebSocket client of one stream path.
pub struct Clients {
    sse: SseClient,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Clients {
    pub async fn open(addr: SocketAddr, path: &str) -> Clients {
        let sse = connect(addr, Proto::H1).await.sse(addr, path, None).await;
        let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .expect("WebSocket client");
        assert_eq!(response.headers()["x-pushbridge-transport"], "ws");
        Clients { sse, ws }
    }

    /// The next `n` events of each: (SSE, WebSocket).
    pub async fn take(&mut self, n: usize) -> (Vec<Seen>, Vec<Seen>) {
        let sse = self
            .sse
            .take(n)
            .await
            .into_iter()
            .map(|e| {
                let event = e.event.unwrap_or_else(|| "message".into());
                (e.id.unwrap_or_default(), event, e.data)
            })
            .collect();
        let mut ws = Vec::new();
        while ws.len() < n {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("WebSocket event in time")
                .expect("WebSocket open")
                .expect("WebSocket frame");
            if !frame.is_text() {
                continue;
            }
            let envelope: serde_json::Value =
                serde_json::from_str(frame.to_text().unwrap()).unwrap();
            ws.push(seen(&envelope));
        }
        (sse, ws)
    }
}

/// Long-polls `path` from the cursor `after` until `n` events arrived.
pub async fn long_poll(addr: SocketAddr, path: &str, after: &str, n: usize) -> Vec<Seen> {
    let mut cursor = after.to_owned();
    let mut out = Vec::new();
    while out.len() < n {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("transport", "long-poll")
            .append_pair("last_event_id", &cursor)
            .finish();
        let (status, body) = tokio::time::timeout(WAIT, get_text(addr, &format!("{path}?{query}")))
            .await
            .expect("long-poll answer in time");
        assert_eq!(status, 200, "{body}");
        let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(batch["gap"], false, "{body}");
        out.extend(batch["events"].as_array().unwrap().iter().map(seen));
        cursor = batch["last_event_id"].as_str().unwrap().to_owned();
    }
    out
}

fn seen(envelope: &serde_json::Value) -> Seen {
    let text = |key: &str| envelope[key].as_str().unwrap_or_default().to_owned();
    (text("id"), text("event"), text("data"))
}

/// The value of one series (`name{labels}` exactly as exposed) on the admin listener's `/metrics`.
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (_, text) = get_text(admin, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series}"))
}
