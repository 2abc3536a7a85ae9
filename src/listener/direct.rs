//! The direct HTTP/1.1 path: a connection's request heads are read and parsed here, and a reader of a stream route
//! (a `GET` without a body: SSE, long-poll or a WebSocket handshake) is served on the socket itself — no hyper
//! connection state, a few hundred bytes of head buffer only while a head is read, and every SSE wake-up written
//! in one `write`. Anything else (pass-through, client messages, the client script, HTTP/2, a head the path does
//! not parse) hands the connection, with the bytes already read, to hyper for the rest of its life — HTTP/1.x only
//! once the connection has carried a request. What a request gets is decided by `server::route`, as on hyper's
//! path, and the response heads say what hyper's would (version, `connection` field, keep-alive rules).
//!
//! Deadlines match hyper's: the first head by the handshake deadline, each later one within
//! `min(handshake_timeout, idle_connection_timeout)` of the previous response.

mod head;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::Response;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::prefixed::Prefixed;
use super::watch::Close;
use super::{Protocols, Shared, closed};
use crate::Body;
use crate::route::ConnInfo;
use crate::server::{self, Routing};
use crate::transports::Served;
use crate::transports::sse::Feed;
use crate::transports::ws::Upgrade;
use head::{MAX_HEAD, Parsed};
use write::{Conn, Framing};

/// Bytes a client may send while its SSE stream is open (they are read and discarded); more closes it.
const MAX_IGNORED: usize = 64 * 1024;
/// How long closing the connection (flush, TLS close_notify, FIN) may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// What follows a response.
#[derive(PartialEq, Eq)]
enum Then {
    KeepAlive,
    Close,
    /// The peer is gone or kicked: drop the connection without a goodbye.
    Drop,
    /// The client sent more than [`MAX_IGNORED`] bytes during its SSE stream: dropped and counted.
    Flooded,
}

/// Serves the connection's requests until it closes; hands it to hyper when a request needs it, in `protocols`
/// (`Sniff` or `Http1`) until the connection has carried a request, HTTP/1.x only after. Not an `async fn`: the
/// block's captures are the connection's only copy of its arguments (an `async fn` keeps them twice).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve<IO>(
    mut io: IO,
    info: ConnInfo,
    first_by: Instant,
    shared: Arc<Shared>,
    mut protocols: Protocols,
) -> impl Future<Output = ()> + Send
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Made here, so the block keeps one copy (and none of `first_by`).
    let mut deadline = (first_by, Close::HandshakeTimeout);
    async move {
        let mut buf = BytesMut::new();
        loop {
            // Each step in a box of its own size: the connection's state stays as small as the step it is in (a
            // held poll, an SSE stream, a WebSocket session), not the largest of them; the answer is turned into
            // its step outside this state too.
            // Matched as a temporary: a local would keep its room (a `Next`) through the steps that follow.
            let (served, conn) =
                match super::boxed(next_request(&mut io, &mut buf, deadline.0, &info, &shared))
                    .await
                {
                    Next::Serve(served, conn) => (served, conn),
                    Next::Hyper => break,
                    Next::Closed { timed_out } => {
                        if timed_out {
                            closed(&shared.metrics, "client", deadline.1);
                        }
                        return;
                    }
                };
            // The connection speaks HTTP/1.x now: an HTTP/2 preface later is not HTTP/2 (as on hyper's path).
            protocols = Protocols::Http1;
            let step = step(&mut io, &mut buf, served, conn, &info, &shared);
            match step.await {
                Then::KeepAlive => {}
                Then::Close => {
                    // Boxed: room for it would be kept through every step.
                    let _ =
                        super::boxed(tokio::time::timeout(SHUTDOWN_TIMEOUT, io.shutdown())).await;
                    return;
                }
                Then::Drop => return,
                Then::Flooded => {
                    closed(&shared.metrics, "client", Close::UnexpectedBytes);
                    return;
                }
            }
            let limits = &shared.limits;
            deadline = if limits.handshake_timeout <= limits.idle_connection_timeout {
                (
                    Instant::now() + limits.handshake_timeout,
                    Close::HandshakeTimeout,
                )
            } else {
                (Instant::now() + limits.idle_connection_timeout, Close::Idle)
            };
        }
        // hyper serves the rest of the connection, the bytes read so far first.
        let io = Prefixed::new(buf, io);
        super::boxed(super::serve_hyper(io, info, deadline.0, shared, protocols)).await
    }
}

/// The step that serves an answer, in a box of its own.
fn step<'a, IO>(
    io: &'a mut IO,
    buf: &'a mut BytesMut,
    served: Served,
    conn: Conn,
    info: &'a ConnInfo,
    shared: &'a Shared,
) -> Pin<Box<dyn Future<Output = Then> + Send + 'a>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    match served {
        Served::Now(response) => super::boxed(respond(io, response, conn, &shared.drain)),
        Served::Held(held, headers) => {
            super::boxed(answer_held(io, buf, held, headers, conn, shared))
        }
        Served::Sse(response) => super::boxed(sse(io, response, conn, &info.kick, &shared.drain)),
        // The handshake's box is freed before the session runs in its own.
        Served::Ws(response) => super::boxed(async move {
            if let Some(session) = super::boxed(websocket(io, buf, response)).await {
                session.await;
            }
            Then::Drop
        }),
    }
}

/// What the next request on a connection needs.
enum Next {
    /// The direct path serves it: the answer, and the connection it goes out on.
    Serve(Served, Conn),
    /// hyper serves it (and the rest of the connection).
    Hyper,
    /// The connection ended before a request: the peer closed, the server drains, or (`timed_out`) the deadline.
    Closed { timed_out: bool },
}

/// Reads the next request head and, when it is a stream reader, its answer (through `server::reader`).
async fn next_request<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    deadline: Instant,
    info: &ConnInfo,
    shared: &Shared,
) -> Next
where
    IO: AsyncRead + Unpin + Send,
{
    let (req, len) = match next_head(io, buf, deadline, shared).await {
        Ok(Some(head)) => head,
        Ok(None) => return Next::Hyper,
        Err(timed_out) => return Next::Closed { timed_out },
    };
    if !head::bodiless_get(&req) {
        return Next::Hyper;
    }
    // The same decision as on hyper's path; the direct path serves stream readers (and their refusals) only.
    let router = shared.router.load_full();
    let found = match server::route(&router, req.method(), req.uri().path()) {
        Routing::Stream(found) => Ok(found),
        Routing::Refused(refusal) => Err(refusal),
        Routing::ClientScript | Routing::PassThrough => return Next::Hyper,
    };
    buf.advance(len);
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
    let conn = Conn {
        http10: req.version() == http::Version::HTTP_10,
        keep_alive: head::keep_alive(&req),
    };
    let served = match found {
        Err(refusal) => Served::Now(refusal),
        Ok((route, params)) => {
            super::boxed(server::reader(&router, route, params, req, info.clone())).await
        }
    };
    Next::Serve(served, conn)
}

/// `*boxed`, freeing the box at once (a box moved out of in an `async fn` is freed only at the end of its scope).
#[allow(clippy::boxed_local)] // taking the box is the point: it is freed on return
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Waits for a held poll's answer (or the client's close), then writes it with `headers` added.
async fn answer_held<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    held: Pin<Box<dyn Future<Output = Response<Body>> + Send>>,
    headers: http::HeaderMap,
    conn: Conn,
    shared: &Shared,
) -> Then
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut response = tokio::select! {
        response = held => response,
        () = peer_gone(io, buf, shared) => return Then::Drop,
    };
    response.headers_mut().extend(headers);
    // Boxed: a held poll does not carry the room of writing its answer while it waits.
    super::boxed(respond(io, response, conn, &shared.drain)).await
}

/// Answers a WebSocket handshake: the session to run on the connection (with any bytes already read), or `None`
/// when the answer could not be written.
async fn websocket<'a, IO>(
    io: &'a mut IO,
    buf: &mut BytesMut,
    response: Box<Response<Upgrade>>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut out = Vec::new();
    let upgrade = {
        let (parts, upgrade) = unbox(response).into_parts();
        // A handshake is accepted over HTTP/1.1 only (`transports::ws::handshake`).
        let conn = Conn {
            http10: false,
            keep_alive: true,
        };
        write::head(&mut out, &parts, Framing::Upgrade, conn);
        upgrade
    };
    write_out(io, &out).await.ok()?;
    Some(super::boxed(
        upgrade.run(Prefixed::new(std::mem::take(buf), io)),
    ))
}

/// Reads until `buf` holds a whole request head the direct path takes: `Ok(Some((request, head length)))`, or
/// `Ok(None)` for hyper. `Err(true)`: the deadline passed; `Err(false)`: the peer closed or the server drains
/// while no request was under way.
async fn next_head<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    deadline: Instant,
    shared: &Shared,
) -> Result<Option<(http::Request<()>, usize)>, bool>
where
    IO: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            match head::parse(buf) {
                Parsed::Request(req, len) => return Ok(Some((*req, len))),
                Parsed::Other => return Ok(None),
                Parsed::TooLarge => {
                    bound_reached(shared, "head");
                    return Ok(None);
                }
                Parsed::Partial => {}
            }
        }
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(1024.min(MAX_HEAD + 1 - buf.len()).max(256));
        }
        let read = tokio::select! {
            biased;
            () = shared.drain.cancelled(), if buf.is_empty() => return Err(false),
            read = tokio::time::timeout_at(deadline, io.read_buf(buf)) => read,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(false),
            Ok(Ok(_)) => {}
            Err(_) => return Err(true),
        }
    }
}

/// Resolves when the peer closed its side (or the connection failed). Bytes it sends meanwhile (a pipelined next
/// request) are kept in `buf` up to [`MAX_HEAD`]; after that it stops reading (counted).
async fn peer_gone<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut BytesMut, shared: &Shared) {
    loop {
        if buf.len() > MAX_HEAD {
            bound_reached(shared, "held_poll_bytes");
            return std::future::pending().await;
        }
        buf.reserve(256);
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Writes a whole response (its body collected: refusals and long-poll answers are small and bounded).
async fn respond<IO>(
    io: &mut IO,
    response: Response<Body>,
    conn: Conn,
    drain: &CancellationToken,
) -> Then
where
    IO: AsyncWrite + Unpin,
{
    let (parts, body) = response.into_parts();
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return Then::Drop;
    };
    let conn = Conn {
        keep_alive: conn.keep_alive && !drain.is_cancelled(),
        ..conn
    };
    let mut out = Vec::with_capacity(256 + body.len());
    write::head(&mut out, &parts, Framing::Length(body.len()), conn);
    out.extend_from_slice(&body);
    if write_out(io, &out).await.is_err() {
        return Then::Drop;
    }
    if conn.keep_alive {
        Then::KeepAlive
    } else {
        Then::Close
    }
}

/// Streams an SSE response: chunked (HTTP/1.1) or until the close (HTTP/1.0). Each wake-up of the feed is one
/// write; a write blocked on a client that stopped reading ends when the hub kicks it. The connection ends with
/// the stream (docs/protocol.md: bytes the client sent meanwhile were discarded).
async fn sse<IO>(
    io: &mut IO,
    response: Box<Response<Feed>>,
    conn: Conn,
    kick: &CancellationToken,
    drain: &CancellationToken,
) -> Then
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let chunked = !conn.http10;
    let mut out = Vec::with_capacity(512);
    // The head's parts are dropped here, not kept across the stream's awaits.
    let mut feed = {
        let (parts, feed) = unbox(response).into_parts();
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        };
        // As hyper: `connection: close` on HTTP/1.1 when the request asked for it; none on HTTP/1.0, whose
        // stream the close delimits.
        let conn = Conn {
            keep_alive: chunked && conn.keep_alive && !drain.is_cancelled(),
            ..conn
        };
        write::head(&mut out, &parts, framing, conn);
        feed
    };
    let mut ignored = 0usize;
    let mut scratch = [0u8; 64];
    loop {
        // The chunk's size line goes in once its length is known: the feed sizes the buffer for the events it
        // takes (with room for the framing), so a wake-up allocates once and never grows it.
        let at = out.len();
        let more = loop {
            tokio::select! {
                biased;
                more = feed.fill(&mut out) => break more,
                read = io.read(&mut scratch) => match read {
                    Ok(0) | Err(_) => return Then::Drop,
                    Ok(n) => {
                        ignored += n;
                        if ignored > MAX_IGNORED {
                            return Then::Flooded;
                        }
                    }
                },
            }
        };
        if chunked {
            write::frame_chunk(&mut out, at);
            if !more {
                out.extend_from_slice(write::LAST_CHUNK);
            }
        }
        if !out.is_empty() {
            // Most writes complete at once: the kick is only waited on (a `Notified` made) for one that blocks.
            let mut written = std::pin::pin!(write_out(io, &out));
            let written = match futures_util::FutureExt::now_or_never(written.as_mut()) {
                Some(written) => written,
                None => tokio::select! {
                    biased;
                    written = written => written,
                    () = kick.cancelled() => return Then::Drop,
                },
            };
            if written.is_err() {
                return Then::Drop;
            }
        }
        if !more {
            return Then::Close;
        }
        // Nothing is kept between writes: an idle stream holds no buffer.
        out = Vec::new();
    }
}

/// Writes `bytes` and flushes them: over TLS, what the socket did not take at once waits in the connection.
async fn write_out<IO: AsyncWrite + Unpin>(io: &mut IO, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// Counts a bound of the direct path reached (`pushbridge_direct_path_bounds_total`) and logs it, rate-limited.
fn bound_reached(shared: &Shared, bound: &'static str) {
    shared
        .metrics
        .direct_path_bounds
        .with_label_values(&[bound])
        .inc();
    crate::log_limited!(
        shared.metrics.logs,
        crate::logs::LogKind::Refused,
        bound,
        info!(
            bound,
            "Direct HTTP/1.1 path bound reached (head: served by hyper; held_poll_bytes: reading paused)"
        )
    );
}
