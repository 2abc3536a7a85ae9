//! Clients of a pushbridge stream path, one per transport: node `eventsource` (SSE), tokio-tungstenite
//! (WebSocket), and a hyper long-poll loop. Each is opened first (its subscription acknowledged: SSE response headers,
//! WebSocket handshake, the first long-poll answer), then read until the scenario's end event.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::node::{Node, Reader};
use super::normalize::{Got, RefItem, got};
use super::support::client::get_text;

pub const GAP_EVENT: &str = "pushbridge-gap";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    Ws,
    LongPoll,
    /// Long-poll with `wait=0` on every request (a client that polls without holding).
    LongPollNow,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Sse, Transport::Ws, Transport::LongPoll];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
            Transport::LongPoll => "long-poll",
            Transport::LongPollNow => "long-poll(wait=0)",
        }
    }
}

/// What a client got.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub events: Vec<Got>,
    /// Gap notices (events named [`GAP_EVENT`], long-poll `gap: true`).
    pub gaps: usize,
    /// The end event arrived.
    pub complete: bool,
    pub errors: Vec<String>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub enum Client {
    Sse(Reader),
    Ws(Box<Ws>),
    LongPoll {
        addr: SocketAddr,
        path: String,
        cursor: String,
        wait: u32,
        log: ClientLog,
    },
}

fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

impl Client {
    /// Opens `transport` on `path`, from `last_event_id` when given; returns once subscribed.
    pub async fn open(
        transport: Transport,
        node: &Node,
        addr: SocketAddr,
        path: &str,
        names: &[&str],
        last_event_id: Option<&str>,
    ) -> Result<Client, String> {
        let resume: Vec<(&str, &str)> = last_event_id
            .map(|id| vec![("last_event_id", id)])
            .unwrap_or_default();
        let limit = Duration::from_secs(15);
        match transport {
            Transport::Sse => {
                let mut names = names.to_vec();
                names.push(GAP_EVENT);
                let url = format!("http://{addr}{}", with_query(path, &resume));
                let mut reader = node.open(&url, &names);
                reader.opened(limit).await?;
                Ok(Client::Sse(reader))
            }
            Transport::Ws => {
                let url = format!("ws://{addr}{}", with_query(path, &resume));
                let (ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(url))
                    .await
                    .map_err(|_| "WebSocket handshake timed out".to_owned())?
                    .map_err(|e| format!("WebSocket handshake: {e}"))?;
                Ok(Client::Ws(Box::new(ws)))
            }
            Transport::LongPoll | Transport::LongPollNow => {
                let wait = if transport == Transport::LongPoll {
                    2
                } else {
                    0
                };
                let mut client = Client::LongPoll {
                    addr,
                    path: path.to_owned(),
                    cursor: last_event_id.unwrap_or_default().to_owned(),
                    wait,
                    log: ClientLog::default(),
                };
                // The position first (what the browser client does): `wait=0` subscribes and answers at once.
                client.poll(0).await?;
                Ok(client)
            }
        }
    }

    /// Long-poll only: polls (holding) until `n` events arrived in all, or `limit`.
    pub async fn poll_until(&mut self, n: usize, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self {
                Client::LongPoll { log, .. } if log.events.len() < n => {}
                Client::LongPoll { .. } => return Ok(()),
                _ => return Err("not a long-poll client".into()),
            }
            tokio::time::timeout_at(deadline, self.poll(2))
                .await
                .map_err(|_| format!("fewer than {n} events within {limit:?}"))??;
        }
    }

    /// One long-poll request with `wait`; its events go to the log, its cursor is kept. True at the end event.
    async fn poll(&mut self, wait: u32) -> Result<bool, String> {
        let Client::LongPoll {
            addr,
            path,
            cursor,
            log,
            ..
        } = self
        else {
            return Ok(false);
        };
        let wait = wait.to_string();
        let mut pairs = vec![("transport", "long-poll"), ("wait", wait.as_str())];
        if !cursor.is_empty() {
            pairs.push(("last_event_id", cursor.as_str()));
        }
        let (status, body) = get_text(*addr, &with_query(path, &pairs)).await;
        if status != 200 {
            return Err(format!("long-poll status {status}: {body}"));
        }
        let batch: Value =
            serde_json::from_str(&body).map_err(|e| format!("long-poll JSON {e}: {body}"))?;
        if batch["gap"] == true {
            log.gaps += 1;
        }
        let mut done = false;
        for e in batch["events"].as_array().into_iter().flatten() {
            let text = |k: &str| e[k].as_str().unwrap_or_default();
            log.events
                .push(got(text("event"), text("data"), text("id")));
            done |= is_end(text("event"), text("data"));
        }
        cursor.clear();
        cursor.push_str(batch["last_event_id"].as_str().unwrap_or_default());
        Ok(done)
    }

    /// Reads until the end event (an event named `end`, or data containing it) or `limit`.
    pub async fn collect(mut self, limit: Duration) -> ClientLog {
        let deadline = tokio::time::Instant::now() + limit;
        match self {
            Client::Sse(mut reader) => {
                let read = reader.collect(END, limit, true).await;
                let mut log = ClientLog {
                    complete: read.complete,
                    errors: read.errors,
                    ..ClientLog::default()
                };
                for item in read.items {
                    match item {
                        RefItem::Open => {}
                        RefItem::Event(e) if e.event == GAP_EVENT => log.gaps += 1,
                        RefItem::Event(e) => log.events.push(got(&e.event, &e.data, &e.id)),
                    }
                }
                log
            }
            Client::Ws(ref mut ws) => {
                let mut log = ClientLog::default();
                loop {
                    let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
                        Err(_) => break,
                        Ok(None) => {
                            log.errors.push("WebSocket closed".into());
                            break;
                        }
                        Ok(Some(Err(e))) => {
                            log.errors.push(format!("WebSocket: {e}"));
                            break;
                        }
                        Ok(Some(Ok(frame))) => frame,
                    };
                    if !frame.is_text() {
                        continue;
                    }
                    let envelope: Value = match serde_json::from_str(frame.to_text().unwrap_or(""))
                    {
                        Ok(v) => v,
                        Err(e) => {
                            log.errors.push(format!("envelope {e}"));
                            continue;
                        }
                    };
                    let text = |k: &str| envelope[k].as_str().unwrap_or_default();
                    if text("event") == GAP_EVENT {
                        log.gaps += 1;
                        continue;
                    }
                    log.events
                        .push(got(text("event"), text("data"), text("id")));
                    if is_end(text("event"), text("data")) {
                        log.complete = true;
                        break;
                    }
                }
                log
            }
            Client::LongPoll { .. } => {
                let done_already = matches!(&self, Client::LongPoll { log, .. }
                    if log.events.iter().any(|e| is_end(&e.event, &e.data)));
                let mut complete = done_already;
                let mut pace = tokio::time::interval(Duration::from_millis(50));
                while !complete && tokio::time::Instant::now() < deadline {
                    let wait = match &self {
                        Client::LongPoll { wait, .. } => *wait,
                        _ => 0,
                    };
                    if wait == 0 {
                        // Polling without holding: a request per tick (cadence, not synchronisation).
                        pace.tick().await;
                    }
                    match tokio::time::timeout_at(deadline, self.poll(wait)).await {
                        Ok(Ok(done)) => complete = done,
                        Ok(Err(e)) => {
                            if let Client::LongPoll { log, .. } = &mut self {
                                log.errors.push(e);
                            }
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match self {
                    Client::LongPoll { mut log, .. } => {
                        log.complete = complete;
                        log
                    }
                    _ => ClientLog::default(),
                }
            }
        }
    }
}

/// The scenario's last event: named [`END`] or with data containing it (routes without `map` carry no name).
pub const END: &str = "pbdiff-end";

pub fn is_end(event: &str, data: &str) -> bool {
    event == END || data.contains(END)
}
