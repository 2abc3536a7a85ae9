//! Series of the publish API (`kind: publish` routes' POST endpoint).

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::PUBLISH_RESULTS;
use super::reg::{Reg, Result};

pub struct PublishMetrics {
    /// Publish requests by route (`""`: no route matched) and result (`PUBLISH_RESULTS`).
    pub requests: IntCounterVec,
    /// Seconds from a publish request's arrival to its events handed to subscribers (or acknowledged by Redis).
    pub latency: HistogramVec,
    /// `Idempotency-Key`s forgotten before `buffer.age` to stay within the process's bound.
    pub idempotency_evictions: IntCounter,
    /// Bytes of publish request bodies being read or held, all requests together.
    pub body_bytes: IntGauge,
    /// Publish requests refused with 503 because the bodies in flight reached their budget.
    pub body_budget_refusals: IntCounter,
}

impl PublishMetrics {
    pub(super) fn new(reg: &Reg) -> Result<PublishMetrics> {
        Ok(PublishMetrics {
            requests: reg.counter_vec(
                "pushbridge_published_total",
                "Publish requests by route and result.",
                &["route", "result"],
            )?,
            latency: reg.histogram_vec(
                "pushbridge_publish_latency_seconds",
                "Seconds from a publish request's arrival to its events handed to subscribers (Redis routes: acknowledged by Redis).",
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
                &["route"],
            )?,
            idempotency_evictions: reg.counter(
                "pushbridge_publish_idempotency_evictions_total",
                "Idempotency-Keys of kind: publish routes forgotten before buffer.age to stay within the process's bound.",
            )?,
            body_bytes: reg.gauge(
                "pushbridge_publish_body_bytes",
                "Bytes of publish request bodies being read or held, all requests together.",
            )?,
            body_budget_refusals: reg.counter(
                "pushbridge_publish_body_budget_refusals_total",
                "Publish requests answered 503 because the bodies in flight reached their budget (64 MiB).",
            )?,
        })
    }

    /// Creates the per-route series (and the no-route one) so they read 0.
    pub(super) fn add_routes(&self, routes: &[String]) {
        for route in routes.iter().map(String::as_str).chain([""]) {
            for result in PUBLISH_RESULTS {
                self.requests.with_label_values(&[route, result]);
            }
        }
        for route in routes {
            self.latency.with_label_values(&[route]);
        }
    }
}
