//! The accept loop of one client listener: a connection permit (max connections) before each accept, back-off on
//! accept errors, then one task per connection serving HTTP/1.1 and HTTP/2 (h2c prior knowledge on plaintext;
//! RFC 8441 extended CONNECT enabled) until it ends, is kicked, idles out, or drains. Every connection must send
//! its first request within `handshake_timeout` of its accept (TLS handshake included); one with nothing in
//! flight for `idle_connection_timeout` is closed (HTTP/1.1 keep-alive sooner: hyper's header read timeout,
//! `handshake_timeout`, also runs while it waits for the next head); HTTP/2 PINGs find dead peers.

mod direct;
mod prefixed;
pub mod watch;

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
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
use direct::Handoff;
use prefixed::Prefixed;
use watch::{Acceptor, Activity, Close};

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
        let accepted_at = Instant::now();
        shared.metrics.tcp_accepted.inc();
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        let span = tracing::debug_span!("conn", %peer);
        let connections = shared.connections.clone();
        connections.spawn(tracing::Instrument::instrument(
            async move {
                let guard = ConnGuard {
                    permit: Arc::new(permit),
                    tasks: shared.connections.clone(),
                };
                connection(tcp, peer, accepted_at, tls, shared, guard).await;
            },
            span,
        ));
    }
}

async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    accepted_at: Instant,
    tls: Option<Arc<ServerTls>>,
    shared: Shared,
    guard: ConnGuard,
) {
    let first_by = accepted_at + shared.limits.handshake_timeout;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let info = ConnInfo {
        peer,
        scheme,
        kick: CancellationToken::new(),
        guard,
    };
    match tls {
        None => serve_http(tcp, info, first_by, shared, false).await,
        // Boxed: a plaintext connection's task does not carry the TLS state's size.
        Some(tls) => Box::pin(serve_tls(tcp, tls, info, first_by, shared)).await,
    }
}

async fn serve_tls(
    tcp: TcpStream,
    tls: Arc<ServerTls>,
    info: ConnInfo,
    first_by: Instant,
    shared: Shared,
) {
    let handshake = tokio::time::timeout_at(first_by, tls.acceptor().accept(tcp)).await;
    let stream = match handshake {
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
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    serve_http(stream, info, first_by, shared, h2).await;
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
    }
}

/// Serves HTTP on a connection: the direct HTTP/1.1 path first (unless ALPN chose `h2`), hyper for what it
/// hands over.
async fn serve_http<IO>(io: IO, info: ConnInfo, first_by: Instant, shared: Shared, h2: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, first_by) = if h2 {
        (Prefixed::new(bytes::BytesMut::new(), io), first_by)
    } else {
        match direct::serve(io, &info, first_by, &shared).await {
            Handoff::Done => return,
            Handoff::Hyper(io, next_by) => (io, next_by),
        }
    };
    // Boxed: connections the direct path serves do not carry hyper's connection state.
    Box::pin(serve_hyper(io, info, first_by, shared)).await;
}

/// Serves a connection with hyper (HTTP/1.1 and HTTP/2) until it ends, is kicked, idles out, or drains.
async fn serve_hyper<IO>(io: IO, info: ConnInfo, first_by: Instant, shared: Shared)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kick = info.kick.clone();
    let (activity, requests) = Activity::new(info.guard.permit.clone());
    let router = shared.router.clone();
    let service = service_fn(move |req| {
        requests.arrived();
        let router = router.load_full();
        let info = info.clone();
        async move {
            let permit = info.guard.permit.clone();
            let response = server::handle(router, req, info).await;
            Ok::<_, Infallible>(response.map(|body| watch::hold(body, permit)))
        }
    });
    let limits = &shared.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client must send every later request head within the handshake timeout too (slow-loris).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.handshake_timeout)
        .enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let watch = activity.watch(first_by, limits.idle_connection_timeout);
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
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = kick.cancelled() => return,
                () = shared.drain.cancelled() => return,
            }
        }
        () = shared.drain.cancelled() => {
            // Finish the requests in flight (streams end on the drain themselves), then close.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = kick.cancelled() => return,
            }
        }
    };
    if let Err(error) = result {
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
