//! Every numeric setting's range: zero where it makes no sense, and a documented maximum (docs/config.md,
//! "Limits"), so `check` refuses what `run` could not honour (e.g. more connection permits than a semaphore holds)
//! and no duration is large enough to overflow a deadline.

use std::time::Duration;

use super::Report;
use crate::config::schema::Config;

/// Largest `limits.max_connections` / `limits.client_queue` / `buffer.events`.
pub const MAX_COUNT: usize = 1_000_000;
/// Largest `limits.max_buffer_bytes` and `buffer.max_bytes` (64 GiB).
pub const MAX_BUFFER_BYTES: usize = 64 << 30;
/// Largest `limits.h2_max_streams_per_connection`.
pub const MAX_H2_STREAMS: usize = 1000;
/// Smallest and largest `limits.h2_send_buffer`.
pub const MIN_H2_SEND_BUFFER: usize = 1024;
pub const MAX_H2_SEND_BUFFER: usize = 1024 * 1024;
/// Largest `limits.max_key_bytes`.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Largest `admin.max_connections`.
pub const MAX_ADMIN_CONNECTIONS: usize = 1024;
/// Largest `long_poll.max_batch`.
pub const MAX_BATCH: usize = 10_000;
/// Largest `limits.max_event_bytes` and `client_messages.max_bytes`.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest connection-level timeout (`handshake_timeout`, `admin.timeout`, connect and response timeouts).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Largest interval or lifetime (`heartbeat`, `idle_connection_timeout`, reconnect delays, `shutdown.grace`,
/// long-poll timeout, `sse.retry_max`, `upstream.idle_timeout`, `poll.interval`, pass-through body and WebSocket
/// idle timeouts).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Largest `upstream.tee.maxlen` (entries a Redis stream keeps).
pub const MAX_TEE_MAXLEN: usize = 100_000_000;
/// Largest `buffer.age` and a stream's `idle_timeout`.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

impl Report<'_> {
    fn count(&mut self, path: &str, value: usize, max: usize) {
        if value == 0 {
            self.add(path, "must be at least 1");
        } else if value > max {
            self.add(path, format!("must be at most {max}"));
        }
    }

    fn at_most(&mut self, path: &str, value: usize, max: usize) {
        if value > max {
            self.add(path, format!("must be at most {max}"));
        }
    }

    fn at_most_time(&mut self, path: &str, value: Duration, max: Duration) {
        if value > max {
            let shown = humantime::format_duration(max);
            self.add(path, format!("must be at most {shown}"));
        }
    }

    fn bytes(&mut self, path: &str, value: usize) {
        if value == 0 {
            self.add(path, "must be at least 1");
        } else if value > MAX_BYTES {
            self.add(path, "must be at most 64MiB");
        }
    }

    /// More than zero and at most `max`.
    fn span(&mut self, path: &str, value: Duration, max: Duration) {
        if value.is_zero() {
            self.add(path, "must be more than zero");
        } else if value > max {
            let shown = humantime::format_duration(max);
            self.add(path, format!("must be at most {shown}"));
        }
    }
}

/// Checks every numeric setting against its range.
pub(super) fn check(config: &Config, report: &mut Report<'_>) {
    let limits = &config.limits;
    report.count("limits.max_connections", limits.max_connections, MAX_COUNT);
    report.count("limits.client_queue", limits.client_queue, MAX_COUNT);
    report.bytes("limits.max_event_bytes", limits.max_event_bytes);
    report.count(
        "limits.max_buffer_bytes",
        limits.max_buffer_bytes,
        MAX_BUFFER_BYTES,
    );
    report.count("limits.max_streams", limits.max_streams, MAX_COUNT);
    report.count(
        "limits.h2_max_streams_per_connection",
        limits.h2_max_streams_per_connection as usize,
        MAX_H2_STREAMS,
    );
    if !(MIN_H2_SEND_BUFFER..=MAX_H2_SEND_BUFFER).contains(&limits.h2_send_buffer) {
        report.add("limits.h2_send_buffer", "must be 1KiB to 1MiB");
    }
    report.count("limits.max_key_bytes", limits.max_key_bytes, MAX_KEY_BYTES);
    // Deprecated and ignored, but a file that sets it still gets its values checked as before.
    if let Some(pacing) = &limits.wake_pacing {
        report.count("limits.wake_pacing.from", pacing.from, MAX_COUNT);
        report.at_most_time(
            "limits.wake_pacing.per_subscriber",
            pacing.per_subscriber,
            Duration::from_secs(1),
        );
        report.span(
            "limits.wake_pacing.max",
            pacing.max,
            Duration::from_secs(10),
        );
    }
    report.at_most_time(
        "limits.negative_cache_ttl",
        limits.negative_cache_ttl,
        MAX_TIMEOUT,
    );
    report.span(
        "limits.handshake_timeout",
        limits.handshake_timeout,
        MAX_TIMEOUT,
    );
    report.span(
        "limits.idle_connection_timeout",
        limits.idle_connection_timeout,
        MAX_INTERVAL,
    );
    report.span(
        "limits.keepalive_interval",
        limits.keepalive_interval,
        MAX_INTERVAL,
    );
    if let Some(admin) = &config.admin {
        report.count(
            "admin.max_connections",
            admin.max_connections,
            MAX_ADMIN_CONNECTIONS,
        );
        report.span("admin.timeout", admin.timeout, MAX_TIMEOUT);
        report.span(
            "admin.ready_check_timeout",
            admin.ready_check_timeout,
            Duration::from_secs(60),
        );
        if let Some(url) = &admin.ready_check {
            report.url("admin.ready_check", url, &["http", "https"]);
        }
    }
    report.span("shutdown.grace", config.shutdown.grace, MAX_INTERVAL);
    // The zero checks of these live with the other stream rules; here only the maxima.
    if let Some(pass) = &config.passthrough {
        report.at_most_time(
            "passthrough.connect_timeout",
            pass.connect_timeout,
            MAX_TIMEOUT,
        );
        report.at_most_time(
            "passthrough.response_timeout",
            pass.response_timeout,
            MAX_INTERVAL,
        );
        report.at_most_time("passthrough.body_timeout", pass.body_timeout, MAX_INTERVAL);
        let ws = &pass.websocket;
        report.at_most_time(
            "passthrough.websocket.idle_timeout",
            ws.idle_timeout,
            MAX_INTERVAL,
        );
        report.at_most(
            "passthrough.websocket.max_message",
            ws.max_message,
            MAX_BYTES,
        );
        report.at_most(
            "passthrough.websocket.max_sessions",
            ws.max_sessions,
            MAX_COUNT,
        );
    }
    for (i, stream) in config.streams.iter().enumerate() {
        let at = |field: &str| format!("streams[{i}].{field}");
        report.at_most(&at("buffer.events"), stream.buffer.events, MAX_COUNT);
        report.at_most_time(&at("buffer.age"), stream.buffer.age, MAX_AGE);
        report.at_most_time(&at("heartbeat"), stream.heartbeat, MAX_INTERVAL);
        report.at_most_time(&at("idle_timeout"), stream.idle_timeout, MAX_AGE);
        report.at_most_time(
            &at("long_poll.timeout"),
            stream.long_poll.timeout,
            MAX_INTERVAL,
        );
        report.at_most(
            &at("long_poll.max_batch"),
            stream.long_poll.max_batch,
            MAX_BATCH,
        );
        if let Some(messages) = &stream.client_messages {
            report.at_most(
                &at("client_messages.max_bytes"),
                messages.max_bytes,
                MAX_BYTES,
            );
        }
        let upstream = &stream.upstream;
        let reconnect = &upstream.reconnect;
        report.at_most_time(
            &at("upstream.connect_timeout"),
            upstream.connect_timeout,
            MAX_TIMEOUT,
        );
        report.at_most_time(
            &at("upstream.reconnect.initial"),
            reconnect.initial,
            MAX_INTERVAL,
        );
        report.at_most_time(&at("upstream.reconnect.max"), reconnect.max, MAX_INTERVAL);
        report.at_most_time(
            &at("upstream.idle_timeout"),
            upstream.idle_timeout,
            MAX_INTERVAL,
        );
        if let Some(poll) = &upstream.poll {
            report.at_most_time(&at("upstream.poll.interval"), poll.interval, MAX_INTERVAL);
        }
        if let Some(tee) = &upstream.tee {
            report.at_most(&at("upstream.tee.maxlen"), tee.maxlen, MAX_TEE_MAXLEN);
            report.at_most(&at("upstream.tee.queue"), tee.queue, MAX_COUNT);
        }
        // sse.retry is at most sse.retry_max (checked with the stream rules).
        report.at_most_time(&at("sse.retry_max"), stream.sse.retry_max, MAX_INTERVAL);
        report.at_most(
            &at("buffer.max_bytes"),
            stream.buffer.max_bytes,
            MAX_BUFFER_BYTES,
        );
        if let Some(max) = stream.max_streams {
            report.at_most(&at("max_streams"), max, MAX_COUNT);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "listen:\n  - address: 127.0.0.1:8080\n";

    /// `(appended YAML, field path, message fragment)`: each is refused with exactly that problem.
    #[test]
    fn every_numeric_setting_has_a_maximum() {
        let stream =
            "streams:\n  - path: /e/{c}\n    upstream:\n      url: http://127.0.0.1:9/{c}\n";
        let cases = [
            (
                "limits: { max_connections: 3000000000000000000 }\n",
                "limits.max_connections",
                "at most 1000000",
            ),
            (
                "limits: { max_connections: 0 }\n",
                "limits.max_connections",
                "at least 1",
            ),
            (
                "limits: { h2_max_streams_per_connection: 1001 }\n",
                "limits.h2_max_streams_per_connection",
                "at most 1000",
            ),
            (
                "limits: { h2_max_streams_per_connection: 0 }\n",
                "limits.h2_max_streams_per_connection",
                "at least 1",
            ),
            (
                "limits: { h2_send_buffer: 100 }\n",
                "limits.h2_send_buffer",
                "1KiB to 1MiB",
            ),
            (
                "limits: { h2_send_buffer: 2MiB }\n",
                "limits.h2_send_buffer",
                "1KiB to 1MiB",
            ),
            (
                "limits: { max_key_bytes: 0 }\n",
                "limits.max_key_bytes",
                "at least 1",
            ),
            (
                "limits: { max_key_bytes: 65537 }\n",
                "limits.max_key_bytes",
                "at most 65536",
            ),
            (
                "limits: { client_queue: 1000001 }\n",
                "limits.client_queue",
                "at most 1000000",
            ),
            (
                "limits: { wake_pacing: { from: 0 } }\n",
                "limits.wake_pacing.from",
                "at least 1",
            ),
            (
                "limits: { wake_pacing: { per_subscriber: 2s } }\n",
                "limits.wake_pacing.per_subscriber",
                "at most 1s",
            ),
            (
                "limits: { wake_pacing: { max: 0s } }\n",
                "limits.wake_pacing.max",
                "more than zero",
            ),
            (
                "limits: { wake_pacing: { max: 1m } }\n",
                "limits.wake_pacing.max",
                "at most 10s",
            ),
            (
                "limits: { max_event_bytes: 1GiB }\n",
                "limits.max_event_bytes",
                "at most 64MiB",
            ),
            (
                "limits: { handshake_timeout: 1h }\n",
                "limits.handshake_timeout",
                "at most 5m",
            ),
            (
                "limits: { idle_connection_timeout: 0s }\n",
                "limits.idle_connection_timeout",
                "more than zero",
            ),
            (
                "limits: { keepalive_interval: 2h }\n",
                "limits.keepalive_interval",
                "at most 1h",
            ),
            (
                "shutdown: { grace: 100years }\n",
                "shutdown.grace",
                "at most 1h",
            ),
            (
                "admin: { address: 127.0.0.1:9090, max_connections: 5000 }\n",
                "admin.max_connections",
                "at most 1024",
            ),
            (
                "admin: { address: 127.0.0.1:9090, timeout: 0s }\n",
                "admin.timeout",
                "more than zero",
            ),
            (
                "admin: { address: 127.0.0.1:9090, ready_check: \"ftp://x\" }\n",
                "admin.ready_check",
                "http://",
            ),
            (
                "admin: { address: 127.0.0.1:9090, ready_check_timeout: 5m }\n",
                "admin.ready_check_timeout",
                "at most 1m",
            ),
        ];
        for (extra, path, fragment) in cases {
            let yaml = format!("{BASE}{extra}");
            let problems = Config::parse("t.yaml", &yaml).unwrap_err().problems;
            assert_eq!(problems.len(), 1, "{yaml}: {problems:#?}");
            assert_eq!(problems[0].path, path, "{yaml}");
            assert!(
                problems[0].message.contains(fragment),
                "{yaml}: {}",
                problems[0].message
            );
            assert!(problems[0].line > 0, "{yaml}: located");
        }
        let stream_cases = [
            (
                "    buffer: { events: 2000000 }\n",
                "streams[0].buffer.events",
            ),
            ("    buffer: { age: 30d }\n", "streams[0].buffer.age"),
            ("    heartbeat: 2h\n", "streams[0].heartbeat"),
            ("    idle_timeout: 2d\n", "streams[0].idle_timeout"),
            (
                "    long_poll: { max_batch: 20000 }\n",
                "streams[0].long_poll.max_batch",
            ),
            ("    sse: { retry_max: 2h }\n", "streams[0].sse.retry_max"),
            ("    sse: { retry: 2h }\n", "streams[0].sse.retry"),
            (
                "    buffer: { max_bytes: 100GiB }\n",
                "streams[0].buffer.max_bytes",
            ),
            ("    max_streams: 2000000\n", "streams[0].max_streams"),
            (
                "    auth: { pool_idle_timeout: 2h }\n",
                "streams[0].auth.pool_idle_timeout",
            ),
            (
                "    auth: { pool_max_idle: 100000 }\n",
                "streams[0].auth.pool_max_idle",
            ),
        ];
        for (extra, path) in stream_cases {
            let yaml = format!("{BASE}{stream}{extra}");
            let problems = Config::parse("t.yaml", &yaml).unwrap_err().problems;
            assert_eq!(problems.len(), 1, "{yaml}: {problems:#?}");
            assert_eq!(problems[0].path, path, "{yaml}");
            assert!(problems[0].message.contains("at most"), "{yaml}");
        }
        // Keys inside `upstream:` (the base stream's upstream block is replaced).
        let upstream_cases = [
            ("idle_timeout: 2h", "streams[0].upstream.idle_timeout"),
            (
                "kind: poll, poll: { interval: 2h }",
                "streams[0].upstream.poll.interval",
            ),
            (
                "tee: { url: \"redis://127.0.0.1\", key: \"k\", maxlen: 200000000 }",
                "streams[0].upstream.tee.maxlen",
            ),
            (
                "tee: { url: \"redis://127.0.0.1\", key: \"k\", queue: 2000000 }",
                "streams[0].upstream.tee.queue",
            ),
        ];
        for (extra, path) in upstream_cases {
            let yaml = format!(
                "{BASE}streams:\n  - path: /e/{{c}}\n    upstream: {{ url: \"http://127.0.0.1:9/{{c}}\", {extra} }}\n"
            );
            let problems = Config::parse("t.yaml", &yaml).unwrap_err().problems;
            assert_eq!(problems.len(), 1, "{yaml}: {problems:#?}");
            assert_eq!(problems[0].path, path, "{yaml}");
            assert!(problems[0].message.contains("at most"), "{yaml}");
        }
        let pass = "passthrough:\n  upstream: http://127.0.0.1:9\n";
        let pass_cases = [
            ("  body_timeout: 2h\n", "passthrough.body_timeout"),
            (
                "  websocket: { idle_timeout: 2h }\n",
                "passthrough.websocket.idle_timeout",
            ),
            (
                "  websocket: { max_message: 1GiB }\n",
                "passthrough.websocket.max_message",
            ),
            (
                "  websocket: { max_sessions: 2000000 }\n",
                "passthrough.websocket.max_sessions",
            ),
        ];
        for (extra, path) in pass_cases {
            let yaml = format!("{BASE}{pass}{extra}");
            let problems = Config::parse("t.yaml", &yaml).unwrap_err().problems;
            assert_eq!(problems.len(), 1, "{yaml}: {problems:#?}");
            assert_eq!(problems[0].path, path, "{yaml}");
            assert!(problems[0].message.contains("at most"), "{yaml}");
        }
        let ttl = "limits: { negative_cache_ttl: 10m }\n";
        let problems = Config::parse("t.yaml", &format!("{BASE}{ttl}"))
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].path, "limits.negative_cache_ttl");
        let off = "limits: { negative_cache_ttl: 0s }\n";
        assert!(
            Config::parse("t.yaml", &format!("{BASE}{off}")).is_ok(),
            "0 = off"
        );
        let limits = "limits: { max_connections: 1000000, handshake_timeout: 5m, idle_connection_timeout: 1h }\n";
        assert!(
            Config::parse("t.yaml", &format!("{BASE}{limits}")).is_ok(),
            "the maxima themselves pass"
        );
    }
}
