//! One pass-through WebSocket session: messages copied both ways between the client and the application
//! (tungstenite on each side, small buffers), until either side closes. Control frames pass too: pings and pongs
//! are relayed (tungstenite also answers each ping itself, so a pinger may see two pongs, which RFC 6455 §5.5.3
//! allows), and a close frame is relayed to the other side with its code; a client's close gets the application's
//! reply.
//!
//! pushbridge itself closes (RFC 6455 §7.4.1): 1001 to both on drain and after `idle_timeout` without a frame
//! either way; 1009 to a side that sent a message over `max_message` and 1002 to one that broke the protocol
//! (1001 to the other); 1001 to the survivor when a side hangs up without a close frame. A side that did not
//! complete the closing handshake gets a lingering close ([`linger`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::FusedStream;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use crate::config::PassthroughWebSocket;
pub use crate::metrics::CLOSE_REASONS;
use crate::metrics::Metrics;
use crate::transports::ws::{CLOSE_TIMEOUT, READ_BUFFER, WRITE_BUFFER, linger};

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// What a session needs besides its two connections.
pub(super) struct Session {
    /// This session's place in `websocket.max_sessions`.
    pub slot: OwnedSemaphorePermit,
    pub settings: PassthroughWebSocket,
    pub drain: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// The client's HTTP version (metrics label).
    pub http_version: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    App,
}

/// How the copying ended.
#[derive(Debug)]
enum End {
    /// `Side` sent a close frame (already relayed to the other side).
    Closed(Side),
    /// `Side` hung up without a close frame.
    Gone(Side),
    /// `Side` sent something it must be closed for with this code.
    Fault(Side, CloseCode, &'static str),
    Idle,
    Drain,
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Closed(Side::Client) | End::Gone(Side::Client) => "client",
            End::Closed(Side::App) | End::Gone(Side::App) => "app",
            End::Fault(_, CloseCode::Size, _) => "too_big",
            End::Fault(..) => "error",
            End::Idle => "idle",
            End::Drain => "drain",
        }
    }
}

/// What to do with one side once copying stopped.
enum Finish {
    /// Flush the reply tungstenite queued to its close frame.
    Reply,
    /// Send this close frame and wait (bounded) for the answer.
    Close(CloseCode, &'static str),
    /// It is gone: just shut the transport down.
    Drop,
}

impl Session {
    pub async fn run(self, client: Upgraded, app: Upgraded) {
        let open = OpenSession::new(&self.metrics, self.http_version, self.slot);
        let config = ws_config(self.settings.max_message);
        let mut client =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(config))
                .await;
        let mut app =
            WebSocketStream::from_raw_socket(TokioIo::new(app), Role::Client, Some(config)).await;
        let activity = Activity::new();
        let end = {
            let (mut client_tx, mut client_rx) = (&mut client).split();
            let (mut app_tx, mut app_rx) = (&mut app).split();
            tokio::select! {
                biased;
                () = self.drain.cancelled() => End::Drain,
                () = activity.idle(self.settings.idle_timeout) => End::Idle,
                end = pump(Side::Client, &mut client_rx, &mut app_tx, &activity) => end,
                end = pump(Side::App, &mut app_rx, &mut client_tx, &activity) => end,
            }
        };
        tracing::debug!(?end, "Pass-through WebSocket session ended");
        self.metrics
            .passthrough
            .ws_closes
            .with_label_values(&[end.reason()])
            .inc();
        let away = || Finish::Close(CloseCode::Away, "going away");
        // After a relayed close frame both sides only need the handshake finished: the closer gets tungstenite's
        // reply, the other side answers the relayed frame.
        let (to_client, to_app) = match end {
            End::Closed(_) => (Finish::Reply, Finish::Reply),
            End::Gone(Side::Client) => (Finish::Drop, away()),
            End::Gone(Side::App) => (away(), Finish::Drop),
            End::Fault(Side::Client, code, text) => (Finish::Close(code, text), away()),
            End::Fault(Side::App, code, text) => (away(), Finish::Close(code, text)),
            End::Idle => (
                Finish::Close(CloseCode::Away, "idle timeout"),
                Finish::Close(CloseCode::Away, "idle timeout"),
            ),
            End::Drain => (away(), away()),
        };
        let (client_done, app_done) = if matches!(end, End::Closed(Side::Client)) {
            client_close_reply(&mut client, &mut app).await
        } else {
            futures_util::future::join(
                tokio::time::timeout(CLOSE_TIMEOUT, finish(&mut client, to_client)),
                tokio::time::timeout(CLOSE_TIMEOUT, finish(&mut app, to_app)),
            )
            .await
        };
        drop(open);
        futures_util::future::join(
            teardown(client.get_mut(), client_done.unwrap_or(false)),
            teardown(app.get_mut(), app_done.unwrap_or(false)),
        )
        .await;
    }
}

/// Copies messages from `from` to `to` until `from` closes, hangs up or misbehaves, or `to` is gone.
async fn pump<R, W>(side: Side, from: &mut R, to: &mut W, activity: &Activity) -> End
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
    W: Sink<Message, Error = WsError> + Unpin,
{
    let other = match side {
        Side::Client => Side::App,
        Side::App => Side::Client,
    };
    loop {
        let message = match from.next().await {
            None => return End::Gone(side),
            Some(Ok(message)) => message,
            Some(Err(error)) => return read_error(side, &error),
        };
        activity.touch();
        match message {
            Message::Close(frame) => {
                let _ = to.send(Message::Close(frame)).await;
                return End::Closed(side);
            }
            // Only produced when writing raw frames; never read.
            Message::Frame(_) => continue,
            message => {
                if let Err(error) = to.send(message).await {
                    tracing::debug!(%error, "Pass-through WebSocket peer gone");
                    return End::Gone(other);
                }
            }
        }
    }
}

fn read_error(side: Side, error: &WsError) -> End {
    tracing::debug!(%error, ?side, "Pass-through WebSocket read ended");
    match error {
        WsError::Capacity(_) => End::Fault(side, CloseCode::Size, "message too big"),
        WsError::Utf8(_) => End::Fault(side, CloseCode::Invalid, "invalid UTF-8"),
        WsError::Protocol(_) => End::Fault(side, CloseCode::Protocol, "protocol error"),
        _ => End::Gone(side),
    }
}

/// The client closed: its close went on to the application, whose reply (its own code, not an echo of the
/// client's) is written to the client in place of the echo tungstenite queued; the echo only when the application
/// does not answer within [`CLOSE_TIMEOUT`]. The client stream is not flushed before, so the echo never leaves.
async fn client_close_reply(
    client: &mut Ws,
    app: &mut Ws,
) -> (
    Result<bool, tokio::time::error::Elapsed>,
    Result<bool, tokio::time::error::Elapsed>,
) {
    let reply = tokio::time::timeout(CLOSE_TIMEOUT, async {
        loop {
            match app.next().await {
                Some(Ok(Message::Close(frame))) => return Some(frame),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await;
    let frame = match reply {
        Ok(Some(frame)) => frame,
        answered => {
            let client_done =
                tokio::time::timeout(CLOSE_TIMEOUT, finish(client, Finish::Reply)).await;
            return (client_done, Ok(answered.is_ok()));
        }
    };
    // The application's handshake is complete once tungstenite ends its stream.
    let app_done = tokio::time::timeout(CLOSE_TIMEOUT, finish(app, Finish::Drop)).await;
    let mut bytes = Vec::new();
    let written = match Frame::close(frame).format(&mut bytes) {
        Ok(()) => tokio::time::timeout(CLOSE_TIMEOUT, async {
            let io = client.get_mut();
            io.write_all(&bytes).await?;
            io.flush().await
        })
        .await
        .is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    };
    (Ok(written), app_done)
}

/// Ends one side as `how` says (the caller bounds the time); true when nothing more can come from it: the
/// closing handshake completed, or it is gone.
async fn finish(ws: &mut Ws, how: Finish) -> bool {
    match how {
        Finish::Drop => return true,
        Finish::Reply => {
            if ws.flush().await.is_err() {
                return true;
            }
        }
        Finish::Close(code, reason) => {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            if ws.send(Message::Close(Some(frame))).await.is_err() {
                return true;
            }
        }
    }
    // A stream that already failed (a message too big, a protocol error) cannot read the answer.
    if ws.is_terminated() {
        return false;
    }
    // Until the closing handshake completes (tungstenite ends the stream) or fails.
    crate::transports::ws::close_answered(ws).await
}

/// Shuts a side's socket down: with a lingering close when it may still be sending (`done` false), so closing
/// with unread bytes does not reset the connection and overtake the close frame.
async fn teardown(io: &mut TokioIo<Upgraded>, done: bool) {
    if done {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.shutdown()).await;
    } else {
        linger(io).await;
    }
}

/// Small buffers (tungstenite's defaults zero-fill 128 KiB per connection); messages up to `max_message`.
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // One relayed message plus control frames: every send is flushed before the next.
        .max_write_buffer_size(max_message.saturating_mul(2).saturating_add(64 << 10))
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// When the last frame arrived from either side.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once `timeout` passed without a frame.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Keeps `pushbridge_passthrough_websockets_open` right for one session, and its slot until the gauge drops.
struct OpenSession {
    metrics: Arc<Metrics>,
    http_version: &'static str,
    slot: Option<OwnedSemaphorePermit>,
}

impl OpenSession {
    fn new(
        metrics: &Arc<Metrics>,
        http_version: &'static str,
        slot: OwnedSemaphorePermit,
    ) -> OpenSession {
        metrics
            .passthrough
            .ws_total
            .with_label_values(&[http_version])
            .inc();
        metrics
            .passthrough
            .ws_open
            .with_label_values(&[http_version])
            .inc();
        OpenSession {
            metrics: metrics.clone(),
            http_version,
            slot: Some(slot),
        }
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        // Free first: whoever sees the gauge drop can open a session again.
        drop(self.slot.take());
        self.metrics
            .passthrough
            .ws_open
            .with_label_values(&[self.http_version])
            .dec();
    }
}
