//! Upstream connectors: the supervisor that keeps one stream's upstream connected (jittered exponential backoff,
//! `Last-Event-ID` on every reconnect, the upstream's `retry:` honoured) and one decoder per upstream kind.

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
    loop {
        let session = match spec.kind {
            UpstreamKind::Sse => sse::session(&spec, &client, &stream, &mut state, &metrics),
            other => {
                tracing::error!(stream = %stream.key(), kind = ?other, "Upstream kind not supported yet");
                return;
            }
        };
        let result = tokio::select! {
            () = stop.cancelled() => break,
            result = session => result,
        };
        match result {
            Ok(SessionEnd::Closed { delivered }) => {
                stream.set_upstream(UpstreamState::Connecting);
                tracing::info!(stream = %stream.key(), "Upstream closed the stream; reconnecting");
                if delivered {
                    attempt = 0;
                }
            }
            Err(error) => {
                stream.set_upstream(UpstreamState::Down);
                tracing::warn!(%error, stream = %stream.key(), url = %crate::error::redact(&spec.url), "Upstream failed; backing off");
            }
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
