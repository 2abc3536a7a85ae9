//! One WebSocket session (RFC 6455) on an upgraded connection: events out as text frames, client frames in, pings,
//! and the closing rules. Reading and writing run concurrently on the split stream, so a client that stops reading
//! blocks only its own writer (the hub's sweeper kicks it); a client that stops answering pings is closed.
//!
//! Close codes (RFC 6455 §7.4.1): 1001 on drain or stream end, 1003 for a client message on a route without
//! `client_messages`, 1007 for invalid UTF-8 or deflate data, 1002 for a protocol error, 1009 for an over-size client
//! message (a compressed one: as sent or inflated), 1011 after two unanswered pings, 1013 when the client fell behind
//! the ring (resume with its last id). A client that did not answer the close frame (it may still be sending the
//! message it was closed for) gets a lingering close ([`super::linger`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FusedStream;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use http::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, error::CapacityError};

use super::compressed::{Arrivals, Arrived, InflateError, Inflater, Rsv1Reader};
use super::offer::Deflate;
use crate::config::WsFormat;
use crate::event::Event;
use crate::hub::{Next, Subscription};
use crate::transports::ends::{End as Stop, Ends, Gated};
use crate::transports::{OpenGauge, StreamContext};

/// Most events taken from the ring per wake-up (written, then flushed once).
pub const SENT_BATCH: usize = 64;
/// How long the closing handshake may take before the connection is dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pings in a row a peer may leave unanswered; at the next heartbeat it is closed.
pub const MISSED_PONGS: u32 = 2;

/// A subscribed client waiting for its upgrade.
pub struct Session {
    ctx: StreamContext,
    subscription: Subscription,
    /// The handshake's headers forwarded with client messages.
    forwarded: HeaderMap,
    negotiated: Negotiated,
    _gauge: OpenGauge,
}

/// What the handshake settled for the session.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// Payload per event: the selected subprotocol's, or the route's `ws.format`.
    pub format: WsFormat,
    pub deflate: Option<Deflate>,
}

/// Whether the peer answers pings, shared by the reader and the writer.
#[derive(Default)]
struct Liveness {
    /// Pings sent since the last pong.
    unanswered: AtomicU32,
    /// The reader is busy forwarding a message (and cannot see pongs).
    forwarding: AtomicBool,
}

impl Liveness {
    /// Counts a heartbeat; true when the peer left [`MISSED_PONGS`] pings in a row unanswered.
    fn ping_missed(&self) -> bool {
        let missed = self.unanswered.fetch_add(1, Ordering::Relaxed);
        missed >= MISSED_PONGS && !self.forwarding.load(Ordering::Relaxed)
    }
}

/// How a session ends.
#[derive(Debug)]
enum End {
    /// Drop the connection at once (kicked, peer gone, I/O error).
    Drop,
    /// The peer sent a close frame: flush the reply tungstenite queued.
    PeerClosed,
    /// Send a close frame, then wait (bounded) for the peer's reply.
    Close(CloseCode, &'static str),
    /// Send a close frame to an unresponsive peer and hang up without waiting for a reply.
    Abandon(CloseCode, &'static str),
}

impl Session {
    pub fn new(
        ctx: StreamContext,
        subscription: Subscription,
        forwarded: HeaderMap,
        negotiated: Negotiated,
        gauge: OpenGauge,
    ) -> Session {
        Session {
            ctx,
            subscription,
            forwarded,
            negotiated,
            _gauge: gauge,
        }
    }

    /// Serves the session until it ends, then closes the connection. Not an `async fn`: the block's captures
    /// are its only copy of the session (an `async fn` keeps its arguments twice, as passed and as bound).
    pub fn run<IO>(
        self,
        io: IO,
        config: WebSocketConfig,
    ) -> impl std::future::Future<Output = ()> + Send
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let Session {
            ctx,
            mut subscription,
            forwarded,
            negotiated,
            _gauge: gauge,
        } = self;
        async move {
            let arrivals = negotiated.deflate.map(|_| Arrivals::default());
            let io = Rsv1Reader::new(io, arrivals.clone());
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            let (mut sink, mut stream) = ws.split();
            let liveness = Liveness::default();
            // Polled only when a token fired (not on every event: see `ends.rs`).
            let ends = Ends::new(&ctx.drain, &ctx.kick);
            // Polled only when the socket (or a forwarded message) woke it, not on every event the writer sends.
            let end = {
                let reader = std::pin::pin!(read_loop(
                    &ctx,
                    &forwarded,
                    &mut stream,
                    &liveness,
                    Inbound::new(negotiated.deflate, arrivals),
                ));
                tokio::select! {
                    biased;
                    end = ends => match end {
                        // A kicked client stopped reading: its socket is full, so a close frame would not get through.
                        Stop::Kicked => End::Drop,
                        Stop::Drained => End::Close(CloseCode::Away, "going away"),
                    },
                    end = Gated::new(reader) => end,
                    end = write_loop(&ctx, &mut subscription, &mut sink, &liveness, negotiated) => end,
                }
            };
            drop(subscription);
            tracing::debug!(stream = %ctx.key, ?end, "WebSocket session ended");
            let Ok(ws) = sink.reunite(stream) else {
                return;
            };
            // Boxed: a session does not carry the closing handshake's room while it runs.
            type Closing<'a, IO> =
                std::pin::Pin<Box<dyn std::future::Future<Output = Option<IO>> + Send + 'a>>;
            let closing: Closing<'_, Rsv1Reader<IO>> = Box::pin(close(ws, end));
            let lingering = closing.await;
            // The session counts as open until here.
            drop(gauge);
            if let Some(mut io) = lingering {
                super::linger(&mut io).await;
            }
        }
    }
}

/// Sends events, gap notices and pings until the stream ends or the peer stops answering pings.
async fn write_loop<S>(
    ctx: &StreamContext,
    subscription: &mut Subscription,
    sink: &mut S,
    liveness: &Liveness,
    negotiated: Negotiated,
) -> End
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let config = &ctx.route.config;
    let mut ticker = tokio::time::interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = subscription.next(SENT_BATCH) => next,
            _ = ticker.tick() => {
                if liveness.ping_missed() {
                    tracing::debug!(stream = %ctx.key, "WebSocket peer missed {MISSED_PONGS} pongs: closing");
                    return End::Abandon(CloseCode::Error, "ping timeout");
                }
                if let Err(error) = sink.send(Message::Ping(Bytes::new())).await {
                    return hung_up(&error);
                }
                continue;
            }
        };
        match next {
            Next::Events(events) => {
                let mut sent = crate::metrics::WsSent::default();
                for event in &events {
                    let message = event_message(event, negotiated, &mut sent);
                    if let Err(error) = sink.feed(message).await {
                        return hung_up(&error);
                    }
                }
                ctx.metrics
                    .delivered("ws", &events, |e| subscription.is_live(e));
                ctx.metrics.ws.sent(sent);
                if let Err(error) = sink.flush().await {
                    return hung_up(&error);
                }
            }
            Next::Gap { last_event_id } => {
                if let Err(error) = sink
                    .send(text(gap_envelope(&config.gap_event, &last_event_id)))
                    .await
                {
                    return hung_up(&error);
                }
            }
            Next::Lagged => {
                ctx.metrics.slow_consumers.with_label_values(&["ws"]).inc();
                tracing::debug!(stream = %ctx.key, "WebSocket subscriber fell behind: closing with 1013");
                return End::Close(CloseCode::Again, "try again later");
            }
            Next::Closed => return End::Close(CloseCode::Away, "going away"),
        }
    }
}

/// Reads client frames: messages are forwarded to the application (in order, one at a time), pongs reset the
/// missed-pong count, and tungstenite queues the answers to pings and close frames (flushed by the next read).
async fn read_loop<S>(
    ctx: &StreamContext,
    forwarded: &HeaderMap,
    stream: &mut S,
    liveness: &Liveness,
    mut inbound: Inbound,
) -> End
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let message = match stream.next().await {
            None => return End::Drop,
            Some(Ok(message)) => message,
            Some(Err(error)) => return read_error(ctx, &error),
        };
        let (body, text) = match message {
            Message::Text(text) => (Bytes::from(text), true),
            Message::Binary(bytes) => (bytes, false),
            Message::Pong(_) => {
                liveness.unanswered.store(0, Ordering::Relaxed);
                continue;
            }
            Message::Ping(_) | Message::Frame(_) => continue,
            Message::Close(_) => return End::PeerClosed,
        };
        let Some(forwarder) = &ctx.route.messages else {
            ctx.metrics
                .client_messages
                .with_label_values(&["refused"])
                .inc();
            return End::Close(CloseCode::Unsupported, "client messages are not enabled");
        };
        let (body, text) = match inbound.payload(body, text, forwarder.max_bytes()) {
            Ok(payload) => payload,
            Err(end) => {
                ctx.metrics
                    .client_messages
                    .with_label_values(&["error"])
                    .inc();
                tracing::debug!(stream = %ctx.key, ?end, "Compressed WebSocket client message refused");
                return end;
            }
        };
        let content_type = HeaderValue::from_static(if text {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        });
        // Pongs are not read while a message is forwarded: the peer gets a fresh allowance afterwards.
        liveness.forwarding.store(true, Ordering::Relaxed);
        // Boxed: an idle session does not carry the room of an HTTP request to the application.
        let result = Box::pin(forwarder.forward(
            &ctx.key,
            "ws",
            forwarded.clone(),
            Some(content_type),
            body,
        ))
        .await;
        liveness.unanswered.store(0, Ordering::Relaxed);
        liveness.forwarding.store(false, Ordering::Relaxed);
        let outcome = match result {
            Ok(status) if status.is_success() => "ok",
            Ok(status) => {
                tracing::debug!(stream = %ctx.key, %status, "Application refused a WebSocket client message");
                "error"
            }
            Err(error) => {
                crate::log_limited!(
                    ctx.metrics.logs,
                    crate::logs::LogKind::ClientMessage,
                    ctx.key,
                    warn!(%error, stream = %ctx.key, "Client message not delivered")
                );
                "error"
            }
        };
        ctx.metrics
            .client_messages
            .with_label_values(&[outcome])
            .inc();
    }
}

/// Client messages as they arrive: compressed ones (permessage-deflate) are inflated.
struct Inbound {
    /// With the inflater, when permessage-deflate was negotiated.
    deflate: Option<(Arrivals, Inflater)>,
}

impl Inbound {
    fn new(deflate: Option<Deflate>, arrivals: Option<Arrivals>) -> Inbound {
        Inbound {
            deflate: deflate
                .zip(arrivals)
                .map(|(d, a)| (a, Inflater::new(d.client_no_context_takeover))),
        }
    }

    /// The message's payload and whether it is text, inflated within `max` bytes when it came compressed.
    fn payload(&mut self, body: Bytes, text: bool, max: usize) -> Result<(Bytes, bool), End> {
        let Some((arrivals, inflater)) = &mut self.deflate else {
            return Ok((body, text));
        };
        let arrived = arrivals.lock().ok().and_then(|mut q| q.pop_front());
        let Some(Arrived {
            compressed: true,
            text,
        }) = arrived
        else {
            return Ok((body, text));
        };
        let body = inflater.inflate(&body, max).map_err(|error| match error {
            InflateError::TooBig => End::Close(CloseCode::Size, "message too big"),
            InflateError::Invalid => End::Close(CloseCode::Invalid, "invalid compressed data"),
        })?;
        if text && std::str::from_utf8(&body).is_err() {
            return Err(End::Close(CloseCode::Invalid, "invalid UTF-8"));
        }
        Ok((body, text))
    }
}

/// The end for a failed read: the peer's fault gets a close code, a hang-up just ends.
fn read_error(ctx: &StreamContext, error: &WsError) -> End {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            ctx.metrics
                .client_messages
                .with_label_values(&["error"])
                .inc();
            tracing::debug!(stream = %ctx.key, size, max_size, "WebSocket client message too big");
            End::Close(CloseCode::Size, "message too big")
        }
        WsError::Capacity(_) => End::Close(CloseCode::Size, "message too big"),
        WsError::Utf8(_) => End::Close(CloseCode::Invalid, "invalid UTF-8"),
        WsError::Protocol(error) => {
            tracing::debug!(%error, stream = %ctx.key, "WebSocket protocol error");
            End::Close(CloseCode::Protocol, "protocol error")
        }
        error => hung_up(error),
    }
}

fn hung_up(error: &WsError) -> End {
    tracing::debug!(%error, "WebSocket client hung up");
    End::Drop
}

/// Ends the connection as `end` says, each step within [`CLOSE_TIMEOUT`]. Returns the transport when it is to
/// get a lingering close (the peer did not complete the closing handshake, so it may still be sending), having
/// shut down any other.
async fn close<IO>(mut ws: WebSocketStream<IO>, end: End) -> Option<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (code, reason, wait) = match end {
        End::Drop => return None,
        End::PeerClosed => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.flush()).await;
            shutdown(ws.into_inner()).await;
            return None;
        }
        End::Close(code, reason) => (code, reason, true),
        End::Abandon(code, reason) => (code, reason, false),
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // A stream that already failed (a message too big, a protocol error) cannot read the answer.
    let readable = !ws.is_terminated();
    let answered = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if ws.send(Message::Close(Some(frame))).await.is_err() || !wait || !readable {
            return false;
        }
        // RFC 6455 §7.1.1: the server closes the TCP connection once the peer answered the close frame.
        super::close_answered(&mut ws).await
    })
    .await
    .unwrap_or(false);
    let io = ws.into_inner();
    if wait && !answered {
        return Some(io);
    }
    shutdown(io).await;
    None
}

/// Shuts the transport down (TCP FIN, or END_STREAM on HTTP/2) within [`CLOSE_TIMEOUT`].
async fn shutdown<IO: AsyncWrite + Unpin>(mut io: IO) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.shutdown()).await;
}

/// One text frame carrying the event's shared bytes (no copy; already valid UTF-8, so not checked again): its
/// compressed form (RSV1 set, RFC 7692 §6) when deflate was negotiated and the event is worth compressing.
fn event_message(
    event: &Event,
    negotiated: Negotiated,
    sent: &mut crate::metrics::WsSent,
) -> Message {
    let (deflated, plain) = match negotiated.format {
        WsFormat::Envelope => (
            negotiated.deflate.and_then(|_| event.deflated_envelope()),
            event.envelope(),
        ),
        WsFormat::Data => (
            negotiated.deflate.and_then(|_| event.deflated_data()),
            event.data_frame(),
        ),
    };
    match deflated {
        Some(compressed) if negotiated.deflate.is_some_and(|d| d.fits(plain.len())) => {
            sent.deflated += compressed.len() as u64;
            sent.original += plain.len() as u64;
            let mut frame = Frame::message(compressed.clone(), OpCode::Data(Data::Text), true);
            frame.header_mut().rsv1 = true;
            Message::Frame(frame)
        }
        _ => {
            sent.plain += plain.len() as u64;
            text(plain)
        }
    }
}

fn text(payload: Bytes) -> Message {
    Message::Frame(Frame::message(payload, OpCode::Data(Data::Text), true))
}

/// The gap notice: `{"event": <gap_event>, "data": "{\"last_event_id\":\"…\"}"}` — no id, so the client's last
/// event id is unchanged by it. Sent as an envelope in both formats so the client can tell it apart.
pub fn gap_envelope(gap_event: &str, last_event_id: &str) -> Bytes {
    let data = serde_json::json!({ "last_event_id": last_event_id }).to_string();
    Bytes::from(serde_json::json!({ "event": gap_event, "data": data }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_envelope_names_the_id() {
        let got: serde_json::Value =
            serde_json::from_slice(&gap_envelope("pushbridge-gap", "4\"2")).unwrap();
        assert_eq!(
            got,
            serde_json::json!({ "event": "pushbridge-gap", "data": r#"{"last_event_id":"4\"2"}"# })
        );
        assert!(got.get("id").is_none());
    }
}
