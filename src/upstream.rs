//! Upstream connectors: the supervisor that keeps one stream's upstream connected (jittered exponential backoff that
//! only resets after a stable session, `Last-Event-ID` on every reconnect, the upstream's `retry:` honoured no lower
//! than `reconnect.initial`, rate-limited reconnect logs) and one decoder per upstream kind.

pub mod backoff;
pub mod client;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Empty;
use tokio_util::sync::CancellationToken;

use crate::config::UpstreamKind;
use crate::hub::{Stream, UpstreamState};
use crate::metrics::Metrics;
pub use backoff::Backoff;
pub use client::{HttpClient, http_client};

/// Everything needed to connect one stream's upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The route name (metrics label).
    pub route: Arc<str>,
    pub url: http::Uri,
    pub kind: UpstreamKind,
    /// Extra request headers (forwarded client credentials in per-client mode).
    pub headers: HeaderMap,
    pub connect_timeout: Duration,
    /// Longest silence before the connection counts as dead (`upstream.idle_timeout`).
    pub idle_timeout: Duration,
    pub backoff: Backoff,
    pub max_event_bytes: usize,
}

/// How one upstream session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The upstream closed the stream after delivering events (or none).
    Closed { delivered: bool },
}

/// A session shorter than this does not reset the backoff: an upstream that answers and closes at once (one event
/// per connection, `retry: 0`) is reconnected ever more slowly, up to `reconnect.max`.
pub const STABLE_SESSION: Duration = Duration::from_secs(10);
/// At most one reconnect log line per stream in this period; the next one says how many were left out.
pub const RECONNECT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Keeps `stream` fed from its upstream until `stop` is cancelled.
pub async fn supervise(
    spec: UpstreamSpec,
    client: HttpClient<Empty<Bytes>>,
    stream: Arc<Stream>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let mut state = sse::State::new(spec.max_event_bytes);
    let mut attempt = 0u32;
    let mut log = LogLimit::default();
    loop {
        let session = match spec.kind {
            UpstreamKind::Sse => sse::session(&spec, &client, &stream, &mut state, &metrics),
            other => {
                tracing::error!(stream = %stream.key(), kind = ?other, "Upstream kind not supported yet");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            () = stop.cancelled() => break,
            result = session => result,
        };
        // Connected (the session set Up) and lasted: the upstream is healthy again.
        let stable = stream.upstream() == UpstreamState::Up && started.elapsed() >= STABLE_SESSION;
        match result {
            Ok(SessionEnd::Closed { delivered }) => {
                stream.set_upstream(UpstreamState::Connecting);
                if let Some(suppressed) = log.allow() {
                    tracing::info!(stream = %stream.key(), delivered, suppressed, "Upstream closed the stream; reconnecting");
                }
            }
            Err(error) => {
                stream.set_upstream(UpstreamState::Down);
                if let Some(suppressed) = log.allow() {
                    tracing::warn!(%error, stream = %stream.key(), url = %crate::error::redact(&spec.url), suppressed, "Upstream failed; backing off");
                }
            }
        }
        if stable {
            attempt = 0;
        }
        let backoff = state
            .retry
            .map_or(spec.backoff, |retry| spec.backoff.with_initial(retry));
        let delay = backoff.delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Rate limit of one stream's reconnect log lines.
#[derive(Default)]
struct LogLimit {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(lines left out since the last one)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < RECONNECT_LOG_PERIOD)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Counts one connected upstream in `pushbridge_upstream_up{route}` for as long as it lives.
pub(crate) struct UpGauge<'a> {
    metrics: &'a Metrics,
    route: &'a str,
}

impl<'a> UpGauge<'a> {
    pub(crate) fn new(metrics: &'a Metrics, route: &'a str) -> UpGauge<'a> {
        metrics.upstream_up.with_label_values(&[route]).inc();
        UpGauge { metrics, route }
    }
}

impl Drop for UpGauge<'_> {
    fn drop(&mut self) {
        self.metrics
            .upstream_up
            .with_label_values(&[self.route])
            .dec();
    }
}
