//! Measurement: the timestamp the upstream writes into each event's data (`ts=<unix µs>`), per-client tallies,
//! latency percentiles, and samples of a process's memory (`VmRSS` in `/proc/<pid>/status`) and CPU time
//! (`utime + stime` in `/proc/<pid>/stat`, proc(5)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The marker that precedes the send time in every event's data.
pub const TS_MARKER: &str = "ts=";

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every mainstream Linux build).
const CLOCK_TICKS: f64 = 100.0;

/// Microseconds since the Unix epoch (wall clock: the upstream may be another process).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Every send time found in `text` (a WebSocket frame or long-poll body can carry several events).
pub fn timestamps(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.match_indices(TS_MARKER).filter_map(move |(at, _)| {
        let digits = &text[at + TS_MARKER.len()..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    })
}

/// What one client saw while the measurement window was open.
#[derive(Debug, Default)]
pub struct Tally {
    pub events: u64,
    /// Delivery latency of each event, in µs.
    pub latencies: Vec<u32>,
    /// Disconnects and bad responses after the client had connected.
    pub errors: u64,
}

impl Tally {
    /// Records events carrying the send times `sent` (µs) if the window is open.
    pub fn record(&mut self, window: &Window, sent: impl Iterator<Item = u64>) {
        if !window.is_open() {
            return;
        }
        let now = now_micros();
        for sent in sent {
            self.events += 1;
            self.latencies
                .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
        }
    }

    pub fn error(&mut self, window: &Window) {
        if window.is_open() {
            self.errors += 1;
        }
    }
}

/// Whether events count: open between "every client connected" and the end of `--duration`.
#[derive(Debug, Clone, Default)]
pub struct Window(Arc<AtomicBool>);

impl Window {
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub fn set(&self, open: bool) {
        self.0.store(open, Ordering::Release);
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut micros: Vec<u32>) -> Percentiles {
        if micros.is_empty() {
            return Percentiles::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[index]) / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// A process's resident memory in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's user + system CPU time so far.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / CLOCK_TICKS,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_timestamp() {
        let text = r#"{"events":[{"data":"ts=17 xx"},{"data":"ts=42"}]}"#;
        assert_eq!(timestamps(text).collect::<Vec<_>>(), [17, 42]);
    }

    #[test]
    fn percentiles_pick_nearest_rank() {
        let p = Percentiles::of((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
    }

    #[test]
    fn reads_own_process() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(cpu_time("self").is_some());
    }
}
