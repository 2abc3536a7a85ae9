//! Measurement: the source number, sequence number and timestamp the source writes into each event's data
//! (`[src=<p> ]seq=<n> ts=<unix µs>`; concurrent publishers each number their own events), per-client tallies (latency, missing and duplicated events), latency percentiles,
//! and samples of processes' memory (`VmRSS` in `/proc/<pid>/status`) and CPU time (`utime + stime` in
//! `/proc/<pid>/stat`, proc(5)).
//!
//! Missing and duplicated, per source: a received seq not greater than the client's last one of the same source is a
//! duplicate. The events every client owes are those the sources stamped inside `[window open, window close −
//! grace]`; per source the lowest and highest seq in that span (from the sources' log, or else as all clients saw
//! them) bound them, and each client's missing count is the sum of those ranges' sizes minus the distinct in-span
//! events it received while the window was open.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;

/// The marker that precedes the send time in every event's data.
pub const TS_MARKER: &str = "ts=";
/// The marker that precedes the source's sequence number (1, 2, …) in every event's data.
pub const SEQ_MARKER: &str = "seq=";
/// The marker that precedes the number of the source (a publisher of several; absent: 0) before `seq=`.
pub const SRC_MARKER: &str = "src=";
/// Sources told apart; a larger `src=` is not counted (its seq is ignored).
pub const MAX_SOURCES: usize = 1024;
/// Longest partial SSE event the scanner keeps between chunks.
const MAX_CARRY: usize = 1 << 20;

static SEQ_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SEQ_MARKER));
static SRC_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SRC_MARKER));
static TS_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(TS_MARKER));
static BLANK_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));

/// What the source wrote into one event: its source, sequence number (absent from old sources) and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub src: usize,
    pub seq: Option<u64>,
    pub ts: u64,
}

/// Leading ASCII digits of `bytes` as a number.
fn digits(bytes: &[u8]) -> Option<u64> {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    if end == 0 || end > 19 {
        return None;
    }
    bytes[..end].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The first `src=`/`seq=`/`ts=` stamp in `bytes` (one event's data, or a whole SSE event block); `None` without
/// `ts=`.
pub fn stamp(bytes: &[u8]) -> Option<Stamp> {
    let seq_at = SEQ_FINDER.find(bytes);
    let mut seq = seq_at.and_then(|at| digits(&bytes[at + SEQ_MARKER.len()..]));
    let src = seq_at
        .and_then(|at| SRC_FINDER.find(&bytes[..at]))
        .map_or(Some(0), |at| digits(&bytes[at + SRC_MARKER.len()..]));
    let src = match src.and_then(|n| usize::try_from(n).ok()) {
        Some(src) if src < MAX_SOURCES => src,
        _ => {
            seq = None;
            0
        }
    };
    let from = seq_at.map_or(0, |at| at + SEQ_MARKER.len());
    let ts_at = from + TS_FINDER.find(&bytes[from..])?;
    let ts = digits(&bytes[ts_at + TS_MARKER.len()..])?;
    Some(Stamp { src, seq, ts })
}

/// Per source: the lowest and highest seq (`(u64::MAX, 0)`: none).
pub type Spans = Vec<(u64, u64)>;

/// Source `src`'s entry of a per-source vector, grown as needed.
fn of<T: Clone>(v: &mut Vec<T>, src: usize, empty: T) -> &mut T {
    if v.len() <= src {
        v.resize(src + 1, empty);
    }
    &mut v[src]
}

/// Widens `spans[src]` to take `seq`.
fn widen(spans: &mut Spans, src: usize, seq: u64) {
    let span = of(spans, src, (u64::MAX, 0));
    *span = (span.0.min(seq), span.1.max(seq));
}

/// Splits an SSE byte stream into event blocks (ending at a blank line, `\n\n`) without allocating per event:
/// complete blocks are handed out as slices of the chunk; only a trailing partial block is copied and kept.
#[derive(Debug, Default)]
pub struct SseScanner {
    carry: Vec<u8>,
}

impl SseScanner {
    /// Feeds one chunk, calling `on_block` for every complete block. Errs (and forgets the partial block) if one
    /// block outgrows [`MAX_CARRY`].
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_block: impl FnMut(&[u8]),
    ) -> Result<(), &'static str> {
        let mut rest = chunk;
        if !self.carry.is_empty() {
            let straddles = self.carry.last() == Some(&b'\n') && rest.first() == Some(&b'\n');
            let end = if straddles {
                Some(1)
            } else {
                BLANK_LINE.find(rest).map(|at| at + 2)
            };
            let Some(end) = end else {
                self.carry.extend_from_slice(rest);
                return self.check_carry();
            };
            self.carry.extend_from_slice(&rest[..end]);
            on_block(&self.carry);
            self.carry.clear();
            rest = &rest[end..];
        }
        while let Some(at) = BLANK_LINE.find(rest) {
            on_block(&rest[..at + 2]);
            rest = &rest[at + 2..];
        }
        self.carry.extend_from_slice(rest);
        self.check_carry()
    }

    fn check_carry(&mut self) -> Result<(), &'static str> {
        if self.carry.len() > MAX_CARRY {
            self.carry = Vec::new();
            return Err("SSE event larger than 1 MiB");
        }
        Ok(())
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every mainstream Linux build).
const CLOCK_TICKS: f64 = 100.0;

/// Microseconds since the Unix epoch (wall clock: the upstream may be another process).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What one client saw: events and latencies while the measurement window was open, and its seq accounting
/// from the moment it connected.
#[derive(Debug, Default)]
pub struct Tally {
    pub events: u64,
    /// Delivery latency of each event, in µs.
    pub latencies: Vec<u32>,
    /// Disconnects and bad responses after the client had connected.
    pub errors: u64,
    /// Events whose seq was not greater than the last one this client received of their source (from connect to
    /// window close).
    pub duplicated: u64,
    /// Distinct events stamped inside the window's span and received while it was open.
    pub in_span: u64,
    /// Per source, the lowest and highest seq this client saw stamped inside the span.
    pub spans: Spans,
    /// Per source, the last seq received.
    last_seq: Vec<u64>,
    /// WebSocket messages received while the window was open: their payload bytes as sent (compressed or not)
    /// and as read (inflated), and how many were compressed.
    pub wire_bytes: u64,
    pub message_bytes: u64,
    pub compressed: u64,
    /// WebSocket connections on which the server accepted permessage-deflate.
    pub deflate_sessions: u64,
}

impl Tally {
    /// Records one received event.
    pub fn record(&mut self, window: &Window, stamp: Stamp) {
        let open = window.is_open();
        let fresh = match stamp.seq {
            Some(seq) => {
                let last = of(&mut self.last_seq, stamp.src, 0);
                if seq <= *last {
                    if !window.is_closed() {
                        self.duplicated += 1;
                    }
                    false
                } else {
                    *last = seq;
                    true
                }
            }
            None => true,
        };
        if let Some(seq) = stamp.seq
            && window.in_span(stamp.ts)
        {
            widen(&mut self.spans, stamp.src, seq);
            if open && fresh {
                self.in_span += 1;
            }
        }
        if open {
            self.events += 1;
            let latency = now_micros().saturating_sub(stamp.ts);
            self.latencies.push(latency.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// Counts one WebSocket message of `wire` payload bytes, `message` once inflated (the same when not
    /// compressed).
    pub fn payload(&mut self, window: &Window, wire: usize, message: usize) {
        if window.is_open() {
            self.wire_bytes += wire as u64;
            self.message_bytes += message as u64;
            self.compressed += u64::from(wire != message);
        }
    }

    pub fn error(&mut self, window: &Window) {
        if window.is_open() {
            self.errors += 1;
        }
    }
}

/// Missing events over all clients, and the events each owes: per source every seq in `published` (the sources'
/// own record, `Window::owed_range`) or else in the span as all clients together saw it.
pub fn missing<'a>(
    tallies: impl Iterator<Item = &'a Tally> + Clone,
    published: Option<Spans>,
) -> (u64, u64) {
    let spans = published.unwrap_or_else(|| {
        let mut spans = Spans::new();
        for tally in tallies.clone() {
            for (src, &(low, high)) in tally.spans.iter().enumerate() {
                if high >= low {
                    widen(&mut spans, src, low);
                    widen(&mut spans, src, high);
                }
            }
        }
        spans
    });
    let owed: u64 = spans
        .iter()
        .map(|&(low, high)| if high >= low { high - low + 1 } else { 0 })
        .sum();
    let missing = tallies.map(|t| owed.saturating_sub(t.in_span)).sum();
    (missing, owed)
}

/// The measurement window: open between "every client connected" and the end of `--duration`; events the source
/// stamped between its opening and `closing − grace` (the span, wall-clock µs) are owed to every client.
#[derive(Debug, Clone, Default)]
pub struct Window(Arc<WindowState>);

#[derive(Debug, Default)]
struct WindowState {
    open: AtomicBool,
    closed: AtomicBool,
    span_from: AtomicU64,
    span_to: AtomicU64,
}

impl Window {
    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::Acquire)
    }

    fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    fn in_span(&self, ts: u64) -> bool {
        ts >= self.0.span_from.load(Ordering::Relaxed)
            && ts <= self.0.span_to.load(Ordering::Relaxed)
    }

    /// Opens the window now for `duration`, owing the events stamped until `duration − grace` from now.
    pub fn open(&self, duration: Duration, grace: Duration) {
        let now = now_micros();
        let span = duration.saturating_sub(grace).as_micros() as u64;
        self.0.span_from.store(now, Ordering::Relaxed);
        self.0.span_to.store(now + span, Ordering::Relaxed);
        self.0.open.store(true, Ordering::Release);
    }

    /// Per source, the lowest and highest seq of the sources' log (`<seq> <ts>[ <src>]` lines) stamped inside
    /// the span (none: owing nothing).
    pub fn owed_range(&self, log: &str) -> Spans {
        let mut spans = Spans::new();
        for line in log.lines() {
            let mut fields = line.split_whitespace().map(str::parse::<u64>);
            let (Some(Ok(seq)), Some(Ok(ts))) = (fields.next(), fields.next()) else {
                continue;
            };
            let src = match fields.next() {
                None => 0,
                Some(Ok(src)) if src < MAX_SOURCES as u64 => src as usize,
                Some(_) => continue,
            };
            if self.in_span(ts) {
                widen(&mut spans, src, seq);
            }
        }
        spans
    }

    pub fn close(&self) {
        self.0.open.store(false, Ordering::Release);
        self.0.closed.store(true, Ordering::Release);
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

/// The summed resident memory of `pids` in KiB (`None` if any is unreadable or none is given).
pub fn rss_kib_sum(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss_kib(pid)).sum()
}

/// The summed CPU time of `pids`.
pub fn cpu_time_sum(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| cpu_time(&pid.to_string())).sum()
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
    fn reads_seq_and_timestamp() {
        let block = b"id: 7\nevent: tick\ndata: seq=7 ts=1700000000000001 xxx\n\n";
        assert_eq!(
            stamp(block),
            Some(Stamp {
                src: 0,
                seq: Some(7),
                ts: 1_700_000_000_000_001
            })
        );
        assert_eq!(
            stamp(b"data: src=3 seq=9 ts=5 x"),
            Some(Stamp {
                src: 3,
                seq: Some(9),
                ts: 5
            })
        );
        assert_eq!(
            stamp(b"src=5000 seq=9 ts=5"),
            Some(Stamp {
                src: 0,
                seq: None,
                ts: 5
            })
        );
        assert_eq!(
            stamp(b"ts=42 xx"),
            Some(Stamp {
                src: 0,
                seq: None,
                ts: 42
            })
        );
        assert_eq!(stamp(b":\n\n"), None);
        assert_eq!(stamp(b"seq=3 xx"), None);
        assert_eq!(
            stamp(b"seq=99999999999999999999 ts=1"),
            Some(Stamp {
                src: 0,
                seq: None,
                ts: 1
            })
        );
    }

    fn scan(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut scanner = SseScanner::default();
        let mut blocks = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |b| blocks.push(b.to_vec())).unwrap();
        }
        blocks
    }

    #[test]
    fn scanner_splits_blocks_across_chunks() {
        let stream = b":\n\ndata: seq=1 ts=5\n\nid: 2\ndata: seq=2 ts=6\n\n";
        let whole = scan(&[stream]);
        assert_eq!(whole.len(), 3);
        // Every split point, including between the two newlines of a boundary, gives the same blocks.
        for at in 0..=stream.len() {
            assert_eq!(
                scan(&[&stream[..at], &stream[at..]]),
                whole,
                "split at {at}"
            );
        }
        let one_byte: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&one_byte), whole);
        let stamps: Vec<_> = whole
            .iter()
            .filter_map(|b| stamp(b))
            .map(|s| s.seq)
            .collect();
        assert_eq!(stamps, [Some(1), Some(2)]);
    }

    #[test]
    fn scanner_bounds_a_partial_block() {
        let mut scanner = SseScanner::default();
        let big = vec![b'x'; MAX_CARRY + 1];
        assert!(scanner.feed(&big, |_| {}).is_err());
        let mut blocks = 0;
        scanner.feed(b"data: ts=1\n\n", |_| blocks += 1).unwrap();
        assert_eq!(blocks, 1);
    }

    fn at(seq: u64, ts: u64) -> Stamp {
        Stamp {
            src: 0,
            seq: Some(seq),
            ts,
        }
    }

    #[test]
    fn counts_missing_and_duplicated() {
        let window = Window::default();
        let (mut a, mut b) = (Tally::default(), Tally::default());
        // Before the window: tracked for duplicates, not owed.
        a.record(&window, at(1, 1));
        a.record(&window, at(1, 1));
        window.open(Duration::from_secs(10), Duration::from_secs(2));
        let from = window.0.span_from.load(Ordering::Relaxed);
        let to = window.0.span_to.load(Ordering::Relaxed);
        for seq in 2..=10 {
            a.record(&window, at(seq, from + seq));
        }
        a.record(&window, at(9, from + 9)); // a replay: duplicated
        for seq in (2..=10).filter(|s| *s != 5) {
            b.record(&window, at(seq, from + seq));
        }
        b.record(&window, at(11, to + 1)); // stamped after the span: not owed
        window.close();
        b.record(&window, at(11, to + 1)); // after the close: not counted at all
        assert_eq!((a.duplicated, b.duplicated), (2, 0));
        assert_eq!((a.in_span, b.in_span), (9, 8));
        assert_eq!(missing([&a, &b].into_iter(), None), (1, 9));
        // The source's log says seq 11 was stamped inside the span too: both owe it.
        let log = format!(
            "1 1\n2 {}\n10 {}\n11 {}\n12 {}\n",
            from + 2,
            from + 10,
            to,
            to + 1
        );
        assert_eq!(window.owed_range(&log), [(2, 11)]);
        assert_eq!(missing([&a, &b].into_iter(), Some(vec![(2, 11)])), (3, 10));
        assert_eq!(a.events, 10);
    }

    #[test]
    fn a_silent_client_owes_the_whole_span() {
        let window = Window::default();
        window.open(Duration::from_secs(4), Duration::from_secs(2));
        let from = window.0.span_from.load(Ordering::Relaxed);
        let mut a = Tally::default();
        for seq in 1..=3 {
            a.record(&window, at(seq, from + seq));
        }
        let silent = Tally::default();
        assert_eq!(missing([&a, &silent].into_iter(), None), (3, 3));
        // Nobody received anything (a server seconds behind): only the source's log knows what was owed.
        let log = format!("1 {}\n2 {}\n", from + 1, from + 2);
        let range = window.owed_range(&log);
        assert_eq!(range, [(1, 2)]);
        let nothing = [Tally::default(), Tally::default()];
        assert_eq!(missing(nothing.iter(), Some(range)), (4, 2));
    }

    #[test]
    fn sources_are_counted_apart() {
        let window = Window::default();
        window.open(Duration::from_secs(10), Duration::from_secs(2));
        let from = window.0.span_from.load(Ordering::Relaxed);
        let stamp = |src, seq| Stamp {
            src,
            seq: Some(seq),
            ts: from + seq,
        };
        let mut a = Tally::default();
        // Two publishers interleaved: neither's events count as the other's duplicates.
        for (src, seq) in [(0, 1), (1, 1), (1, 2), (0, 2), (0, 3), (1, 3), (1, 3)] {
            a.record(&window, stamp(src, seq));
        }
        assert_eq!((a.duplicated, a.in_span), (1, 6));
        let mut b = Tally::default();
        for (src, seq) in [(0, 1), (0, 3), (1, 1), (1, 2)] {
            b.record(&window, stamp(src, seq));
        }
        assert_eq!(missing([&a, &b].into_iter(), None), (2, 6));
        let log = format!("1 {0} 0\n3 {0} 0\n1 {0} 1\n4 {0} 1\n", from + 1);
        let spans = window.owed_range(&log);
        assert_eq!(spans, [(1, 3), (1, 4)]);
        assert_eq!(missing([&a, &b].into_iter(), Some(spans)), (4, 7));
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
