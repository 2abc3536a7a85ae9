//! WebSocket client transport: the opening handshake over HTTP/1.1 `Upgrade` (RFC 6455 §4.2) or HTTP/2 extended
//! CONNECT (RFC 8441 §5), then one session task per client on the upgraded connection (see `ws/session.rs`).
//!
//! The answer carries the session ([`Upgrade`]): hyper's path runs it on the upgraded connection in a task of the
//! connection, the direct HTTP/1.1 path runs it on the socket itself.
//!
//! With `ws.subprotocols_upstream: pass` the answer waits for the application's handshake ([`passed`]) and relays
//! its subprotocol choice instead of choosing from the route's names.

mod compressed;
mod handshake;
mod offer;
mod session;

use std::time::Duration;

use http::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{OpenGauge, Served, StreamContext};
use crate::Body;
use crate::config::WsCompression;
use crate::hub::Subscription;

use handshake::Refusal;
pub use session::{CLOSE_TIMEOUT, MISSED_PONGS, gap_envelope};

/// Largest client message when the route has no `client_messages` (such messages are refused anyway).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// Read buffer of a relayed (pass-through) WebSocket (tungstenite's default is 128 KiB, zero-filled).
pub const READ_BUFFER: usize = 4 * 1024;
/// Read buffer of a client session: clients send little (pongs, small messages); a larger message is read in
/// several reads. Idle sessions keep this much each.
pub const SESSION_READ_BUFFER: usize = 256;
/// Bytes gathered before a write to the socket (a batch of events is flushed whole anyway).
pub const WRITE_BUFFER: usize = 4 * 1024;
/// Cap of the write buffer. The sink flushes before taking another message, so it holds at most
/// [`WRITE_BUFFER`] plus one frame; this only refuses a pathological frame.
pub const MAX_WRITE_BUFFER: usize = 64 << 20;

/// Longest a closed WebSocket connection is kept open to read what the peer still sends ([`linger`]).
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes read and discarded while lingering.
pub const LINGER_BYTES: usize = 16 << 20;

/// Waits for the peer's answer to a close frame already sent (RFC 6455 §7.1.1): true once tungstenite ends the
/// stream (the closing handshake completed), false when it fails first. The caller bounds the time.
pub async fn close_answered<S>(ws: &mut S) -> bool
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    while let Some(item) = ws.next().await {
        if item.is_err() {
            return false;
        }
    }
    true
}

/// A lingering close, after the close frame went out: shuts the sending side (TCP FIN, or END_STREAM on HTTP/2),
/// then reads and discards what the peer still sends — say the rest of the message it was closed for — until it
/// hangs up too, for at most [`LINGER_TIME`] and [`LINGER_BYTES`]. A socket closed with unread bytes resets the
/// connection, and the reset can overtake the close frame on its way through a proxy (the browser then sees 1006
/// instead of the code sent).
pub async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        if io.shutdown().await.is_err() {
            return;
        }
        // On the heap, taken only when a close lingers: an array here would sit in every session's future.
        let mut buf = vec![0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// The session a WebSocket answer starts once the connection is handed over.
pub struct Upgrade {
    session: session::Session,
    config: WebSocketConfig,
}

impl Upgrade {
    /// Serves the session on the connection until it ends. Not an `async fn`: the future does not also hold the
    /// `Upgrade` it was made from.
    pub fn run<IO>(self, io: IO) -> impl std::future::Future<Output = ()> + Send
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        self.session.run(io, self.config)
    }
}

/// The application's subprotocol choice (`ws.subprotocols_upstream: pass`), relayed as it is.
#[derive(Debug)]
pub struct Passed(pub Option<HeaderValue>);

/// Longer than `upstream.connect_timeout` by this, a client's handshake stops waiting for its upstream's answer.
pub const PASS_WAIT_MARGIN: Duration = Duration::from_secs(1);

/// The client's subprotocol offer to pass to the application (see [`offer::passed_offer`]), or the 400 refusing it.
pub fn passed_offer(req: &Request<()>) -> Result<Option<HeaderValue>, Box<Response<Body>>> {
    offer::passed_offer(req.headers()).map_err(|()| Box::new(refuse(Refusal::Subprotocols)))
}

/// Waits (within `upstream.connect_timeout` and [`PASS_WAIT_MARGIN`]) for the answer to the first handshake of the
/// client's upstream connection; the refusal the client gets when there is no choice to relay: the application's
/// 4xx as it is, otherwise 502 (counted; the connector logs why, rate-limited).
pub async fn passed(
    ctx: &StreamContext,
    mut waiting: crate::upstream::RelayWaiting,
) -> Result<Passed, Box<Response<Body>>> {
    use crate::upstream::RelayAnswer;
    let within = ctx.route.config.upstream.connect_timeout + PASS_WAIT_MARGIN;
    let (status, text) = match waiting.answer(within).await {
        RelayAnswer::Selected(selected) => return Ok(Passed(selected)),
        // The connector counted it.
        RelayAnswer::Unoffered => (
            StatusCode::BAD_GATEWAY,
            "the application selected a subprotocol the client did not offer\n",
        ),
        refused => {
            ctx.metrics.ws.subprotocol_relay_failure("upstream");
            match refused {
                RelayAnswer::Refused(status) if status.is_client_error() => {
                    (status, "refused by the application\n")
                }
                _ => (
                    StatusCode::BAD_GATEWAY,
                    "the application's WebSocket handshake failed\n",
                ),
            }
        }
    };
    tracing::debug!(stream = %ctx.key, %status, "WebSocket handshake refused: no subprotocol answer to relay");
    Err(Box::new(crate::route::plain(status, text)))
}

/// Answers the handshake (101, or 200 on HTTP/2) with the session to run on the connection. `subscription` was
/// registered when the request was admitted, so nothing published between the answer and the upgrade is missed.
/// `passed`: the application's subprotocol choice, instead of the route's names.
pub fn serve(
    ctx: StreamContext,
    subscription: Subscription,
    req: &Request<()>,
    passed: Option<Passed>,
) -> Served {
    let protocol = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    let accepted = match handshake::check(
        req.method(),
        req.version(),
        req.headers(),
        protocol.as_deref(),
    ) {
        Ok(accepted) => accepted,
        Err(refusal) => return Served::Now(refuse(refusal)),
    };
    let forwarded = crate::auth::forwarded_headers(&ctx.route.config, req.headers());
    let max_message = ctx
        .route
        .config
        .client_messages
        .as_ref()
        .map_or(DEFAULT_MAX_MESSAGE, |m| m.max_bytes);
    let config = WebSocketConfig::default()
        .read_buffer_size(SESSION_READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let ws_config = &ctx.route.config.ws;
    let deflate = match ws_config.compression {
        WsCompression::Deflate => offer::deflate(req.headers()),
        WsCompression::Off => None,
    };
    // A passed name leaves the route's `ws.format` (the application's protocol is its own business).
    let was_passed = passed.is_some();
    let subprotocol = match passed {
        Some(Passed(name)) => name.map(|n| (n, ws_config.format)),
        None => offer::subprotocol(req.headers(), ws_config),
    };
    let negotiated = session::Negotiated {
        format: subprotocol.as_ref().map_or(ws_config.format, |(_, f)| *f),
        deflate: deflate.as_ref().map(|(d, _)| *d),
    };
    ctx.metrics.ws.handshake(
        deflate.is_some(),
        subprotocol.as_ref().and_then(|(name, _)| {
            if was_passed {
                Some(crate::metrics::WS_PASSED_SUBPROTOCOL)
            } else {
                name.to_str().ok()
            }
        }),
    );
    let gauge = OpenGauge::new(&ctx.metrics, "ws", ctx.http_version);
    let session = session::Session::new(ctx, subscription, forwarded, negotiated, gauge);
    let mut response = Response::new(Upgrade { session, config });
    let headers = response.headers_mut();
    if let Some((_, answer)) = deflate {
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, answer);
    }
    if let Some((name, _)) = subprotocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, name);
    }
    match accepted {
        handshake::Accepted::Http1 { accept_key } => {
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept_key);
        }
        // RFC 8441 §5: a 2xx answer to the extended CONNECT opens the tunnel.
        handshake::Accepted::Http2 => *response.status_mut() = StatusCode::OK,
    }
    Served::Ws(Box::new(response))
}

/// A 400 for a malformed handshake (naming the version we speak when that was the problem, RFC 6455 §4.4).
fn refuse(refusal: Refusal) -> Response<Body> {
    tracing::debug!(reason = refusal.text(), "WebSocket handshake refused");
    let mut response = crate::route::plain(StatusCode::BAD_REQUEST, refusal.text());
    if refusal == Refusal::Version {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

#[cfg(test)]
mod tests {
    /// Every WebSocket session's and relay's future holds a `linger` future from the start; it must stay small
    /// (a 4 KiB array in it once cost 4 KiB per idle connection).
    #[test]
    fn linger_future_holds_no_buffer() {
        let (mut io, _peer) = tokio::io::duplex(64);
        let future = super::linger(&mut io);
        assert!(
            std::mem::size_of_val(&future) < 512,
            "{} bytes",
            std::mem::size_of_val(&future)
        );
    }
}
