//! Deep resume: a stream whose upstream is an ordered, durable log (Redis Streams, ids `ms-seq`) serves a client
//! whose last id is older than the ring from that log, in bounded batches, then joins the ring exactly after the
//! last id delivered. A gap notice only when the log itself no longer has what follows the id (trimmed), once.
//!
//! The upstream connector sets the stream's [`History`] ([`Stream::set_history`]); the subscription consults it
//! when the ring does not hold the resume id (docs/protocol.md, "Deep resume").

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::stream::{Published, Stream};
use super::{lock, ring::Ring};
use crate::event::Event;

/// Most entries read from the log per batch.
pub const HISTORY_BATCH: usize = 256;
/// Pause after a failed log read before the next try (the client keeps its heartbeats meanwhile).
pub const HISTORY_RETRY: Duration = Duration::from_millis(500);
/// The sequence number of events read from the log (never a ring position; never counted as live).
pub const HISTORY_SEQ: u64 = u64::MAX;

/// Where a log read stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// Before this id (the oldest event the ring holds).
    Before(String),
    /// At this id, included (the newest the upstream connector has read).
    At(String),
}

/// One entry of a log read: its id, and its event unless the entry is malformed (skipped, but read past).
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub id: String,
    pub event: Option<Published>,
}

/// An ordered, durable event log that a stream's ring continues.
pub trait History: Send + Sync + 'static {
    /// For the connector that set it to find its own log again (an upstream restarted after dormancy).
    fn as_any(&self) -> &dyn std::any::Any;
    /// The newest id the upstream connector has read or started after (`None` until it has connected once): every
    /// later entry reaches the ring.
    fn frontier(&self) -> watch::Receiver<Option<Arc<str>>>;
    /// Whether entries after `after` were removed from the log (trimmed or deleted).
    fn trimmed_after(&self, after: String) -> BoxFuture<'static, Result<bool, String>>;
    /// Up to `max` entries after `after` (exclusive), oldest first, none past `until`.
    fn range(
        &self,
        after: String,
        until: Until,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<LogEntry>, String>>;
}

/// An id of an ordered log: `ms-seq` (Redis Streams), compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogId(u64, u64);

impl LogId {
    /// `ms-seq` or `ms` (sequence 0); anything else is not a log id.
    pub fn parse(id: &str) -> Option<LogId> {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(ms) && digits(seq)).then(|| Some(LogId(ms.parse().ok()?, seq.parse().ok()?)))?
    }
}

/// What the subscription does next.
pub(super) enum Step {
    Gap(String),
    Events(Vec<Arc<Event>>),
    /// Caught up: read the ring from this sequence number on.
    Join(u64),
    Closed,
}

enum Pending {
    Trimmed(BoxFuture<'static, Result<bool, String>>),
    Range(BoxFuture<'static, Result<Vec<LogEntry>, String>>),
}

/// A subscriber being served from the log. Cancel-safe: a read in flight is kept across `next()` calls.
pub(super) struct DeepResume {
    history: Arc<dyn History>,
    /// The last id delivered (at first the client's resume id).
    last: String,
    last_key: LogId,
    trim_checked: bool,
    /// The previous read found nothing more before the ring: join it.
    drained: bool,
    pending: Option<Pending>,
    /// How many entries the read in flight asked for (fewer back: it reached its end).
    asked: usize,
    retry_at: Option<tokio::time::Instant>,
}

impl DeepResume {
    pub(super) fn new(history: Arc<dyn History>, last: String, last_key: LogId) -> DeepResume {
        DeepResume {
            history,
            last,
            last_key,
            trim_checked: false,
            drained: false,
            pending: None,
            asked: 0,
            retry_at: None,
        }
    }

    /// The id to resume from to continue exactly here.
    pub(super) fn position(&self) -> &str {
        &self.last
    }

    /// The last id delivered (at first the client's resume id), parsed.
    pub(super) fn last_key(&self) -> LogId {
        self.last_key
    }

    pub(super) async fn next(&mut self, stream: &Stream, max: usize) -> Step {
        loop {
            if stream.is_closed() {
                return Step::Closed;
            }
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            match self.pending.as_mut() {
                Some(Pending::Trimmed(read)) => {
                    let result = read.await;
                    self.pending = None;
                    match result {
                        Ok(trimmed) => {
                            self.trim_checked = true;
                            stream.metrics.upstream.log_reads(true);
                            if trimmed {
                                stream.metrics.resumes.with_label_values(&["gap"]).inc();
                                stream.metrics.resumes_gap.inc();
                                return Step::Gap(self.last.clone());
                            }
                            stream.metrics.resumes.with_label_values(&["log"]).inc();
                        }
                        Err(error) => self.failed(stream, &error),
                    }
                    continue;
                }
                Some(Pending::Range(read)) => {
                    let result = read.await;
                    self.pending = None;
                    match result {
                        Ok(entries) => {
                            stream.metrics.upstream.log_reads(true);
                            self.drained = entries.len() < self.asked;
                            let events = self.deliver(entries);
                            if !events.is_empty() {
                                return Step::Events(events);
                            }
                        }
                        Err(error) => self.failed(stream, &error),
                    }
                    continue;
                }
                None => {}
            }
            if !self.trim_checked {
                let read = self.history.trimmed_after(self.last.clone());
                self.pending = Some(Pending::Trimmed(read));
                continue;
            }
            let until = {
                let inner = lock(&stream.inner);
                match self.plan(&inner.ring) {
                    Ok(seq) => return Step::Join(seq),
                    Err(until) => until,
                }
            };
            let until = match until {
                Some(until) => until,
                None => {
                    // The connector has not connected yet: wait for its first position.
                    let mut frontier = self.history.frontier();
                    let _ = frontier.wait_for(Option::is_some).await;
                    let Some(at) = frontier.borrow().clone() else {
                        continue;
                    };
                    if LogId::parse(&at).is_none_or(|at| at <= self.last_key) {
                        self.drained = true;
                        continue;
                    }
                    Until::At(at.to_string())
                }
            };
            self.asked = max.clamp(1, HISTORY_BATCH);
            let read = self.history.range(self.last.clone(), until, self.asked);
            self.pending = Some(Pending::Range(read));
        }
    }

    /// Under the ring lock: `Ok(seq)` to join the ring there, or `Err(until)` for the next log read (`None`: the
    /// ring is empty and the connector's position is not known yet).
    fn plan(&self, ring: &Ring) -> Result<u64, Option<Until>> {
        let mut held = Vec::new();
        ring.read(ring.oldest(), usize::MAX, &mut held);
        let after =
            |event: &Arc<Event>| LogId::parse(&event.id).is_some_and(|id| id > self.last_key);
        let join = || {
            held.iter()
                .find(|e| after(e))
                .map_or(ring.head(), |e| e.seq)
        };
        if self.drained {
            return Ok(join());
        }
        match held.first() {
            Some(oldest) if !after(oldest) => Ok(join()),
            Some(oldest) => Err(Some(Until::Before(oldest.id.to_string()))),
            None => {
                let frontier = self.history.frontier().borrow().clone();
                match frontier {
                    None => Err(None),
                    Some(at) if LogId::parse(&at).is_none_or(|at| at <= self.last_key) => {
                        Ok(ring.head())
                    }
                    Some(at) => Err(Some(Until::At(at.to_string()))),
                }
            }
        }
    }

    /// Turns a read batch into events, moving the position past every entry (malformed ones included).
    fn deliver(&mut self, entries: Vec<LogEntry>) -> Vec<Arc<Event>> {
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(key) = LogId::parse(&entry.id).filter(|key| *key > self.last_key) else {
                continue;
            };
            self.last_key = key;
            self.last.clone_from(&entry.id);
            if let Some(event) = entry.event {
                events.push(Arc::new(Event::new(
                    HISTORY_SEQ,
                    entry.id.into(),
                    event.event.map(Arc::from),
                    event.data.into(),
                )));
            }
        }
        events
    }

    fn failed(&mut self, stream: &Stream, error: &str) {
        stream.metrics.upstream.log_reads(false);
        tracing::debug!(%error, stream = %stream.key(), "Reading the log for a resume failed; retrying");
        self.retry_at = Some(tokio::time::Instant::now() + HISTORY_RETRY);
    }
}

impl Stream {
    /// Sets the stream's durable log (each upstream start sets the log its connector reads).
    pub fn set_history(&self, history: Arc<dyn History>) {
        *lock(&self.history) = Some(history);
        self.durable
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the stream continues a durable log (its event ids are the log's ids).
    pub fn is_durable(&self) -> bool {
        self.durable.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn history(&self) -> Option<Arc<dyn History>> {
        lock(&self.history).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_order_numerically() {
        assert!(LogId::parse("10-0") > LogId::parse("9-5"));
        assert!(LogId::parse("5-10") > LogId::parse("5-9"));
        assert_eq!(LogId::parse("7"), LogId::parse("7-0"));
        for bad in [
            "",
            "-1",
            "a-1",
            "1-",
            "pb:abc:3",
            "1-2-3",
            "99999999999999999999999-0",
        ] {
            assert_eq!(LogId::parse(bad), None, "{bad}");
        }
    }
}
