//! File descriptors: the process's open-file limit (the soft `RLIMIT_NOFILE`, from Linux's /proc/self/limits),
//! the start-up check that `limits.max_connections + limits.max_streams` fit in it, and the room a new stream
//! needs. Each stream holds an upstream socket, so a new stream is refused (503) while it would leave fewer than
//! [`reserve`] descriptors: the streams never take the last ones, and the listeners keep accepting (connections,
//! pass-through requests, the admin port). Elsewhere (no /proc) nothing is checked.

use std::sync::{Arc, OnceLock};

use crate::config::LimitsConfig;
use crate::logs::LogKind;
use crate::metrics::Metrics;
use crate::route::Route;

/// The soft open-file limit, read once; `None` when unknown or unlimited.
pub fn soft_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
    })
}

/// Descriptors kept free of streams under an open-file limit of `limit`: 1/16 of it, at least 16, at most 256.
pub fn reserve(limit: u64) -> u64 {
    (limit / 16).clamp(16, 256)
}

/// The start-up warning (`run` logs it, `check` prints it) when `max_connections + max_streams` and the
/// [`reserve`] do not fit in the open-file limit.
pub fn start_warning(limits: &LimitsConfig) -> Option<String> {
    warning(limits, soft_limit()?)
}

pub(crate) fn warning(limits: &LimitsConfig, limit: u64) -> Option<String> {
    let wanted = [limits.max_connections, limits.max_streams]
        .iter()
        .map(|&n| u64::try_from(n).unwrap_or(u64::MAX))
        .fold(reserve(limit), u64::saturating_add);
    (wanted > limit).then(|| {
        format!(
            "limits.max_connections ({}) + limits.max_streams ({}) + {} spare exceed the open-file limit ({limit}): \
             raise it (ulimit -n, LimitNOFILE) or lower them; meanwhile new streams are refused with 503 while \
             fewer than {} descriptors are free",
            limits.max_connections,
            limits.max_streams,
            reserve(limit),
            reserve(limit),
        )
    })
}

/// Logs [`start_warning`], if any, with its figures as fields.
pub fn warn_at_start(limits: &LimitsConfig) {
    if let Some(warning) = start_warning(limits) {
        tracing::warn!(
            max_connections = limits.max_connections,
            max_streams = limits.max_streams,
            open_file_limit = soft_limit(),
            "{warning}"
        );
    }
}

/// Descriptors open now: the size Linux (6.2 and later) reports for /proc/self/fd, else its entries counted.
fn open_now() -> std::io::Result<u64> {
    let size = std::fs::metadata("/proc/self/fd")?.len();
    if size > 0 {
        return Ok(size);
    }
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

/// Whether a new stream may open (its upstream socket still leaving the [`reserve`]). Streams of `routes` not
/// connected now (connecting, backing off, dormant) are counted as if they held their socket already, so a burst of
/// new streams is bounded too. A refusal is counted in `pushbridge_stream_refusals_total{limit="fds"}` and logged
/// (rate-limited).
pub fn room_for_stream(metrics: &Metrics, routes: &[Arc<Route>]) -> bool {
    let Some(limit) = soft_limit() else {
        return true;
    };
    let up: i64 = routes
        .iter()
        .map(|route| metrics.upstream.up.with_label_values(&[&route.name]).get())
        .sum();
    let pending = u64::try_from(metrics.streams_open.get() - up).unwrap_or(0);
    let open = open_now();
    let free = match &open {
        Ok(open) => limit.saturating_sub(open.saturating_add(pending)),
        // Out of descriptors to even look (only where /proc/self/fd has no size).
        Err(_) => 0,
    };
    if free > reserve(limit) {
        return true;
    }
    metrics.stream_refusals.with_label_values(&["fds"]).inc();
    crate::log_limited!(
        metrics.logs,
        LogKind::Refused,
        "fds",
        warn!(
            open_file_limit = limit,
            open = open.as_ref().ok(),
            pending,
            "New stream refused with 503: too few file descriptors left (raise ulimit -n or lower limits.max_streams)"
        )
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_descriptors_are_a_sixteenth_within_bounds() {
        let cases = [
            (64, 16),
            (1024, 64),
            (3000, 187),
            (20_000, 256),
            (1 << 20, 256),
        ];
        for (limit, spare) in cases {
            assert_eq!(reserve(limit), spare, "{limit}");
        }
    }

    #[test]
    fn the_warning_counts_connections_streams_and_the_spare() {
        let limits = |max_connections, max_streams| LimitsConfig {
            max_connections,
            max_streams,
            ..LimitsConfig::default()
        };
        assert_eq!(warning(&limits(1000, 1500), 3000), None);
        // 1000 + 1900 + 187 > 3000: the streams tip it over.
        let text = warning(&limits(1000, 1900), 3000).expect("a warning");
        assert!(
            text.contains("max_streams (1900)") && text.contains("(3000)"),
            "{text}"
        );
        assert!(warning(&limits(usize::MAX, usize::MAX), 3000).is_some());
    }
}
