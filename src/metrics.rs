//! Prometheus metrics: one owned registry and typed handles created at start-up, so every series exists (at 0)
//! before anything happens. Labels come from closed sets only (transport, HTTP version, result, route names
//! from the config) — never a client or a path-parameter value. Reference: docs/metrics.md.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Client transports, as metric labels.
pub const TRANSPORTS: [&str; 3] = ["ws", "sse", "long-poll"];
/// Client HTTP versions, as metric labels.
pub const HTTP_VERSIONS: [&str; 2] = ["http1", "http2"];

pub struct Metrics {
    registry: Registry,
    /// Open client stream sessions by transport and HTTP version.
    pub connections_open: IntGaugeVec,
    /// Client stream sessions opened, by transport.
    pub connections_total: IntCounterVec,
    /// Accepted TCP connections.
    pub tcp_accepted: IntCounter,
    /// Live hub streams.
    pub streams_open: IntGauge,
    /// Events received from upstreams, by route.
    pub events_received: IntCounterVec,
    /// Upstream events dropped as replays of held events.
    pub upstream_duplicates: IntCounter,
    /// New streams refused for a stream limit, by limit (`global`: limits.max_streams, `route`: the route's).
    pub stream_refusals: IntCounterVec,
    /// Bytes held by every resume buffer (events and their encodings).
    pub buffer_bytes: IntGauge,
    /// Events evicted for a byte budget, by budget (`stream`: buffer.max_bytes, `global`: limits.max_buffer_bytes).
    pub buffer_evictions: IntCounterVec,
    /// Upstream events whose id was already buffered (delivered as new events), by route.
    pub upstream_reused_ids: IntCounterVec,
    /// Upstream connections dropped for silence (`upstream.idle_timeout`), by route.
    pub upstream_silent: IntCounterVec,
    /// Upstream input skipped (over-size events, malformed data), by route.
    pub upstream_malformed: IntCounterVec,
    /// Events written to clients, by transport.
    pub events_delivered: IntCounterVec,
    /// Seconds from an event's arrival at the hub to its write to a client, by transport.
    pub delivery_latency: HistogramVec,
    /// Upstream connection attempts by route and result (ok, error).
    pub upstream_connects: IntCounterVec,
    /// Connected upstreams of a route (one per live stream); 0 = the route's upstream is down or unused.
    pub upstream_up: IntGaugeVec,
    /// Resumes by result: `hit` (the id was buffered) or `gap` (it was not).
    pub resumes: IntCounterVec,
    /// Resumes whose id was no longer buffered.
    pub resumes_gap: IntCounter,
    /// Server-side downgrades by from/to transport.
    pub downgrades: IntCounterVec,
    /// Slow subscribers disconnected, by transport.
    pub slow_consumers: IntCounterVec,
    /// TLS handshake failures by reason (timeout, error).
    pub tls_failures: IntCounterVec,
    /// Pass-through responses by status class (2xx … 5xx).
    pub passthrough_requests: IntCounterVec,
    /// Config reloads by result (ok, error).
    pub config_reloads: IntCounterVec,
    /// Client → application messages by result (ok, error, refused).
    pub client_messages: IntCounterVec,
    /// Constant 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// `events_delivered` and `delivery_latency` resolved per transport once (in `TRANSPORTS` order): the hot path
    /// (every event × every subscriber) then skips the label lookup.
    delivered_by: Vec<(IntCounter, Histogram)>,
}

impl Metrics {
    /// Creates every series. `routes` are the configured stream route names.
    pub fn new(routes: &[String]) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "pushbridge_delivery_latency_seconds",
                "Seconds from an event's arrival at the hub to its write to a client.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["transport"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let streams_open = IntGauge::new("pushbridge_streams_open", "Live hub streams.")?;
        registry.register(Box::new(streams_open.clone()))?;

        let mut metrics = Metrics {
            connections_open: gauge_vec(
                "pushbridge_connections_open",
                "Open client stream sessions.",
                &["transport", "http_version"],
            )?,
            connections_total: counter_vec(
                "pushbridge_connections_total",
                "Client stream sessions opened.",
                &["transport"],
            )?,
            tcp_accepted: counter("pushbridge_tcp_accepted_total", "Accepted TCP connections.")?,
            streams_open,
            events_received: counter_vec(
                "pushbridge_events_received_total",
                "Events received from upstreams.",
                &["route"],
            )?,
            upstream_duplicates: counter(
                "pushbridge_upstream_duplicates_total",
                "Upstream events dropped as replays of events already held.",
            )?,
            stream_refusals: counter_vec(
                "pushbridge_stream_refusals_total",
                "New streams refused (503) for a stream limit.",
                &["limit"],
            )?,
            buffer_bytes: {
                let gauge = IntGauge::new(
                    "pushbridge_buffer_bytes",
                    "Bytes held by every resume buffer (events and their encodings).",
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            buffer_evictions: counter_vec(
                "pushbridge_buffer_byte_evictions_total",
                "Buffered events evicted to keep within a byte budget.",
                &["budget"],
            )?,
            upstream_reused_ids: counter_vec(
                "pushbridge_upstream_reused_ids_total",
                "Upstream events whose id was already buffered (delivered as new events).",
                &["route"],
            )?,
            upstream_silent: counter_vec(
                "pushbridge_upstream_silent_total",
                "Upstream connections reopened after upstream.idle_timeout without a byte.",
                &["route"],
            )?,
            upstream_malformed: counter_vec(
                "pushbridge_upstream_malformed_total",
                "Upstream input skipped (over-size or malformed).",
                &["route"],
            )?,
            events_delivered: counter_vec(
                "pushbridge_events_delivered_total",
                "Events written to clients.",
                &["transport"],
            )?,
            delivery_latency: latency,
            upstream_connects: counter_vec(
                "pushbridge_upstream_connects_total",
                "Upstream connection attempts.",
                &["route", "result"],
            )?,
            upstream_up: gauge_vec(
                "pushbridge_upstream_up",
                "Connected upstream streams of the route.",
                &["route"],
            )?,
            resumes: counter_vec(
                "pushbridge_resumes_total",
                "Client resumes by result (hit: the id was buffered; gap: it was not).",
                &["result"],
            )?,
            resumes_gap: counter(
                "pushbridge_resume_gaps_total",
                "Resumes whose last event id was no longer buffered.",
            )?,
            downgrades: counter_vec(
                "pushbridge_downgrades_total",
                "Server-side transport downgrades.",
                &["from", "to"],
            )?,
            slow_consumers: counter_vec(
                "pushbridge_slow_consumer_disconnects_total",
                "Subscribers disconnected for falling behind.",
                &["transport"],
            )?,
            tls_failures: counter_vec(
                "pushbridge_tls_handshake_failures_total",
                "TLS handshake failures.",
                &["reason"],
            )?,
            passthrough_requests: counter_vec(
                "pushbridge_passthrough_requests_total",
                "Pass-through responses by status class.",
                &["class"],
            )?,
            config_reloads: counter_vec(
                "pushbridge_config_reloads_total",
                "Configuration reloads.",
                &["result"],
            )?,
            client_messages: counter_vec(
                "pushbridge_client_messages_total",
                "Client to application messages.",
                &["result"],
            )?,
            build_info: gauge_vec("pushbridge_build_info", "Build information.", &["version"])?,
            delivered_by: Vec::new(),
            registry,
        };
        metrics.delivered_by = TRANSPORTS
            .iter()
            .map(|t| {
                (
                    metrics.events_delivered.with_label_values(&[t]),
                    metrics.delivery_latency.with_label_values(&[t]),
                )
            })
            .collect();
        metrics.touch(routes);
        Ok(metrics)
    }

    /// Creates the labelled series so they read 0 rather than being absent.
    fn touch(&self, routes: &[String]) {
        for transport in TRANSPORTS {
            for version in HTTP_VERSIONS {
                self.connections_open
                    .with_label_values(&[transport, version]);
            }
            self.connections_total.with_label_values(&[transport]);
            self.events_delivered.with_label_values(&[transport]);
            self.delivery_latency.with_label_values(&[transport]);
            self.slow_consumers.with_label_values(&[transport]);
            for to in TRANSPORTS {
                if to != transport {
                    self.downgrades.with_label_values(&[transport, to]);
                }
            }
        }
        self.add_routes(routes);
        for result in ["hit", "gap"] {
            self.resumes.with_label_values(&[result]);
        }
        for budget in ["stream", "global"] {
            self.buffer_evictions.with_label_values(&[budget]);
        }
        for limit in ["global", "route"] {
            self.stream_refusals.with_label_values(&[limit]);
        }
        for reason in ["timeout", "error"] {
            self.tls_failures.with_label_values(&[reason]);
        }
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            self.passthrough_requests.with_label_values(&[class]);
        }
        for result in ["ok", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for result in ["ok", "error", "refused"] {
            self.client_messages.with_label_values(&[result]);
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
    }

    /// Creates the per-route series for routes (at start-up and after a reload).
    pub fn add_routes(&self, routes: &[String]) {
        for route in routes {
            self.events_received.with_label_values(&[route]);
            self.upstream_malformed.with_label_values(&[route]);
            self.upstream_reused_ids.with_label_values(&[route]);
            self.upstream_silent.with_label_values(&[route]);
            self.upstream_up.with_label_values(&[route]);
            for result in ["ok", "error"] {
                self.upstream_connects.with_label_values(&[route, result]);
            }
        }
    }

    /// Counts events evicted for the stream's and the process's byte budgets.
    pub fn buffer_evicted(&self, stream: usize, global: usize) {
        for (budget, n) in [("stream", stream), ("global", global)] {
            if n > 0 {
                self.buffer_evictions
                    .with_label_values(&[budget])
                    .inc_by(n as u64);
            }
        }
    }

    /// Counts an upstream event whose id was already buffered.
    pub fn reused_id(&self, route: &str) {
        self.upstream_reused_ids.with_label_values(&[route]).inc();
    }

    /// Records one event written to a client as a resume replay (published before the client arrived): counted, but
    /// kept out of the delivery-latency histogram, which measures live delivery.
    pub fn delivered_replayed(&self, transport: &str) {
        match TRANSPORTS.iter().position(|t| *t == transport) {
            Some(i) => self.delivered_by[i].0.inc(),
            None => self.events_delivered.with_label_values(&[transport]).inc(),
        }
    }

    /// Records one event written to a client live.
    pub fn delivered(&self, transport: &str, event: &crate::event::Event) {
        let latency = event.published.elapsed().as_secs_f64();
        match TRANSPORTS.iter().position(|t| *t == transport) {
            Some(i) => {
                let (counter, histogram) = &self.delivered_by[i];
                counter.inc();
                histogram.observe(latency);
            }
            None => {
                self.events_delivered.with_label_values(&[transport]).inc();
                self.delivery_latency
                    .with_label_values(&[transport])
                    .observe(latency);
            }
        }
    }

    /// The text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "Cannot encode metrics");
        }
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
