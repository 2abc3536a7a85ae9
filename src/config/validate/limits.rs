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
/// Largest `admin.max_connections`.
pub const MAX_ADMIN_CONNECTIONS: usize = 1024;
/// Largest `long_poll.max_batch`.
pub const MAX_BATCH: usize = 10_000;
/// Largest `limits.max_event_bytes` and `client_messages.max_bytes`.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest connection-level timeout (`handshake_timeout`, `admin.timeout`, connect and response timeouts).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Largest interval or lifetime (`heartbeat`, `idle_timeout`, `idle_connection_timeout`, reconnect delays,
/// `shutdown.grace`, long-poll timeout).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60 * 60);
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
                "limits: { client_queue: 1000001 }\n",
                "limits.client_queue",
                "at most 1000000",
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
        ];
        for (extra, path) in stream_cases {
            let yaml = format!("{BASE}{stream}{extra}");
            let problems = Config::parse("t.yaml", &yaml).unwrap_err().problems;
            assert_eq!(problems.len(), 1, "{yaml}: {problems:#?}");
            assert_eq!(problems[0].path, path, "{yaml}");
            assert!(problems[0].message.contains("at most"), "{yaml}");
        }
        let limits = "limits: { max_connections: 1000000, handshake_timeout: 5m, idle_connection_timeout: 1h }\n";
        assert!(
            Config::parse("t.yaml", &format!("{BASE}{limits}")).is_ok(),
            "the maxima themselves pass"
        );
    }
}
