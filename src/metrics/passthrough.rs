//! Series of the pass-through proxy: responses by class, relayed WebSocket sessions, refusals.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

use super::reg::{Reg, Result};
use super::{CLOSE_REASONS, HTTP_VERSIONS};

pub struct PassthroughMetrics {
    /// Pass-through responses by status class (1xx … 5xx; 1xx: a WebSocket upgrade).
    pub requests: IntCounterVec,
    /// Open pass-through WebSocket sessions by client HTTP version.
    pub ws_open: IntGaugeVec,
    /// Pass-through WebSocket sessions opened, by client HTTP version.
    pub ws_total: IntCounterVec,
    /// Pass-through WebSocket sessions ended, by reason ([`CLOSE_REASONS`]).
    pub ws_closes: IntCounterVec,
    /// Pass-through request bodies cut for arriving too slowly after the response ended.
    pub body_timeouts: IntCounter,
    /// Pass-through WebSocket handshakes refused at `websocket.max_sessions`.
    pub ws_refused: IntCounter,
    /// Pass-through requests refused for naming one of the application's internal URLs.
    pub internal_refused: IntCounter,
}

impl PassthroughMetrics {
    pub(super) fn new(reg: &Reg) -> Result<PassthroughMetrics> {
        let metrics = PassthroughMetrics {
            requests: reg.counter_vec(
                "pushbridge_passthrough_requests_total",
                "Pass-through responses by status class.",
                &["class"],
            )?,
            ws_open: reg.gauge_vec(
                "pushbridge_passthrough_websockets_open",
                "Open pass-through WebSocket sessions.",
                &["http_version"],
            )?,
            ws_total: reg.counter_vec(
                "pushbridge_passthrough_websockets_total",
                "Pass-through WebSocket sessions opened.",
                &["http_version"],
            )?,
            ws_closes: reg.counter_vec(
                "pushbridge_passthrough_websocket_closes_total",
                "Pass-through WebSocket sessions ended, by reason.",
                &["reason"],
            )?,
            body_timeouts: reg.counter(
                "pushbridge_passthrough_body_timeouts_total",
                "Pass-through request bodies cut for arriving too slowly after the response ended.",
            )?,
            ws_refused: reg.counter(
                "pushbridge_passthrough_websocket_refusals_total",
                "Pass-through WebSocket handshakes refused for too many open sessions.",
            )?,
            internal_refused: reg.counter(
                "pushbridge_passthrough_internal_refused_total",
                "Pass-through requests refused (404) for a path the configuration uses as an internal URL of the application.",
            )?,
        };
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            metrics.requests.with_label_values(&[class]);
        }
        for version in HTTP_VERSIONS {
            metrics.ws_open.with_label_values(&[version]);
            metrics.ws_total.with_label_values(&[version]);
        }
        for reason in CLOSE_REASONS {
            metrics.ws_closes.with_label_values(&[reason]);
        }
        Ok(metrics)
    }
}
