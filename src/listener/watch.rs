//! What every listener (client and admin) shares: the accept step (a permit first, the limit counted and logged
//! at most every few seconds, back-off on accept errors) and the connection watch that closes a connection which
//! sends no first request within its deadline or stays idle with nothing in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use crate::metrics::Close;
use crate::metrics::Metrics;

/// How often a limit-reached or accept-error line is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// The longest pause after failed accepts.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);

/// The accept side of one listener.
pub struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    /// `client` or `admin`: the metric label and log field.
    label: &'static str,
    metrics: Arc<Metrics>,
    errors: u32,
    limit_log: RateLimited,
    error_log: RateLimited,
}

impl Acceptor {
    pub fn new(
        listener: TcpListener,
        permits: Arc<Semaphore>,
        label: &'static str,
        metrics: Arc<Metrics>,
    ) -> Acceptor {
        Acceptor {
            listener,
            permits,
            label,
            metrics,
            errors: 0,
            limit_log: RateLimited::default(),
            error_log: RateLimited::default(),
        }
    }

    /// The next connection with its permit. While every permit is taken, new connections wait in the kernel's
    /// accept queue; each time that starts it is counted and (rate-limited) logged. `None`: the permits closed.
    pub async fn next(
        &mut self,
    ) -> Option<(TcpStream, std::net::SocketAddr, OwnedSemaphorePermit)> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.limit_reached();
                self.permits.clone().acquire_owned().await.ok()?
            }
        };
        let (tcp, peer) = self.accept().await;
        Some((tcp, peer, permit))
    }

    /// Counts (and, rate-limited, logs) that new connections wait for a permit.
    pub fn limit_reached(&mut self) {
        self.metrics
            .connection_limit_reached
            .with_label_values(&[self.label])
            .inc();
        if let Some(suppressed) = self.limit_log.allow() {
            tracing::warn!(
                listener = self.label,
                suppressed,
                "Connection limit reached; new connections wait until one closes"
            );
        }
    }

    /// The next connection, whatever the permits. Accept errors (EMFILE and friends) are counted, logged at most
    /// once per [`LOG_EVERY`] and retried after a pause of 10 ms doubling to [`MAX_PAUSE`]: no spinning, and
    /// never seconds without accepting once descriptors are free again.
    pub async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.errors = 0;
                    return accepted;
                }
                Err(error) => {
                    self.errors = self.errors.saturating_add(1);
                    let pause =
                        Duration::from_millis(10u64 << (self.errors - 1).min(4)).min(MAX_PAUSE);
                    self.metrics
                        .accept_errors
                        .with_label_values(&[self.label])
                        .inc();
                    if let Some(suppressed) = self.error_log.allow() {
                        tracing::warn!(%error, ?pause, listener = self.label, suppressed, "Accept failed");
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Lets one line through per [`LOG_EVERY`], counting the ones held back.
#[derive(Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// `Some(lines suppressed since the last one)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Activity of one connection. Whatever is in flight holds a clone of the connection's permit `Arc` (the
/// request handler's `ConnInfo`, the response body until it ends, an upgraded session): the connection is idle
/// when only the watch's and the service's own handles remain.
pub struct Activity {
    permit: Arc<OwnedSemaphorePermit>,
    requests: Arc<AtomicU64>,
}

/// Handles on the permit held for the whole connection: the watch's and the service's (more: something is in
/// flight).
pub const OWN_HANDLES: usize = 2;

/// Counts the requests of one connection (held by its service).
#[derive(Clone)]
pub struct Requests(Arc<AtomicU64>);

impl Requests {
    pub fn arrived(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// The watch, and the request counter for the service (which must hold one clone of `permit`).
    pub fn new(permit: Arc<OwnedSemaphorePermit>) -> (Activity, Requests) {
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Requests(requests.clone());
        (Activity { permit, requests }, counter)
    }

    /// Resolves when the connection must close: no request by `first_by`, or `idle` with nothing in flight.
    pub async fn watch(self, first_by: Instant, idle: Duration) -> Close {
        // Coarse on purpose: one timer per connection; a close comes up to one tick after `idle`.
        let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(15));
        // Until the first request: exactly at `first_by`, or earlier to start timing idleness.
        while self.requests.load(Ordering::Relaxed) == 0 {
            let now = Instant::now();
            if now >= first_by {
                return Close::HandshakeTimeout;
            }
            tokio::time::sleep_until(first_by.min(now + tick)).await;
        }
        let mut seen = self.requests.load(Ordering::Relaxed);
        let mut last_active = Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            let requests = self.requests.load(Ordering::Relaxed);
            if requests != seen || Arc::strong_count(&self.permit) > OWN_HANDLES {
                seen = requests;
                last_active = Instant::now();
            } else if last_active.elapsed() >= idle {
                return Close::Idle;
            }
        }
    }
}

/// `body` holding `handle` until it is dropped (so the connection counts as busy meanwhile); its size hint, and
/// so `Content-Length`, is kept.
pub fn hold<T: Send + Unpin + 'static>(body: crate::Body, handle: T) -> crate::Body {
    use http_body_util::BodyExt;
    Held {
        body,
        _handle: handle,
    }
    .boxed_unsync()
}

struct Held<T> {
    body: crate::Body,
    _handle: T,
}

impl<T: Unpin> http_body::Body for Held<T> {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
