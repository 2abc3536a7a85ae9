//! Prometheus metrics: one owned registry and typed handles created at start-up, so every series exists (at 0)
//! before anything happens. Labels come from closed sets only (transport, HTTP version, result, route names
//! from the config) — never a client or a path-parameter value. Reference: docs/metrics.md.

mod labels;

pub use labels::{
    CLOSE_REASONS, Close, PUBLISH_RESULTS, WS_BUILTIN_SUBPROTOCOLS, WS_EXTENSIONS,
    WS_PASSED_SUBPROTOCOL, WS_RELAY_FAILURES, WsSent,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    /// Events received from upstreams, by route.
    pub events_received: IntCounterVec,
    /// Upstream events dropped as replays of held events.
    pub upstream_duplicates: IntCounter,
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
    /// 1 for each route's upstream kind, 0 for the others: joins the per-route upstream series to a kind.
    pub upstream_kind: IntGaugeVec,
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
    /// Pass-through responses by status class (1xx … 5xx; 1xx: a WebSocket upgrade).
    pub passthrough_requests: IntCounterVec,
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
    /// Open pass-through WebSocket sessions by client HTTP version.
    pub passthrough_ws_open: IntGaugeVec,
    /// Pass-through WebSocket sessions opened, by client HTTP version.
    pub passthrough_ws_total: IntCounterVec,
    /// Pass-through WebSocket sessions ended, by reason ([`CLOSE_REASONS`]).
    pub passthrough_ws_closes: IntCounterVec,
    /// Pass-through request bodies cut for arriving too slowly after the response ended.
    pub passthrough_body_timeouts: IntCounter,
    /// Pass-through WebSocket handshakes refused at `websocket.max_sessions`.
    pub passthrough_ws_refused: IntCounter,
    /// Pass-through requests refused for naming one of the application's internal URLs.
    pub passthrough_internal_refused: IntCounter,
    /// Rate limit of log lines clients or upstreams can trigger (libraries' lines too); counts
    /// `pushbridge_log_lines_suppressed_total`.
    pub logs: std::sync::Arc<crate::logs::LogLimiter>,
    /// Redis commands by operation (`read`: the upstream's XREAD, `history`: deep-resume reads, `tee`: XADD).
    pub redis_ops: IntCounterVec,
    /// Events not teed into Redis because the tee queue was full.
    pub tee_dropped: IntCounter,
    /// The notAfter (Unix seconds) of each client listener's certificate, by certificate file.
    pub tls_cert_expiry: IntGaugeVec,
    /// `process_resident_memory_bytes` and `process_open_fds`, read from /proc at each scrape (Linux).
    process: [IntGauge; 2],
    /// Publish requests by route (`""`: no route matched) and result (`PUBLISH_RESULTS`).
    pub published: IntCounterVec,
    /// Seconds from a publish request's arrival to its events handed to subscribers (or acknowledged by Redis).
    pub publish_latency: HistogramVec,
    /// `Idempotency-Key`s forgotten before `buffer.age` to stay within the process's bound.
    pub publish_idempotency_evictions: IntCounter,
    /// Bytes of publish request bodies being read or held, all requests together.
    pub publish_body_bytes: IntGauge,
    /// Publish requests refused with 503 because the bodies in flight reached their budget.
    pub publish_body_budget_refusals: IntCounter,
    /// Client WebSocket handshakes answered, by negotiated extension and subprotocol (`none`: no header).
    pub ws_handshakes: IntCounterVec,
    /// Client WebSocket handshakes of `subprotocols_upstream: pass` routes refused or upstream connections failed
    /// over the application's subprotocol choice, by reason (`WS_RELAY_FAILURES`).
    pub ws_subprotocol_relay_failures: IntCounterVec,
    /// Event payload bytes sent on client WebSockets, by compression (`deflate`: as compressed, `none`).
    pub ws_payload_bytes: IntCounterVec,
    /// What the payloads sent compressed were before compression.
    pub ws_deflate_original_bytes: IntCounter,
    /// `ws_payload_bytes` resolved per label (deflate, none).
    ws_payload_by: [IntCounter; 2],
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
        let ws_payload_bytes = counter_vec(
            "pushbridge_ws_payload_bytes_total",
            "Event payload bytes sent on client WebSockets, by compression (deflate: compressed size, none).",
            &["compression"],
        )?;
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
            http2_stream_limit_reached: counter(
                "pushbridge_http2_stream_limit_reached_total",
                "Times an HTTP/2 connection reached its stream limit (further streams: REFUSED_STREAM).",
            )?,
            streams_open,
            events_received: counter_vec(
                "pushbridge_events_received_total",
                "Events received from upstreams.",
                &["route"],
            )?,
            paced_wakes: counter(
                "pushbridge_paced_wakes_total",
                "Wake-ups of a large stream's subscribers deferred by wake pacing (events waited in the ring).",
            )?,
            upstream_duplicates: counter(
                "pushbridge_upstream_duplicates_total",
                "Upstream events dropped as replays of events already held.",
            )?,
            stream_refusals: counter_vec(
                "pushbridge_stream_refusals_total",
                "New streams refused: for a stream limit (global, route, fds: 503), a parameter rule (pattern: 404) or a key over limits.max_key_bytes (key_bytes: 414).",
                &["limit"],
            )?,
            stream_evictions: counter_vec(
                "pushbridge_stream_evictions_total",
                "Dormant streams (upstream closed, no subscriber) closed with their buffer to admit a new stream at a stream limit (global, route).",
                &["limit"],
            )?,
            negative_cache_hits: counter(
                "pushbridge_negative_cache_hits_total",
                "Requests answered with the upstream's recent 404/403/410 without opening a stream.",
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
            upstream_kind: gauge_vec(
                "pushbridge_upstream_kind",
                "1 for the route's upstream kind, 0 for the other kinds.",
                &["route", "kind"],
            )?,
            resumes: counter_vec(
                "pushbridge_resumes_total",
                "Client resumes by result (hit: the id was buffered; log: served from the durable log; gap: neither had it).",
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
            connections_closed: counter_vec(
                "pushbridge_connections_closed_total",
                "Connections closed by pushbridge's timers (no first request in time, idle).",
                &["listener", "reason"],
            )?,
            direct_path_bounds: counter_vec(
                "pushbridge_direct_path_bounds_total",
                "Bounds of the direct HTTP/1.1 path reached: a head over 8 KiB or 64 fields handed to hyper (head), \
                 reading stopped past 8 KiB sent behind a held long-poll (held_poll_bytes).",
                &["bound"],
            )?,
            connection_limit_reached: counter_vec(
                "pushbridge_connection_limit_reached_total",
                "Times every connection permit of a listener was taken.",
                &["listener"],
            )?,
            accept_errors: counter_vec(
                "pushbridge_accept_errors_total",
                "Failed accepts (e.g. out of file descriptors).",
                &["listener"],
            )?,
            ready_checks: counter_vec(
                "pushbridge_ready_checks_total",
                "Checks of the application's health URL (admin.ready_check).",
                &["result"],
            )?,
            build_info: gauge_vec("pushbridge_build_info", "Build information.", &["version"])?,
            passthrough_ws_open: gauge_vec(
                "pushbridge_passthrough_websockets_open",
                "Open pass-through WebSocket sessions.",
                &["http_version"],
            )?,
            passthrough_ws_total: counter_vec(
                "pushbridge_passthrough_websockets_total",
                "Pass-through WebSocket sessions opened.",
                &["http_version"],
            )?,
            passthrough_ws_closes: counter_vec(
                "pushbridge_passthrough_websocket_closes_total",
                "Pass-through WebSocket sessions ended, by reason.",
                &["reason"],
            )?,
            passthrough_body_timeouts: counter(
                "pushbridge_passthrough_body_timeouts_total",
                "Pass-through request bodies cut for arriving too slowly after the response ended.",
            )?,
            passthrough_ws_refused: counter(
                "pushbridge_passthrough_websocket_refusals_total",
                "Pass-through WebSocket handshakes refused for too many open sessions.",
            )?,
            passthrough_internal_refused: counter(
                "pushbridge_passthrough_internal_refused_total",
                "Pass-through requests refused (404) for a path the configuration uses as an internal URL of the application.",
            )?,
            logs: std::sync::Arc::new(crate::logs::LogLimiter::new(counter_vec(
                "pushbridge_log_lines_suppressed_total",
                "Log lines not written by the log rate limit, by kind.",
                &["kind"],
            )?)),
            redis_ops: counter_vec(
                "pushbridge_redis_operations_total",
                "Redis commands by operation (read, history, tee) and result.",
                &["op", "result"],
            )?,
            tee_dropped: counter(
                "pushbridge_tee_dropped_total",
                "Events not written to Redis because the tee queue was full.",
            )?,
            tls_cert_expiry: gauge_vec(
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
            published: counter_vec(
                "pushbridge_published_total",
                "Publish requests by route and result.",
                &["route", "result"],
            )?,
            publish_latency: {
                let histogram = HistogramVec::new(
                    HistogramOpts::new(
                        "pushbridge_publish_latency_seconds",
                        "Seconds from a publish request's arrival to its events handed to subscribers (Redis routes: acknowledged by Redis).",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                    ]),
                    &["route"],
                )?;
                registry.register(Box::new(histogram.clone()))?;
                histogram
            },
            publish_idempotency_evictions: counter(
                "pushbridge_publish_idempotency_evictions_total",
                "Idempotency-Keys of kind: publish routes forgotten before buffer.age to stay within the process's bound.",
            )?,
            publish_body_bytes: {
                let gauge = IntGauge::new(
                    "pushbridge_publish_body_bytes",
                    "Bytes of publish request bodies being read or held, all requests together.",
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            publish_body_budget_refusals: counter(
                "pushbridge_publish_body_budget_refusals_total",
                "Publish requests answered 503 because the bodies in flight reached their budget (64 MiB).",
            )?,
            ws_handshakes: counter_vec(
                "pushbridge_ws_handshakes_total",
                "Client WebSocket handshakes answered, by negotiated extension (permessage-deflate, none) and subprotocol (none: not selected).",
                &["extension", "subprotocol"],
            )?,
            ws_subprotocol_relay_failures: counter_vec(
                "pushbridge_ws_subprotocol_relay_failures_total",
                "ws.subprotocols_upstream: pass: the application's handshake failed or refused (upstream), selected a subprotocol the client did not offer (unoffered), or a reconnection selected another one than the client got (changed).",
                &["reason"],
            )?,
            ws_payload_by: ["deflate", "none"].map(|c| ws_payload_bytes.with_label_values(&[c])),
            ws_payload_bytes,
            ws_deflate_original_bytes: counter(
                "pushbridge_ws_deflate_original_bytes_total",
                "Size before compression of the event payloads sent compressed (ratio: divide by pushbridge_ws_payload_bytes_total{compression=\"deflate\"}).",
            )?,
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
        for op in ["read", "history", "tee", "publish"] {
            for result in ["ok", "error"] {
                self.redis_ops.with_label_values(&[op, result]);
            }
        }
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
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.passthrough_requests.with_label_values(&[class]);
        }
        for result in ["ok", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for bound in ["head", "held_poll_bytes"] {
            self.direct_path_bounds.with_label_values(&[bound]);
        }
        for version in HTTP_VERSIONS {
            self.passthrough_ws_open.with_label_values(&[version]);
            self.passthrough_ws_total.with_label_values(&[version]);
        }
        for reason in CLOSE_REASONS {
            self.passthrough_ws_closes.with_label_values(&[reason]);
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
        for reason in WS_RELAY_FAILURES {
            self.ws_subprotocol_relay_failures
                .with_label_values(&[reason]);
        }
        for extension in WS_EXTENSIONS {
            for subprotocol in WS_BUILTIN_SUBPROTOCOLS
                .iter()
                .chain(&["none", WS_PASSED_SUBPROTOCOL])
            {
                self.ws_handshakes
                    .with_label_values(&[extension, subprotocol]);
            }
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
    }

    /// Creates the per-route series for routes (at start-up and after a reload).
    pub fn add_routes(&self, routes: &[String]) {
        for route in routes.iter().map(String::as_str).chain([""]) {
            for result in PUBLISH_RESULTS {
                self.published.with_label_values(&[route, result]);
            }
        }
        for route in routes {
            self.publish_latency.with_label_values(&[route]);
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

    /// Counts one Redis command of `op` (`read`, `history`, `tee`).
    pub fn redis_op(&self, op: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.redis_ops.with_label_values(&[op, result]).inc();
    }

    /// Counts one deep-resume read of a stream's log.
    pub fn log_reads(&self, ok: bool) {
        self.redis_op("history", ok);
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

    /// Marks `kind` as the upstream kind of `route` in `pushbridge_upstream_kind` (every kind's series exists).
    pub fn set_upstream_kind(&self, route: &str, kind: &str) {
        for k in UPSTREAM_KINDS {
            self.upstream_kind
                .with_label_values(&[route, k])
                .set(i64::from(k == kind));
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

    /// Counts a client WebSocket handshake answered with or without permessage-deflate and a subprotocol (a name
    /// from the route's configuration).
    pub fn ws_handshake(&self, deflate: bool, subprotocol: Option<&str>) {
        let extension = WS_EXTENSIONS[usize::from(!deflate)];
        self.ws_handshakes
            .with_label_values(&[extension, subprotocol.unwrap_or("none")])
            .inc();
    }

    /// Counts a failure of `subprotocols_upstream: pass` (a reason from `WS_RELAY_FAILURES`).
    pub fn ws_subprotocol_relay_failure(&self, reason: &str) {
        self.ws_subprotocol_relay_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts the payload bytes of one WebSocket write batch.
    pub fn ws_sent(&self, sent: WsSent) {
        let [deflated, plain] = &self.ws_payload_by;
        if sent.deflated > 0 {
            deflated.inc_by(sent.deflated);
            self.ws_deflate_original_bytes.inc_by(sent.original);
        }
        if sent.plain > 0 {
            plain.inc_by(sent.plain);
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
