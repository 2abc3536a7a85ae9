//! Prometheus metrics: one owned registry and typed handles created at start-up, so every series exists (at 0)
//! before anything happens. Labels come from closed sets only (transport, HTTP version, result, route names
//! from the config) — never a client or a path-parameter value. Reference: docs/metrics.md.

mod labels;
mod passthrough;
mod publish;
mod reg;
mod upstream;
mod ws;

pub use labels::{
    CLOSE_REASONS, Close, PUBLISH_RESULTS, WS_BUILTIN_SUBPROTOCOLS, WS_EXTENSIONS,
    WS_PASSED_SUBPROTOCOL, WS_RELAY_FAILURES, WsSent,
};
pub use passthrough::PassthroughMetrics;
use prometheus::{
    Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};
pub use publish::PublishMetrics;
use reg::Reg;
pub use upstream::UpstreamMetrics;
pub use ws::WsMetrics;

/// Client transports, as metric labels.
pub const TRANSPORTS: [&str; 3] = ["ws", "sse", "long-poll"];
/// Upstream kinds, as metric labels.
pub const UPSTREAM_KINDS: [&str; 6] = ["sse", "ws", "ndjson", "poll", "redis", "publish"];
/// Listeners, as metric labels.
pub const LISTENERS: [&str; 3] = ["client", "admin", "publish"];
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
    /// Times an HTTP/2 connection reached `limits.h2_max_streams_per_connection` streams in flight.
    pub http2_stream_limit_reached: IntCounter,
    /// Live hub streams.
    pub streams_open: IntGauge,
    /// Wake-ups of a large stream's subscribers deferred by wake pacing (`hub::stream::pace`).
    pub paced_wakes: IntCounter,
    /// New streams refused, by limit (`global`: limits.max_streams, `route`: the route's, `pattern`: `params` rules).
    pub stream_refusals: IntCounterVec,
    /// Dormant streams closed to admit a new one at a stream limit, by limit (global, route).
    pub stream_evictions: IntCounterVec,
    /// Requests answered from the negative cache (a key the upstream answered 404/403/410 moments ago).
    pub negative_cache_hits: IntCounter,
    /// Bytes held by every resume buffer (events and their encodings).
    pub buffer_bytes: IntGauge,
    /// Events evicted for a byte budget, by budget (`stream`: buffer.max_bytes, `global`: limits.max_buffer_bytes).
    pub buffer_evictions: IntCounterVec,
    /// Events written to clients, by transport.
    pub events_delivered: IntCounterVec,
    /// Seconds from an event's arrival at the hub to its write to a client, by transport.
    pub delivery_latency: HistogramVec,
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
    /// Config reloads by result (ok, error).
    pub config_reloads: IntCounterVec,
    /// Client → application messages by result (ok, error, refused).
    pub client_messages: IntCounterVec,
    /// Connections closed by pushbridge's own timers, by listener (client, admin) and reason (handshake_timeout,
    /// idle).
    pub connections_closed: IntCounterVec,
    /// Bounds of the direct HTTP/1.1 path reached (`head`: handed to hyper; `held_poll_bytes`: reading stopped).
    pub direct_path_bounds: IntCounterVec,
    /// Times a listener found every connection permit taken, by listener.
    pub connection_limit_reached: IntCounterVec,
    /// Failed accepts (e.g. out of file descriptors), by listener.
    pub accept_errors: IntCounterVec,
    /// Readiness checks of the application's health URL, by result (ok, error).
    pub ready_checks: IntCounterVec,
    /// Constant 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// Rate limit of log lines clients or upstreams can trigger (libraries' lines too); counts
    /// `pushbridge_log_lines_suppressed_total`.
    pub logs: std::sync::Arc<crate::logs::LogLimiter>,
    /// The notAfter (Unix seconds) of each client listener's certificate, by certificate file.
    pub tls_cert_expiry: IntGaugeVec,
    /// `process_resident_memory_bytes` and `process_open_fds`, read from /proc at each scrape (Linux).
    process: [IntGauge; 2],
    /// Upstream connectors and Redis.
    pub upstream: UpstreamMetrics,
    /// The publish API.
    pub publish: PublishMetrics,
    /// The pass-through proxy.
    pub passthrough: PassthroughMetrics,
    /// Client WebSocket sessions.
    pub ws: WsMetrics,
    /// `events_delivered` and `delivery_latency` resolved per transport once (in `TRANSPORTS` order): the hot path
    /// (every event × every subscriber) then skips the label lookup.
    delivered_by: Vec<(IntCounter, Histogram)>,
}

impl Metrics {
    /// Creates every series. `routes` are the configured stream route names.
    pub fn new(routes: &[String]) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reg = Reg(&registry);
        let mut metrics = Metrics {
            connections_open: reg.gauge_vec(
                "pushbridge_connections_open",
                "Open client stream sessions.",
                &["transport", "http_version"],
            )?,
            connections_total: reg.counter_vec(
                "pushbridge_connections_total",
                "Client stream sessions opened.",
                &["transport"],
            )?,
            tcp_accepted: reg.counter("pushbridge_tcp_accepted_total", "Accepted TCP connections.")?,
            http2_stream_limit_reached: reg.counter(
                "pushbridge_http2_stream_limit_reached_total",
                "Times an HTTP/2 connection reached its stream limit (further streams: REFUSED_STREAM).",
            )?,
            streams_open: reg.gauge("pushbridge_streams_open", "Live hub streams.")?,
            paced_wakes: reg.counter(
                "pushbridge_paced_wakes_total",
                "Wake-ups of a large stream's subscribers deferred by wake pacing (events waited in the ring).",
            )?,
            stream_refusals: reg.counter_vec(
                "pushbridge_stream_refusals_total",
                "New streams refused: for a stream limit (global, route, fds: 503), a parameter rule (pattern: 404) or a key over limits.max_key_bytes (key_bytes: 414).",
                &["limit"],
            )?,
            stream_evictions: reg.counter_vec(
                "pushbridge_stream_evictions_total",
                "Dormant streams (upstream closed, no subscriber) closed with their buffer to admit a new stream at a stream limit (global, route).",
                &["limit"],
            )?,
            negative_cache_hits: reg.counter(
                "pushbridge_negative_cache_hits_total",
                "Requests answered with the upstream's recent 404/403/410 without opening a stream.",
            )?,
            buffer_bytes: reg.gauge(
                "pushbridge_buffer_bytes",
                "Bytes held by every resume buffer (events and their encodings).",
            )?,
            buffer_evictions: reg.counter_vec(
                "pushbridge_buffer_byte_evictions_total",
                "Buffered events evicted to keep within a byte budget.",
                &["budget"],
            )?,
            events_delivered: reg.counter_vec(
                "pushbridge_events_delivered_total",
                "Events written to clients.",
                &["transport"],
            )?,
            delivery_latency: reg.histogram_vec(
                "pushbridge_delivery_latency_seconds",
                "Seconds from an event's arrival at the hub to its write to a client.",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
                &["transport"],
            )?,
            resumes: reg.counter_vec(
                "pushbridge_resumes_total",
                "Client resumes by result (hit: the id was buffered; log: served from the durable log; gap: neither had it).",
                &["result"],
            )?,
            resumes_gap: reg.counter(
                "pushbridge_resume_gaps_total",
                "Resumes whose last event id was no longer buffered.",
            )?,
            downgrades: reg.counter_vec(
                "pushbridge_downgrades_total",
                "Server-side transport downgrades.",
                &["from", "to"],
            )?,
            slow_consumers: reg.counter_vec(
                "pushbridge_slow_consumer_disconnects_total",
                "Subscribers disconnected for falling behind.",
                &["transport"],
            )?,
            tls_failures: reg.counter_vec(
                "pushbridge_tls_handshake_failures_total",
                "TLS handshake failures.",
                &["reason"],
            )?,
            config_reloads: reg.counter_vec(
                "pushbridge_config_reloads_total",
                "Configuration reloads.",
                &["result"],
            )?,
            client_messages: reg.counter_vec(
                "pushbridge_client_messages_total",
                "Client to application messages.",
                &["result"],
            )?,
            connections_closed: reg.counter_vec(
                "pushbridge_connections_closed_total",
                "Connections closed by pushbridge's timers (no first request in time, idle).",
                &["listener", "reason"],
            )?,
            direct_path_bounds: reg.counter_vec(
                "pushbridge_direct_path_bounds_total",
                "Bounds of the direct HTTP/1.1 path reached: a head over 8 KiB or 64 fields handed to hyper (head), \
                 reading stopped past 8 KiB sent behind a held long-poll (held_poll_bytes).",
                &["bound"],
            )?,
            connection_limit_reached: reg.counter_vec(
                "pushbridge_connection_limit_reached_total",
                "Times every connection permit of a listener was taken.",
                &["listener"],
            )?,
            accept_errors: reg.counter_vec(
                "pushbridge_accept_errors_total",
                "Failed accepts (e.g. out of file descriptors).",
                &["listener"],
            )?,
            ready_checks: reg.counter_vec(
                "pushbridge_ready_checks_total",
                "Checks of the application's health URL (admin.ready_check).",
                &["result"],
            )?,
            build_info: reg.gauge_vec("pushbridge_build_info", "Build information.", &["version"])?,
            logs: std::sync::Arc::new(crate::logs::LogLimiter::new(reg.counter_vec(
                "pushbridge_log_lines_suppressed_total",
                "Log lines not written by the log rate limit, by kind.",
                &["kind"],
            )?)),
            tls_cert_expiry: reg.gauge_vec(
                "pushbridge_tls_cert_expiry_timestamp_seconds",
                "The notAfter of the certificate a TLS listener serves (Unix seconds), by certificate file.",
                &["cert"],
            )?,
            process: [
                IntGauge::new(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                )?,
                IntGauge::new("process_open_fds", "Number of open file descriptors.")?,
            ],
            delivered_by: Vec::new(),
            upstream: UpstreamMetrics::new(&reg)?,
            publish: PublishMetrics::new(&reg)?,
            passthrough: PassthroughMetrics::new(&reg)?,
            ws: WsMetrics::new(&reg)?,
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
        if std::path::Path::new("/proc/self/fd").exists() {
            for gauge in &metrics.process {
                metrics.registry.register(Box::new(gauge.clone()))?;
            }
        }
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
        for result in ["hit", "log", "gap"] {
            self.resumes.with_label_values(&[result]);
        }
        for budget in ["stream", "global"] {
            self.buffer_evictions.with_label_values(&[budget]);
        }
        for limit in ["global", "route", "pattern", "fds", "key_bytes"] {
            self.stream_refusals.with_label_values(&[limit]);
        }
        for limit in ["global", "route"] {
            self.stream_evictions.with_label_values(&[limit]);
        }
        for reason in ["timeout", "error"] {
            self.tls_failures.with_label_values(&[reason]);
        }
        for result in ["ok", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for bound in ["head", "held_poll_bytes"] {
            self.direct_path_bounds.with_label_values(&[bound]);
        }
        for result in ["ok", "error", "refused"] {
            self.client_messages.with_label_values(&[result]);
        }
        for listener in LISTENERS {
            for reason in Close::ALL {
                self.connections_closed
                    .with_label_values(&[listener, reason.as_str()]);
            }
            self.connection_limit_reached.with_label_values(&[listener]);
            self.accept_errors.with_label_values(&[listener]);
        }
        for result in ["ok", "error"] {
            self.ready_checks.with_label_values(&[result]);
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
    }

    /// Creates the per-route series for routes (at start-up and after a reload).
    pub fn add_routes(&self, routes: &[String]) {
        self.publish.add_routes(routes);
        self.upstream.add_routes(routes);
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

    /// Records a batch of events written to a client: each one counted, and the live ones (`live`: published after
    /// the client arrived) in the delivery-latency histogram, which measures live delivery (resume replays stay out of
    /// it). One series lookup and one clock read per batch, not per event.
    pub fn delivered(
        &self,
        transport: &str,
        events: &[std::sync::Arc<crate::event::Event>],
        live: impl Fn(&crate::event::Event) -> bool,
    ) {
        let other;
        let (counter, histogram) = match TRANSPORTS.iter().position(|t| *t == transport) {
            Some(i) => (&self.delivered_by[i].0, &self.delivered_by[i].1),
            None => {
                other = (
                    self.events_delivered.with_label_values(&[transport]),
                    self.delivery_latency.with_label_values(&[transport]),
                );
                (&other.0, &other.1)
            }
        };
        counter.inc_by(events.len() as u64);
        let now = std::time::Instant::now();
        for event in events.iter().filter(|e| live(e)) {
            histogram.observe(now.saturating_duration_since(event.published).as_secs_f64());
        }
    }

    /// Records `not_after` (Unix seconds) of the certificate loaded from `cert` (at start and after each reload).
    pub fn cert_expiry(&self, cert: &std::path::Path, not_after: i64) {
        let label = cert.display().to_string();
        self.tls_cert_expiry
            .with_label_values(&[&label])
            .set(not_after);
    }

    /// The text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        let [rss, fds] = &self.process;
        if let Some(bytes) = resident_bytes() {
            rss.set(bytes);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            fds.set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "Cannot encode metrics");
        }
        out
    }
}

/// `VmRSS` of /proc/self/status, in bytes (Linux).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
