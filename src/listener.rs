//! The accept loop of one client listener: a connection permit (max connections) before each accept, back-off on
//! accept errors, then one task per connection serving HTTP/1.1 and HTTP/2 (h2c prior knowledge on plaintext;
//! RFC 8441 extended CONNECT enabled) until it ends, is kicked, idles out, or drains. A connection keeps the protocol
//! of its first request; over TLS, ALPN chooses it (see [`Protocols`]). Every connection must send
//! its first request within `handshake_timeout` of its accept (TLS handshake included); one with nothing in
//! flight for `idle_connection_timeout` is closed (HTTP/1.1 keep-alive sooner: hyper's header read timeout,
//! `handshake_timeout`, also runs while it waits for the next head); HTTP/2 PINGs find dead peers.

mod direct;
mod prefixed;
pub mod streams;
pub mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::Either;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::LimitsConfig;
use crate::metrics::Metrics;
use crate::route::{ConnGuard, ConnInfo};
use crate::server::{self, Router};
use crate::tls::ServerTls;
use prefixed::Prefixed;
use watch::{Acceptor, Activity, Close};

/// The largest HTTP/1.x request head hyper reads (request line and fields; hyper's read buffer): a longer one gets
/// `431`. The direct path hands heads over 8 KiB to hyper, so this is the bound of both paths.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Shared by every connection of every listener.
#[derive(Clone)]
pub struct Shared {
    pub router: Arc<ArcSwap<Router>>,
    pub permits: Arc<Semaphore>,
    pub limits: LimitsConfig,
    pub metrics: Arc<Metrics>,
    pub drain: CancellationToken,
    /// Every connection task, so a drain can wait for them.
    pub connections: TaskTracker,
}

/// Accepts until the drain starts.
pub async fn serve(listener: TcpListener, tls: Option<Arc<ServerTls>>, shared: Shared) {
    let shared = Arc::new(shared);
    let mut acceptor = Acceptor::new(
        listener,
        shared.permits.clone(),
        "client",
        shared.metrics.clone(),
    );
    loop {
        let (tcp, peer, permit) = tokio::select! {
            () = shared.drain.cancelled() => break,
            next = acceptor.next() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let first_by = Instant::now() + shared.limits.handshake_timeout;
        shared.metrics.tcp_accepted.inc();
        let _ = tcp.set_nodelay(true);
        let info = ConnInfo {
            peer,
            scheme: if tls.is_some() { "https" } else { "http" },
            kick: CancellationToken::new(),
            guard: ConnGuard {
                permit: Arc::new(permit),
                tasks: shared.connections.clone(),
            },
        };
        // One task per connection, as small as its wait for a request head: the TLS state and hyper's connection
        // state are boxed, for the connections that need them.
        let task = match &tls {
            None => Either::Left(direct::serve(
                tcp,
                info,
                first_by,
                shared.clone(),
                Protocols::Sniff,
            )),
            Some(tls) => Either::Right(boxed(serve_tls(
                tcp,
                tls.clone(),
                info,
                first_by,
                shared.clone(),
            ))),
        };
        let span = tracing::debug_span!("conn", %peer);
        shared
            .connections
            .spawn(tracing::Instrument::instrument(task, span));
    }
}

/// `future` in a box of its own, built outside the caller's state (so the caller's future reserves no room for it).
fn boxed<'a, F>(future: F) -> Pin<Box<dyn Future<Output = F::Output> + Send + 'a>>
where
    F: Future + Send + 'a,
{
    Box::pin(future)
}

/// A TLS connection: the handshake in a box of its own, freed once done; the connection is then served by a task
/// of its own, spawned from here, whose state is the serving future itself (so an idle connection keeps one copy of
/// its TLS state, no handshake room, and no room for the plaintext path's future).
#[allow(clippy::manual_async_fn)] // as `direct::serve`: an `async fn` would keep its arguments twice
fn serve_tls(
    tcp: TcpStream,
    tls: Arc<ServerTls>,
    info: ConnInfo,
    first_by: Instant,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    async move { boxed(tls_handshake(tcp, tls, info, first_by, shared)).await }
}

/// Completes the TLS handshake (counted when it fails), then spawns the task that serves the connection: hyper's
/// HTTP/2 for ALPN `h2`, the direct path otherwise (HTTP/1.x only for ALPN `http/1.1`).
async fn tls_handshake(
    tcp: TcpStream,
    tls: Arc<ServerTls>,
    info: ConnInfo,
    first_by: Instant,
    shared: Arc<Shared>,
) {
    let accept = crate::tls::accept(tcp, tls.server_config());
    let stream = match tokio::time::timeout_at(first_by, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            shared
                .metrics
                .tls_failures
                .with_label_values(&["error"])
                .inc();
            tracing::debug!(%error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared
                .metrics
                .tls_failures
                .with_label_values(&["timeout"])
                .inc();
            closed(&shared.metrics, "client", Close::HandshakeTimeout);
            return;
        }
    };
    // The new task is tracked before this one ends, so a drain still waits for the connection.
    let tasks = shared.connections.clone();
    let span = tracing::Span::current();
    // ALPN decides the protocol for the connection's life; without ALPN, as on plaintext, the first bytes do.
    match stream.alpn_protocol() {
        Some(b"h2") => {
            let io = Prefixed::new(bytes::BytesMut::new(), stream);
            let serve = serve_hyper(io, info, first_by, shared, Protocols::Http2);
            tasks.spawn(tracing::Instrument::instrument(serve, span));
        }
        alpn => {
            let protocols = match alpn {
                Some(_) => Protocols::Http1,
                None => Protocols::Sniff,
            };
            let serve = direct::serve(stream, info, first_by, shared, protocols);
            tasks.spawn(tracing::Instrument::instrument(serve, span));
        }
    }
}

/// Counts and logs a connection closed by the watch.
pub(crate) fn closed(metrics: &Metrics, listener: &'static str, reason: Close) {
    metrics
        .connections_closed
        .with_label_values(&[listener, reason.as_str()])
        .inc();
    match reason {
        Close::HandshakeTimeout => {
            tracing::debug!(
                listener,
                "Connection closed: no request within the handshake timeout"
            )
        }
        Close::Idle => tracing::debug!(listener, "Connection closed: idle"),
        Close::Evicted => tracing::debug!(listener, "Connection closed: idle, to make room"),
        Close::UnexpectedBytes => crate::log_limited!(
            metrics.logs,
            crate::logs::LogKind::Refused,
            "unexpected_bytes",
            info!(
                listener,
                "Connection closed: the client sent more than 64 KiB while its SSE stream was open"
            )
        ),
    }
}

/// The HTTP versions hyper may serve on a connection it is given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Protocols {
    /// The first bytes decide: the HTTP/2 preface (prior knowledge) or HTTP/1.1. Only for a connection that has
    /// carried no request yet, plaintext or TLS without ALPN.
    Sniff,
    /// HTTP/1.x only: ALPN chose `http/1.1`, or the connection already carried an HTTP/1.x request (a later HTTP/2
    /// preface closes it, as hyper's HTTP/1.1 does).
    Http1,
    /// HTTP/2 only: ALPN chose `h2`.
    Http2,
}

/// Serves a connection with hyper until it ends, is kicked, idles out, or drains: HTTP/2 (ALPN `h2`, or the
/// prior-knowledge preface) and whatever the direct path hands over, in the `protocols` it may speak.
async fn serve_hyper<IO>(
    io: Prefixed<IO>,
    info: ConnInfo,
    first_by: Instant,
    shared: Arc<Shared>,
    protocols: Protocols,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kick = info.kick.clone();
    let (activity, requests) = Activity::new(info.guard.permit.clone());
    let router = shared.router.clone();
    let h2_streams = streams::Streams::new(
        shared.limits.h2_max_streams_per_connection,
        "limits.h2_max_streams_per_connection",
    );
    let metrics = shared.metrics.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        requests.arrived();
        let slot = (req.version() == http::Version::HTTP_2).then(|| h2_streams.open(&metrics));
        let router = router.load_full();
        let info = info.clone();
        // Boxed: hyper keeps a slot (HTTP/1.1) or a task (an HTTP/2 stream) the size of this future for as long as
        // the response lasts; the handler's state (the request included) is freed once it has answered.
        boxed(async move {
            let permit = info.guard.permit.clone();
            let response = server::handle(router, req, info).await;
            Ok::<_, Infallible>(response.map(|body| watch::hold(body, (permit, slot))))
        })
    });
    let limits = &shared.limits;
    let watch = activity.watch(first_by, limits.idle_connection_timeout);
    let io = TokioIo::new(io);
    let timer = TokioTimer::new;
    // A client must send every later request head within the handshake timeout too (slow-loris); a head is at
    // most MAX_HEAD_BYTES (431 beyond). What one HTTP/2 connection holds is bounded in `streams`.
    match protocols {
        Protocols::Sniff => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(timer())
                .max_buf_size(MAX_HEAD_BYTES)
                .header_read_timeout(limits.handshake_timeout);
            builder
                .http2()
                .timer(timer())
                .keep_alive_interval(limits.keepalive_interval)
                .keep_alive_timeout(limits.handshake_timeout)
                .max_concurrent_streams(limits.h2_max_streams_per_connection)
                .max_send_buf_size(limits.h2_send_buffer)
                .initial_stream_window_size(streams::STREAM_WINDOW)
                .initial_connection_window_size(streams::CONNECTION_WINDOW)
                .enable_connect_protocol();
            let conn = builder.serve_connection_with_upgrades(io, service);
            drive(conn, |c| c.graceful_shutdown(), watch, kick, &shared).await
        }
        Protocols::Http1 => {
            let conn = http1::Builder::new()
                .timer(timer())
                .max_buf_size(MAX_HEAD_BYTES)
                .header_read_timeout(limits.handshake_timeout)
                .serve_connection(io, service)
                .with_upgrades();
            drive(conn, |c| c.graceful_shutdown(), watch, kick, &shared).await
        }
        Protocols::Http2 => {
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(timer())
                .keep_alive_interval(limits.keepalive_interval)
                .keep_alive_timeout(limits.handshake_timeout)
                .max_concurrent_streams(limits.h2_max_streams_per_connection)
                .max_send_buf_size(limits.h2_send_buffer)
                .initial_stream_window_size(streams::STREAM_WINDOW)
                .initial_connection_window_size(streams::CONNECTION_WINDOW)
                .enable_connect_protocol()
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), watch, kick, &shared).await
        }
    }
}

/// Runs hyper's connection `conn` until it ends, is kicked, idles out (`watch`), or drains; `graceful` starts its
/// graceful close.
async fn drive<C, E>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    watch: impl Future<Output = Close>,
    kick: CancellationToken,
    shared: &Shared,
) where
    C: Future<Output = Result<(), E>>,
    E: Into<crate::BoxError>,
{
    let mut conn = std::pin::pin!(conn);
    let mut watch = std::pin::pin!(watch);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = kick.cancelled() => return tracing::debug!("Connection dropped (slow consumer)"),
        reason = watch.as_mut() => {
            closed(&shared.metrics, "client", reason);
            if reason == Close::HandshakeTimeout {
                return;
            }
            // Idle: nothing in flight, so a graceful close (HTTP/2 GOAWAY) ends at once; new streams that raced
            // it may finish.
            graceful(conn.as_mut());
            tokio::select! {
                result = conn.as_mut() => result,
                () = kick.cancelled() => return,
                () = shared.drain.cancelled() => return,
            }
        }
        () = shared.drain.cancelled() => {
            // Finish the requests in flight (streams end on the drain themselves), then close.
            graceful(conn.as_mut());
            tokio::select! {
                result = conn.as_mut() => result,
                () = kick.cancelled() => return,
            }
        }
    };
    if let Err(error) = result {
        let error: crate::BoxError = error.into();
        // hyper's HTTP/1.1 header read timeout: a later request head (or the next one on an idle keep-alive
        // connection) did not arrive within the handshake timeout.
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return closed(&shared.metrics, "client", Close::HandshakeTimeout);
        }
        tracing::debug!(error = %crate::error::chain(&*error), "Connection ended with an error");
    }
}
