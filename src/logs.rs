//! The log output ([`init`]) and its bounds. Log storms: lines that clients or the upstream can trigger at will
//! (upstream failures and reconnects, malformed events, slow subscribers, failed client messages and auth checks,
//! pass-through failures, refused cross-origin requests, the libraries' own lines: [`library`]) go through
//! a [`LogLimiter`]. In each [`INTERVAL`] at most [`PER_KEY`] lines per kind and key (a stream, an upstream) and
//! [`PER_KIND`] lines per kind are written; the rest are counted in `pushbridge_log_lines_suppressed_total{kind}`
//! and the next line written for that key carries `suppressed=N`. Memory is fixed: keys hash into [`SLOTS`] slots
//! (keys that share a slot share its budget). Text records carry no raw control character ([`escape`]).

pub mod escape;
pub mod library;

use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

use crate::config::{LogConfig, LogFormat};

/// The window over which lines are counted.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Lines per kind and key in one interval.
pub const PER_KEY: u32 = 5;
/// Lines per kind, all keys together, in one interval.
pub const PER_KIND: u32 = 20;
/// Key slots per kind.
pub const SLOTS: usize = 256;

/// A kind of rate-limited line (the metric's `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// An upstream connection attempt or session failed.
    UpstreamFailed,
    /// An upstream connected, or closed its stream (reconnect loops).
    UpstreamSession,
    /// An upstream event was skipped (over-size or malformed).
    UpstreamMalformed,
    /// A subscriber was disconnected for falling behind.
    SlowSubscriber,
    /// A client message could not be delivered.
    ClientMessage,
    /// The authorization service failed.
    AuthCheck,
    /// A pass-through request failed upstream.
    Passthrough,
    /// A client request was refused (e.g. a cross-origin page).
    Refused,
    /// A library's line (h2's rapid-reset WARN, …), keyed by call site.
    Library,
}

impl LogKind {
    pub const ALL: [LogKind; 9] = [
        LogKind::UpstreamFailed,
        LogKind::UpstreamSession,
        LogKind::UpstreamMalformed,
        LogKind::SlowSubscriber,
        LogKind::ClientMessage,
        LogKind::AuthCheck,
        LogKind::Passthrough,
        LogKind::Refused,
        LogKind::Library,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::UpstreamFailed => "upstream_failed",
            LogKind::UpstreamSession => "upstream_session",
            LogKind::UpstreamMalformed => "upstream_malformed",
            LogKind::SlowSubscriber => "slow_subscriber",
            LogKind::ClientMessage => "client_message",
            LogKind::AuthCheck => "auth_check",
            LogKind::Passthrough => "passthrough",
            LogKind::Refused => "refused",
            LogKind::Library => "library",
        }
    }
}

/// Installs the process's log output on stderr: `log.level` (`RUST_LOG` overrides it), `log.format`; library
/// lines through the limiter ([`library`]); text records with control characters escaped ([`escape`]) and in
/// colour only on a terminal.
pub fn init(log: &LogConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(library::LibraryLimit);
    let _ = match log.format {
        LogFormat::Json => registry.with(layer.json()).try_init(),
        LogFormat::Text => registry
            .with(
                layer
                    .fmt_fields(escape::EscapedFields::default())
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
    };
}

/// Lines written and suppressed in the current interval.
#[derive(Default, Clone, Copy)]
struct Budget {
    interval: u64,
    lines: u32,
    /// Suppressed since the last line written for this slot.
    suppressed: u64,
}

impl Budget {
    fn roll(&mut self, interval: u64) {
        if self.interval != interval {
            self.interval = interval;
            self.lines = 0;
        }
    }
}

struct Kind {
    total: Budget,
    slots: Box<[Budget]>,
}

/// The limiter; one per process (held by [`crate::metrics::Metrics`]).
pub struct LogLimiter {
    kinds: Mutex<Vec<Kind>>,
    hasher: std::collections::hash_map::RandomState,
    started: Instant,
    suppressed: IntCounterVec,
}

impl LogLimiter {
    /// `suppressed` is the `pushbridge_log_lines_suppressed_total{kind}` counter; its series are created here.
    pub fn new(suppressed: IntCounterVec) -> LogLimiter {
        for kind in LogKind::ALL {
            suppressed.with_label_values(&[kind.as_str()]);
        }
        let kinds = LogKind::ALL
            .iter()
            .map(|_| Kind {
                total: Budget::default(),
                slots: vec![Budget::default(); SLOTS].into_boxed_slice(),
            })
            .collect();
        LogLimiter {
            kinds: Mutex::new(kinds),
            hasher: Default::default(),
            started: Instant::now(),
            suppressed,
        }
    }

    fn slot(&self, key: &impl Hash) -> usize {
        (self.hasher.hash_one(key) as usize) % SLOTS
    }

    /// Whether a `kind` line about `key` may be written now: `Some(lines suppressed for this key since its last
    /// line)`, or `None` (counted as suppressed).
    pub fn admit(&self, kind: LogKind, key: &impl Hash) -> Option<u64> {
        let interval = (self.started.elapsed().as_millis() / INTERVAL.as_millis()) as u64;
        let slot = self.slot(key);
        let index = LogKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let admitted = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
            let Kind { total, slots } = &mut kinds[index];
            let budget = &mut slots[slot];
            total.roll(interval);
            budget.roll(interval);
            if budget.lines < PER_KEY && total.lines < PER_KIND {
                budget.lines += 1;
                total.lines += 1;
                Some(std::mem::take(&mut budget.suppressed))
            } else {
                budget.suppressed += 1;
                None
            }
        };
        if admitted.is_none() {
            self.suppressed.with_label_values(&[kind.as_str()]).inc();
        }
        admitted
    }
}

/// Writes a tracing event through a [`LogLimiter`], with a `suppressed` field:
/// `log_limited!(metrics.logs, LogKind::UpstreamFailed, key, warn!(%error, "Upstream failed"))`.
#[macro_export]
macro_rules! log_limited {
    ($limiter:expr, $kind:expr, $key:expr, $level:ident!($($arg:tt)+)) => {
        if let Some(suppressed) = $limiter.admit($kind, &$key) {
            ::tracing::$level!(suppressed, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (LogLimiter, IntCounterVec) {
        let counter = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["kind"]).unwrap();
        (LogLimiter::new(counter.clone()), counter)
    }

    #[test]
    fn per_key_budget_then_suppressed_count_in_the_next_line() {
        let (limiter, counter) = limiter();
        let kind = LogKind::UpstreamFailed;
        for _ in 0..PER_KEY {
            assert_eq!(limiter.admit(kind, &"a"), Some(0));
        }
        for _ in 0..7 {
            assert_eq!(limiter.admit(kind, &"a"), None);
        }
        assert_eq!(counter.with_label_values(&["upstream_failed"]).get(), 7);
        // Another kind and another key have their own budgets.
        assert_eq!(limiter.admit(LogKind::AuthCheck, &"a"), Some(0));
        // (Keys are hashed with a random seed: pick one that does not share "a"'s slot.)
        let other = (0..)
            .map(|n| format!("b{n}"))
            .find(|key| limiter.slot(key) != limiter.slot(&"a"))
            .unwrap();
        assert_eq!(limiter.admit(kind, &other), Some(0));
        // The next interval: the first line carries the count.
        limiter.kinds.lock().unwrap()[0]
            .slots
            .iter_mut()
            .for_each(|b| b.interval = u64::MAX);
        limiter.kinds.lock().unwrap()[0].total.interval = u64::MAX;
        assert_eq!(limiter.admit(kind, &"a"), Some(7));
        assert_eq!(limiter.admit(kind, &"a"), Some(0));
    }

    #[test]
    fn per_kind_budget_bounds_many_keys() {
        let (limiter, counter) = limiter();
        let admitted = (0..1000)
            .filter(|key| limiter.admit(LogKind::SlowSubscriber, key).is_some())
            .count();
        assert_eq!(admitted, PER_KIND as usize);
        assert_eq!(
            counter.with_label_values(&["slow_subscriber"]).get(),
            1000 - u64::from(PER_KIND)
        );
    }
}
