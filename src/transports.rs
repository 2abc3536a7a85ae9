//! Client transports: one file per transport, each the same shape — a negotiated request and its stream context
//! in, a response (or an upgraded session) out. This file holds only the shared context and the dispatch.

pub mod longpoll;
pub mod messages;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Kick, Resume, StartUpstream, StreamKey, Subscription};
use crate::metrics::Metrics;
use crate::route::{ConnGuard, Route};

/// What every transport needs to serve one client of one stream.
pub struct StreamContext {
    pub route: Arc<Route>,
    pub hub: Arc<Hub>,
    pub key: StreamKey,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server drains.
    pub drain: CancellationToken,
    /// Cancelled to drop this client's connection (slow consumer).
    pub kick: CancellationToken,
    /// Spawns session tasks that outlive the HTTP exchange (WebSocket) inside the connection limit and drain.
    pub guard: ConnGuard,
    /// `http1` or `http2` (metrics label).
    pub http_version: &'static str,
    /// Client headers for the upstream request (per-client mode only).
    pub upstream_headers: http::HeaderMap,
}

impl StreamContext {
    /// Subscribes to the stream, creating it (and its upstream) on first use. `transport` labels a slow-consumer
    /// disconnect.
    pub fn subscribe(&self, resume: Resume<'_>, transport: &'static str) -> Subscription {
        let start: &StartUpstream = &self.route.start;
        let kick = Kick {
            token: self.kick.clone(),
            transport,
        };
        let headers = self.upstream_headers.clone();
        self.hub.subscribe(
            self.key.clone(),
            &self.route.settings,
            start,
            resume,
            Some(kick),
            headers,
        )
    }
}

/// Keeps `pushbridge_connections_open` right for one client session.
pub struct OpenGauge {
    metrics: Arc<Metrics>,
    labels: [&'static str; 2],
}

impl OpenGauge {
    pub fn new(
        metrics: &Arc<Metrics>,
        transport: &'static str,
        http_version: &'static str,
    ) -> OpenGauge {
        metrics
            .connections_total
            .with_label_values(&[transport])
            .inc();
        metrics
            .connections_open
            .with_label_values(&[transport, http_version])
            .inc();
        OpenGauge {
            metrics: metrics.clone(),
            labels: [transport, http_version],
        }
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.metrics
            .connections_open
            .with_label_values(&self.labels)
            .dec();
    }
}
