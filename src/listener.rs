//! The accept loop of one client listener: a connection permit (max connections) before each accept, back-off on
//! accept errors, the TLS handshake under a timeout, then one task per connection serving HTTP/1.1 and HTTP/2
//! (h2c prior knowledge on plaintext; RFC 8441 extended CONNECT enabled) until it ends, is kicked, or drains.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::route::{ConnGuard, ConnInfo};
use crate::server::{self, Router};
use crate::tls::ServerTls;

/// Shared by every connection of every listener.
#[derive(Clone)]
pub struct Shared {
    pub router: Arc<ArcSwap<Router>>,
    pub permits: Arc<Semaphore>,
    pub handshake_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub drain: CancellationToken,
    /// Every connection task, so a drain can wait for them.
    pub connections: TaskTracker,
}

/// Accepts until the drain starts.
pub async fn serve(listener: TcpListener, tls: Option<Arc<ServerTls>>, shared: Shared) {
    let mut errors = 0u32;
    loop {
        let permit = tokio::select! {
            () = shared.drain.cancelled() => break,
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = shared.drain.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: wait a little instead of spinning or exiting.
                    errors = errors.saturating_add(1);
                    let pause = Duration::from_millis(10u64.saturating_mul(1 << errors.min(7)));
                    tracing::warn!(%error, ?pause, "Accept failed");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        errors = 0;
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
                connection(tcp, peer, tls, shared, guard).await;
            },
            span,
        ));
    }
}

async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<Arc<ServerTls>>,
    shared: Shared,
    guard: ConnGuard,
) {
    match tls {
        None => {
            let info = ConnInfo {
                peer,
                scheme: "http",
                kick: CancellationToken::new(),
                guard,
            };
            serve_http(tcp, info, shared).await;
        }
        Some(tls) => {
            let handshake =
                tokio::time::timeout(shared.handshake_timeout, tls.acceptor().accept(tcp)).await;
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
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let info = ConnInfo {
                peer,
                scheme: "https",
                kick: CancellationToken::new(),
                guard,
            };
            serve_http(stream, info, shared).await;
        }
    }
}

async fn serve_http<IO>(io: IO, info: ConnInfo, shared: Shared)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kick = info.kick.clone();
    let router = shared.router.clone();
    let service = service_fn(move |req| {
        let router = router.load_full();
        let info = info.clone();
        async move { Ok::<_, Infallible>(server::handle(router, req, info).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client must send its request head within the handshake timeout (slow-loris), on every request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = kick.cancelled() => return tracing::debug!("Connection dropped (slow consumer)"),
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
        tracing::debug!(error = %crate::error::chain(&*error), "Connection ended with an error");
    }
}
