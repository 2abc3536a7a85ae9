//! Every duration's floor: a value above zero but below it (`heartbeat: 1ns`, a 1 µs timeout) would turn a
//! timer into a busy loop or a timeout no network can meet, so `check` refuses it. Zero keeps its meaning (off,
//! or refused by the key's own rule); the maxima live in `limits`.

use std::time::Duration;

use super::Report;
use crate::config::schema::Config;

/// The floor of every timeout, lifetime and delay not listed below.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Floor of a stream's `heartbeat` and `limits.keepalive_interval` (each tick writes to every client).
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Floor of `upstream.reconnect.*` and `upstream.poll.interval` (each tick is an upstream request).
pub const MIN_UPSTREAM_DELAY: Duration = Duration::from_millis(10);
/// Floor of `limits.wake_pacing.per_subscriber` (multiplied by thousands of subscribers).
pub const MIN_PACE: Duration = Duration::from_micros(1);

impl Report<'_> {
    fn floor(&mut self, path: &str, value: Duration, floor: Duration) {
        if !value.is_zero() && value < floor {
            let shown = humantime::format_duration(floor);
            self.add(path, format!("must be at least {shown}"));
        }
    }
}

/// Checks every duration of `config` against its floor.
pub(super) fn check(config: &Config, report: &mut Report<'_>) {
    let limits = &config.limits;
    report.floor(
        "limits.handshake_timeout",
        limits.handshake_timeout,
        MIN_DURATION,
    );
    report.floor(
        "limits.idle_connection_timeout",
        limits.idle_connection_timeout,
        MIN_DURATION,
    );
    report.floor(
        "limits.keepalive_interval",
        limits.keepalive_interval,
        MIN_HEARTBEAT,
    );
    report.floor(
        "limits.negative_cache_ttl",
        limits.negative_cache_ttl,
        MIN_DURATION,
    );
    if let Some(pacing) = &limits.wake_pacing {
        report.floor(
            "limits.wake_pacing.per_subscriber",
            pacing.per_subscriber,
            MIN_PACE,
        );
        report.floor("limits.wake_pacing.max", pacing.max, MIN_DURATION);
    }
    report.floor("shutdown.grace", config.shutdown.grace, MIN_DURATION);
    if let Some(admin) = &config.admin {
        report.floor("admin.timeout", admin.timeout, MIN_DURATION);
        report.floor(
            "admin.ready_check_timeout",
            admin.ready_check_timeout,
            MIN_DURATION,
        );
    }
    if let Some(pass) = &config.passthrough {
        for (key, value) in [
            ("connect_timeout", pass.connect_timeout),
            ("response_timeout", pass.response_timeout),
            ("body_timeout", pass.body_timeout),
            ("websocket.idle_timeout", pass.websocket.idle_timeout),
        ] {
            report.floor(&format!("passthrough.{key}"), value, MIN_DURATION);
        }
    }
    for (i, stream) in config.streams.iter().enumerate() {
        let upstream = &stream.upstream;
        let mut durations = vec![
            ("buffer.age", stream.buffer.age, MIN_DURATION),
            ("heartbeat", stream.heartbeat, MIN_HEARTBEAT),
            ("idle_timeout", stream.idle_timeout, MIN_DURATION),
            ("long_poll.timeout", stream.long_poll.timeout, MIN_DURATION),
            ("sse.retry", stream.sse.retry, MIN_DURATION),
            ("sse.retry_max", stream.sse.retry_max, MIN_DURATION),
            (
                "upstream.connect_timeout",
                upstream.connect_timeout,
                MIN_DURATION,
            ),
            ("upstream.idle_timeout", upstream.idle_timeout, MIN_DURATION),
            (
                "upstream.reconnect.initial",
                upstream.reconnect.initial,
                MIN_UPSTREAM_DELAY,
            ),
            (
                "upstream.reconnect.max",
                upstream.reconnect.max,
                MIN_UPSTREAM_DELAY,
            ),
        ];
        if let Some(poll) = &upstream.poll {
            durations.push(("upstream.poll.interval", poll.interval, MIN_UPSTREAM_DELAY));
        }
        if let Some(auth) = &stream.auth {
            durations.push((
                "auth.pool_idle_timeout",
                auth.pool_idle_timeout,
                MIN_DURATION,
            ));
        }
        for (key, value, floor) in durations {
            report.floor(&format!("streams[{i}].{key}"), value, floor);
        }
    }
}
