//! Series of upstream connectors and Redis: connections, events received and skipped, Redis commands, the tee.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

use super::UPSTREAM_KINDS;
use super::reg::{Reg, Result};

pub struct UpstreamMetrics {
    /// Events received from upstreams, by route.
    pub events_received: IntCounterVec,
    /// Upstream events dropped as replays of held events.
    pub duplicates: IntCounter,
    /// Upstream events whose id was already buffered (delivered as new events), by route.
    pub reused_ids: IntCounterVec,
    /// Upstream connections dropped for silence (`upstream.idle_timeout`), by route.
    pub silent: IntCounterVec,
    /// Upstream input skipped (over-size events, malformed data), by route.
    pub malformed: IntCounterVec,
    /// Upstream connection attempts by route and result (ok, error).
    pub connects: IntCounterVec,
    /// Connected upstreams of a route (one per live stream); 0 = the route's upstream is down or unused.
    pub up: IntGaugeVec,
    /// 1 for each route's upstream kind, 0 for the others: joins the per-route upstream series to a kind.
    pub kind: IntGaugeVec,
    /// Redis commands by operation (`read`: the upstream's XREAD, `history`: deep-resume reads, `tee`: XADD,
    /// `publish`) and result.
    pub redis_ops: IntCounterVec,
    /// Events not teed into Redis because the tee queue was full.
    pub tee_dropped: IntCounter,
}

impl UpstreamMetrics {
    pub(super) fn new(reg: &Reg) -> Result<UpstreamMetrics> {
        let metrics = UpstreamMetrics {
            events_received: reg.counter_vec(
                "pushbridge_events_received_total",
                "Events received from upstreams.",
                &["route"],
            )?,
            duplicates: reg.counter(
                "pushbridge_upstream_duplicates_total",
                "Upstream events dropped as replays of events already held.",
            )?,
            reused_ids: reg.counter_vec(
                "pushbridge_upstream_reused_ids_total",
                "Upstream events whose id was already buffered (delivered as new events).",
                &["route"],
            )?,
            silent: reg.counter_vec(
                "pushbridge_upstream_silent_total",
                "Upstream connections reopened after upstream.idle_timeout without a byte.",
                &["route"],
            )?,
            malformed: reg.counter_vec(
                "pushbridge_upstream_malformed_total",
                "Upstream input skipped (over-size or malformed).",
                &["route"],
            )?,
            connects: reg.counter_vec(
                "pushbridge_upstream_connects_total",
                "Upstream connection attempts.",
                &["route", "result"],
            )?,
            up: reg.gauge_vec(
                "pushbridge_upstream_up",
                "Connected upstream streams of the route.",
                &["route"],
            )?,
            kind: reg.gauge_vec(
                "pushbridge_upstream_kind",
                "1 for the route's upstream kind, 0 for the other kinds.",
                &["route", "kind"],
            )?,
            redis_ops: reg.counter_vec(
                "pushbridge_redis_operations_total",
                "Redis commands by operation (read, history, tee) and result.",
                &["op", "result"],
            )?,
            tee_dropped: reg.counter(
                "pushbridge_tee_dropped_total",
                "Events not written to Redis because the tee queue was full.",
            )?,
        };
        for op in ["read", "history", "tee", "publish"] {
            for result in ["ok", "error"] {
                metrics.redis_ops.with_label_values(&[op, result]);
            }
        }
        Ok(metrics)
    }

    /// Creates the per-route series so they read 0.
    pub(super) fn add_routes(&self, routes: &[String]) {
        for route in routes {
            self.events_received.with_label_values(&[route]);
            self.malformed.with_label_values(&[route]);
            self.reused_ids.with_label_values(&[route]);
            self.silent.with_label_values(&[route]);
            self.up.with_label_values(&[route]);
            for result in ["ok", "error"] {
                self.connects.with_label_values(&[route, result]);
            }
        }
    }

    /// Counts one Redis command of `op` (`read`, `history`, `tee`, `publish`).
    pub fn redis_op(&self, op: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.redis_ops.with_label_values(&[op, result]).inc();
    }

    /// Counts one deep-resume read of a stream's log.
    pub fn log_reads(&self, ok: bool) {
        self.redis_op("history", ok);
    }

    /// Counts an upstream event whose id was already buffered.
    pub fn reused_id(&self, route: &str) {
        self.reused_ids.with_label_values(&[route]).inc();
    }

    /// Marks `kind` as the upstream kind of `route` in `pushbridge_upstream_kind` (every kind's series exists).
    pub fn set_kind(&self, route: &str, kind: &str) {
        for k in UPSTREAM_KINDS {
            self.kind
                .with_label_values(&[route, k])
                .set(i64::from(k == kind));
        }
    }
}
