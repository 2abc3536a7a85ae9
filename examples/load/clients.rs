//! One simulated client per task, for each transport: SSE (the lean HTTP/1.1 client of [`h1sse`], over TLS with
//! `--tls`, or hyper's HTTP/2 client with streams sharing prior-knowledge h2c connections with `--h2`; event
//! blocks found with [`SseScanner`], only `seq=`/`ts=` read), WebSocket (tokio-tungstenite with small buffers, RFC 6455) and
//! long-poll (hyper, kept-alive, `last_event_id` carried between polls as docs/protocol.md describes). Each
//! reports when it is connected, tallies events, and reconnects after a failure until `stop`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::stats::{SseScanner, Tally, Window, stamp};
use crate::{h1sse, wsdeflate};

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
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Path and query of the stream.
    pub path: String,
    pub transport: Transport,
    /// SSE over TLS (HTTP/1.1 by ALPN) with this connector.
    pub tls: Option<TlsConnector>,
    /// SSE as HTTP/2 streams: one shared h2c connection per slot, `streams_per_conn` clients per slot.
    pub h2: Option<H2Pool>,
    /// WebSocket through [`wsdeflate`], offering this `Sec-WebSocket-Extensions` value (none when empty).
    pub ws_offer: Option<String>,
}

type H2Sender = http2::SendRequest<Empty<Bytes>>;

/// The shared HTTP/2 connections of `--h2`: client `i` uses slot `i / streams_per_conn`; a slot reconnects when
/// its connection has closed.
#[derive(Clone)]
pub struct H2Pool {
    pub streams_per_conn: u32,
    slots: Arc<[Mutex<Option<H2Sender>>]>,
}

impl H2Pool {
    pub fn new(clients: u32, streams_per_conn: u32) -> H2Pool {
        let streams_per_conn = streams_per_conn.max(1);
        let slots = (0..clients.div_ceil(streams_per_conn))
            .map(|_| Mutex::new(None))
            .collect();
        H2Pool {
            streams_per_conn,
            slots,
        }
    }

    pub fn connections(&self) -> usize {
        self.slots.len()
    }

    async fn sender(&self, client: u32, addr: SocketAddr) -> Result<H2Sender, BoxError> {
        let slot = &self.slots[(client / self.streams_per_conn) as usize];
        let mut slot = slot.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(slot.insert(sender).clone())
    }
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

/// Runs client number `index` until `stop`.
pub async fn run(shared: Shared, index: u32) -> Tally {
    let mut tally = Tally::default();
    let mut announced = false;
    while !shared.stop.is_cancelled() {
        let result = tokio::select! {
            () = shared.stop.cancelled() => break,
            result = session(&shared, index, &mut tally, &mut announced) => result,
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
async fn session(
    shared: &Shared,
    index: u32,
    tally: &mut Tally,
    announced: &mut bool,
) -> Result<(), BoxError> {
    let permit = shared.connecting.acquire().await?;
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&shared.target, index)).await;
    drop(permit);
    let connection = opened.map_err(|_| "connect timed out")??;
    if !*announced {
        *announced = true;
        let _ = shared.connected.send(());
    }
    match connection {
        Connection::Sse(body) => read_sse(body, &shared.window, tally).await,
        Connection::H1Sse(stream) => h1sse::read(stream, &shared.window, tally).await,
        Connection::Ws(socket) => read_ws(socket, &shared.window, tally).await,
        Connection::WsDeflate(socket) => {
            tally.deflate_sessions += u64::from(socket.deflate());
            socket.read(&shared.window, tally).await
        }
        Connection::LongPoll(sender) => {
            poll_loop(sender, &shared.target, &shared.window, tally).await
        }
    }
}

enum Connection {
    /// SSE over HTTP/2 (hyper).
    Sse(hyper::body::Incoming),
    /// SSE over HTTP/1.1, plaintext or TLS.
    H1Sse(h1sse::Stream),
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    /// WebSocket with permessage-deflate offered (`--ws-deflate`).
    WsDeflate(Box<wsdeflate::Socket>),
    LongPoll(SendRequest<Empty<Bytes>>),
}

/// Connects and, for SSE and WebSocket, waits for the response head (the stream is then live).
async fn open(target: &Target, index: u32) -> Result<Connection, BoxError> {
    if let Some(pool) = &target.h2 {
        let mut sender = pool.sender(index, target.addr).await?;
        let uri = format!("http://{}{}", target.addr, target.path);
        let request = http::Request::get(uri)
            .header("accept", "text/event-stream")
            .body(Empty::new())?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        return sse_body(response);
    }
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    match target.transport {
        Transport::Ws if target.ws_offer.is_some() => {
            let offer = target.ws_offer.as_deref().unwrap_or_default();
            let host = target.addr.to_string();
            let socket = wsdeflate::open(tcp, &host, &target.path, offer).await?;
            Ok(Connection::WsDeflate(Box::new(socket)))
        }
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
            let host = target.addr.to_string();
            let stream = match &target.tls {
                Some(tls) => {
                    let name = ServerName::from(target.addr.ip());
                    h1sse::open(tls.connect(name, tcp).await?, &host, &target.path).await?
                }
                None => h1sse::open(tcp, &host, &target.path).await?,
            };
            Ok(Connection::H1Sse(stream))
        }
        Transport::LongPoll => Ok(Connection::LongPoll(handshake(tcp).await?)),
    }
}

fn sse_body(response: http::Response<hyper::body::Incoming>) -> Result<Connection, BoxError> {
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()).into());
    }
    Ok(Connection::Sse(response.into_body()))
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<Empty<Bytes>>, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io)).await?;
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
    let mut scanner = SseScanner::default();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame?.into_data() else {
            continue;
        };
        scanner.feed(&chunk, |block| {
            if let Some(stamp) = stamp(block) {
                tally.record(window, stamp);
            }
        })?;
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
            Message::Text(text) => {
                tally.payload(window, text.len(), text.len());
                if let Some(stamp) = stamp(text.as_bytes()) {
                    tally.record(window, stamp);
                }
            }
            Message::Binary(bytes) => {
                tally.payload(window, bytes.len(), bytes.len());
                if let Some(stamp) = stamp(&bytes) {
                    tally.record(window, stamp);
                }
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
            let stamps = events
                .iter()
                .filter_map(|e| e["data"].as_str())
                .filter_map(|data| stamp(data.as_bytes()));
            for stamp in stamps {
                tally.record(window, stamp);
            }
        }
        if let Some(id) = answer["last_event_id"].as_str() {
            cursor = Some(id.to_owned());
        }
    }
}
