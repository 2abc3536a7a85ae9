//! One simulated client per task, for each transport: SSE (hyper HTTP/1.1 client, decoded with
//! `pushbridge::sse::Decoder`), WebSocket (tokio-tungstenite with small buffers, RFC 6455) and long-poll
//! (hyper, kept-alive, `last_event_id` carried between polls as docs/protocol.md describes). Each reports when it
//! is connected, tallies events while the window is open, and reconnects after a failure until `stop`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pushbridge::sse::{Decoder, Item};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::stats::{Tally, Window, timestamps};

type BoxError = pushbridge::BoxError;

/// Give up on one connection attempt after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before reconnecting after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Sse,
    Ws,
    LongPoll,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
            Transport::LongPoll => "long-poll",
        }
    }
}

/// Where and how every client connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Path and query of the stream.
    pub path: String,
    pub transport: Transport,
}

/// What each client task shares.
#[derive(Clone)]
pub struct Shared {
    pub target: Target,
    pub window: Window,
    pub stop: CancellationToken,
    /// Limits connection attempts in flight (a permit is held until the client is connected).
    pub connecting: std::sync::Arc<Semaphore>,
    /// One message per client, the first time it connects.
    pub connected: mpsc::UnboundedSender<()>,
}

/// Runs one client until `stop`.
pub async fn run(shared: Shared) -> Tally {
    let mut tally = Tally::default();
    let mut announced = false;
    while !shared.stop.is_cancelled() {
        let result = tokio::select! {
            () = shared.stop.cancelled() => break,
            result = session(&shared, &mut tally, &mut announced) => result,
        };
        if result.is_err() {
            tally.error(&shared.window);
        }
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
    tally
}

/// One connection, until it fails or ends.
async fn session(shared: &Shared, tally: &mut Tally, announced: &mut bool) -> Result<(), BoxError> {
    let permit = shared.connecting.acquire().await?;
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&shared.target)).await;
    drop(permit);
    let connection = opened.map_err(|_| "connect timed out")??;
    if !*announced {
        *announced = true;
        let _ = shared.connected.send(());
    }
    match connection {
        Connection::Sse(body) => read_sse(body, &shared.window, tally).await,
        Connection::Ws(socket) => read_ws(socket, &shared.window, tally).await,
        Connection::LongPoll(sender) => {
            poll_loop(sender, &shared.target, &shared.window, tally).await
        }
    }
}

enum Connection {
    Sse(hyper::body::Incoming),
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    LongPoll(SendRequest<Empty<Bytes>>),
}

/// Connects and, for SSE and WebSocket, waits for the response head (the stream is then live).
async fn open(target: &Target) -> Result<Connection, BoxError> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    match target.transport {
        Transport::Ws => {
            let url = format!("ws://{}{}", target.addr, target.path);
            // tungstenite reads into a 128 KiB buffer by default: far too much for thousands of sockets.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0)
                .max_write_buffer_size(64 * 1024);
            let (socket, _) =
                tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
            Ok(Connection::Ws(Box::new(socket)))
        }
        Transport::Sse => {
            let mut sender = handshake(tcp).await?;
            let request = get(target, &target.path)
                .header("accept", "text/event-stream")
                .body(Empty::new())?;
            let response = sender.send_request(request).await?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()).into());
            }
            Ok(Connection::Sse(response.into_body()))
        }
        Transport::LongPoll => Ok(Connection::LongPoll(handshake(tcp).await?)),
    }
}

async fn handshake(tcp: TcpStream) -> Result<SendRequest<Empty<Bytes>>, BoxError> {
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn get(target: &Target, path: &str) -> http::request::Builder {
    http::Request::get(path).header("host", target.addr.to_string())
}

async fn read_sse(
    mut body: hyper::body::Incoming,
    window: &Window,
    tally: &mut Tally,
) -> Result<(), BoxError> {
    let mut decoder = Decoder::new(1 << 20);
    let mut items = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame?.into_data() else {
            continue;
        };
        decoder.feed(&chunk, &mut items);
        for item in items.drain(..) {
            if let Item::Event(event) = item {
                tally.record(window, timestamps(&event.data));
            }
        }
    }
    Err("stream ended".into())
}

async fn read_ws(
    mut socket: Box<tokio_tungstenite::WebSocketStream<TcpStream>>,
    window: &Window,
    tally: &mut Tally,
) -> Result<(), BoxError> {
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => tally.record(window, timestamps(text.as_str())),
            Message::Binary(bytes) => {
                tally.record(window, timestamps(&String::from_utf8_lossy(&bytes)))
            }
            Message::Close(frame) => {
                let _ = socket.close().await;
                return Err(format!("closed: {frame:?}").into());
            }
            _ => {}
        }
    }
    Err("socket ended".into())
}

/// Polls again and again with the cursor the previous answer gave.
async fn poll_loop(
    mut sender: SendRequest<Empty<Bytes>>,
    target: &Target,
    window: &Window,
    tally: &mut Tally,
) -> Result<(), BoxError> {
    let separator = if target.path.contains('?') { '&' } else { '?' };
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(id) => {
                let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
                format!("{}{separator}last_event_id={id}", target.path)
            }
            None => target.path.clone(),
        };
        sender.ready().await?;
        let response = sender
            .send_request(get(target, &path).body(Empty::new())?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!("status {status}").into());
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        if let Some(events) = answer["events"].as_array() {
            let sent = events
                .iter()
                .filter_map(|e| e["data"].as_str())
                .flat_map(timestamps);
            tally.record(window, sent.collect::<Vec<_>>().into_iter());
        }
        if let Some(id) = answer["last_event_id"].as_str() {
            cursor = Some(id.to_owned());
        }
    }
}
