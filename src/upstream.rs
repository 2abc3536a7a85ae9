//! Upstream connectors: the supervisor that keeps one stream's upstream connected (jittered exponential backoff that
//! only resets after a stable session, `Last-Event-ID` on every reconnect, the upstream's `retry:` honoured no lower
//! than `reconnect.initial`, rate-limited reconnect logs) and one decoder per upstream kind: `sse`, `ws`, `ndjson`,
//! `poll` (the JSON kinds share `map`) and `redis` (with `tee`, the writer into a Redis stream).

pub mod backoff;
pub mod client;
mod map;
mod ndjson;
mod poll;
pub mod redis;
mod sse;
mod tee;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Empty;
use tokio_util::sync::CancellationToken;

use crate::config::{UpstreamConfig, UpstreamKind};
use crate::hub::{Stream, UpstreamState};
use crate::logs::LogKind;
use crate::metrics::Metrics;
pub use backoff::Backoff;
pub use client::{HttpClient, PoolLimits, http_client, http_client_with};
pub use tee::Tee;
pub use ws::relay::{Answer as RelayAnswer, Relay, Waiting as RelayWaiting};

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
    /// The route's upstream options (`map`, `resume`, `poll`, `subprotocol`, `binary`, `ca_file`).
    pub options: Arc<UpstreamConfig>,
    /// `ws`: the ping interval, and the time allowed for the pong.
    pub heartbeat: Duration,
    /// `redis`: the stream read (also the stream's history for deep resume).
    pub redis: Option<Arc<redis::RedisLog>>,
    /// `ws` with `ws.subprotocols_upstream: pass`: where the first handshake's answer goes.
    pub relay: Option<Arc<Relay>>,
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

/// Keeps `stream` fed from its upstream until `stop` is cancelled.
pub async fn supervise(
    spec: UpstreamSpec,
    client: HttpClient<Empty<Bytes>>,
    stream: Arc<Stream>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let mut state = sse::State::new(spec.max_event_bytes);
    let mut feed = map::Feed::new();
    let mut agreed = ws::Agreed::default();
    let mut attempt = 0u32;
    loop {
        let session = async {
            match spec.kind {
                UpstreamKind::Sse => {
                    sse::session(&spec, &client, &stream, &mut state, &metrics).await
                }
                UpstreamKind::Ws => {
                    ws::session(&spec, &stream, &mut feed, &mut agreed, &metrics).await
                }
                UpstreamKind::Ndjson => {
                    ndjson::session(&spec, &client, &stream, &mut feed, &metrics).await
                }
                UpstreamKind::Poll => {
                    poll::session(&spec, &client, &stream, &mut feed, &metrics).await
                }
                UpstreamKind::Redis => match &spec.redis {
                    Some(log) => redis::session(&spec, log, &stream, &mut feed, &metrics).await,
                    None => Err(crate::error::UpstreamError::Request(
                        "no Redis stream for this upstream".into(),
                    )),
                },
                // Fed by the publish listener alone (the route's start never gets here): nothing to read.
                UpstreamKind::Publish => {
                    stream.set_upstream(UpstreamState::Up);
                    std::future::pending().await
                }
            }
        };
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            () = stop.cancelled() => break,
            result = session => result,
        };
        // Connected (the session set Up) and lasted: the upstream is healthy again.
        let stable = stream.upstream() == UpstreamState::Up && started.elapsed() >= STABLE_SESSION;
        let failure = result.as_ref().err().map(ToString::to_string);
        match result {
            Ok(SessionEnd::Closed { delivered }) => {
                stream.set_upstream(UpstreamState::Connecting);
                crate::log_limited!(
                    metrics.logs,
                    LogKind::UpstreamSession,
                    stream.key(),
                    info!(stream = %stream.key(), delivered, "Upstream closed the stream; reconnecting")
                );
            }
            Err(error) => {
                stream.set_upstream(UpstreamState::Down);
                if let crate::error::UpstreamError::Status(status) = &error {
                    stream.upstream_refused(*status);
                }
                crate::log_limited!(
                    metrics.logs,
                    LogKind::UpstreamFailed,
                    stream.key(),
                    warn!(%error, stream = %stream.key(), url = %crate::error::redact(&spec.url), "Upstream failed; backing off")
                );
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
        if let Some(error) = failure {
            stream.set_failure(error, delay);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Counts one connection attempt in `pushbridge_upstream_connects_total{route,result}`.
pub(crate) fn count_attempt<T, E>(metrics: &Metrics, route: &str, attempt: &Result<T, E>) {
    let result = if attempt.is_ok() { "ok" } else { "error" };
    metrics
        .upstream
        .connects
        .with_label_values(&[route, result])
        .inc();
}

/// A session is connected: the stream is up, its replay window opens at `resumed_from` (the position sent
/// upstream, if any), and a rate-limited line is logged. The gauge counts the connection while it lives.
pub(crate) fn connected<'a>(
    spec: &'a UpstreamSpec,
    stream: &Stream,
    metrics: &'a Metrics,
    resumed_from: Option<&str>,
) -> UpGauge<'a> {
    let up = UpGauge::new(metrics, &spec.route);
    stream.set_upstream(UpstreamState::Up);
    stream.upstream_connected(resumed_from);
    crate::log_limited!(
        metrics.logs,
        LogKind::UpstreamSession,
        stream.key(),
        info!(stream = %stream.key(), kind = %spec.kind, url = %crate::error::redact(&spec.url), "Upstream connected")
    );
    up
}

/// Counts one connected upstream in `pushbridge_upstream_up{route}` for as long as it lives.
pub(crate) struct UpGauge<'a> {
    metrics: &'a Metrics,
    route: &'a str,
}

impl<'a> UpGauge<'a> {
    pub(crate) fn new(metrics: &'a Metrics, route: &'a str) -> UpGauge<'a> {
        metrics.upstream.up.with_label_values(&[route]).inc();
        UpGauge { metrics, route }
    }
}

impl Drop for UpGauge<'_> {
    fn drop(&mut self) {
        self.metrics
            .upstream
            .up
            .with_label_values(&[self.route])
            .dec();
    }
}
