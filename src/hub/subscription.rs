//! A subscriber's cursor into a stream: what it reads next (a gap notice once, events, or the end), its resumable
//! position, and whether an event reaches it live or as a resume replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::history::{DeepResume, HISTORY_SEQ, LogId, Step};
use super::lock;
use super::pass::Seat;
use super::stream::{Kick, Stream, start_pass};
use crate::event::Event;

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Next {
    Events(Vec<Arc<Event>>),
    /// The resume id was not buffered; events follow from the oldest one held.
    Gap {
        last_event_id: String,
    },
    /// The subscriber fell behind the ring (its next event was evicted): disconnect, resumable.
    Lagged,
    /// The stream was closed (reload, drain, or its client session ended).
    Closed,
}

/// What the stream's sweeper sees of a subscriber.
pub(super) struct SubShared {
    pub(super) cursor: AtomicU64,
    /// The cursor the previous sweep saw: unchanged over a sweep period means the client is not reading.
    pub(super) swept: AtomicU64,
    pub(super) kick: Option<Kick>,
    /// Its part in the stream's fan-out passes.
    pub(super) seat: Seat,
}

impl SubShared {
    pub(super) fn new(cursor: u64, kick: Option<Kick>) -> Arc<SubShared> {
        Arc::new(SubShared {
            cursor: AtomicU64::new(cursor),
            swept: AtomicU64::new(u64::MAX),
            kick,
            seat: Seat::default(),
        })
    }
}

/// A subscriber's cursor into a stream. Dropping it unsubscribes.
pub struct Subscription {
    stream: Arc<Stream>,
    shared: Arc<SubShared>,
    id: u64,
    cursor: u64,
    /// The stream's head when it subscribed: events before it are resume replays, not live deliveries.
    live_from: u64,
    rx: watch::Receiver<u64>,
    gap: Option<String>,
    /// Being served from the stream's durable log (the resume id is older than the ring).
    deep: Option<Box<DeepResume>>,
    /// The newest log id this subscriber is past (its resume id, then each event it took), applied only on a
    /// stream that continues a durable log: ring events not after it are skipped (a replica whose upstream is
    /// behind the client's position repeats nothing), and its position never goes back before it.
    floor: Option<(LogId, String)>,
    /// The last read of the ring reached its head: nothing new until a pass announces it on `rx`.
    caught_up: bool,
}

impl Subscription {
    /// `at`: the subscriber's id, its cursor and the head when it subscribed. `resumed_from`: the id it gave.
    pub(super) fn new(
        stream: Arc<Stream>,
        shared: Arc<SubShared>,
        (id, cursor, live_from): (u64, u64, u64),
        rx: watch::Receiver<u64>,
        gap: Option<String>,
        resumed_from: Option<&str>,
    ) -> Subscription {
        let floor = resumed_from.and_then(|from| Some((LogId::parse(from)?, from.to_owned())));
        Subscription {
            stream,
            shared,
            id,
            cursor,
            live_from,
            rx,
            gap,
            deep: None,
            floor,
            caught_up: false,
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Whether `event` was published after this subscriber arrived (a live delivery, not a resume replay).
    pub fn is_live(&self, event: &Event) -> bool {
        event.seq != HISTORY_SEQ && event.seq >= self.live_from
    }

    /// Waits for what comes next: a gap notice (once, first), up to `max` events, or the end.
    pub async fn next(&mut self, max: usize) -> Next {
        if let Some(next) = self.log_step(max).await {
            return next;
        }
        // Caught up and no pass announced since: the ring has nothing for it (or what came waits for the next pass).
        let mut look = !self.caught_up || self.rx.has_changed().unwrap_or(true);
        loop {
            if look {
                self.rx.borrow_and_update();
                if let Some(next) = self.try_next(max) {
                    return next;
                }
            }
            look = true;
            let mut waiting = Waiting {
                stream: &self.stream,
                shared: &self.shared,
                armed: true,
            };
            self.shared.seat.wait();
            let changed = self.rx.changed().await;
            // Taking the events leaves the pass (`try_next`, under the lock it takes anyway).
            waiting.armed = false;
            if changed.is_err() {
                return Next::Closed;
            }
        }
    }

    /// Whether the last read of the ring took everything up to its head (a further `try_next` finds nothing
    /// until the next pass, unless the stream's events wait for it).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// What is there without waiting for new events: the gap notice, a batch read from the stream's durable log
    /// (awaited: a deep resume), or what the ring holds now; `None` when nothing is.
    pub async fn ready(&mut self, max: usize) -> Option<Next> {
        if let Some(next) = self.log_step(max).await {
            return Some(next);
        }
        self.try_next(max)
    }

    /// The gap notice, or the next step of a deep resume; `None` once the subscriber reads the ring.
    async fn log_step(&mut self, max: usize) -> Option<Next> {
        if let Some(last_event_id) = self.gap.take() {
            match (self.stream.history(), LogId::parse(&last_event_id)) {
                (Some(history), Some(key)) => {
                    // Out of the sweeper's sight until it joins the ring (it reads no ring event meanwhile).
                    self.shared.cursor.store(u64::MAX, Ordering::Relaxed);
                    self.deep = Some(Box::new(DeepResume::new(history, last_event_id, key)));
                }
                _ => {
                    self.stream
                        .metrics
                        .resumes
                        .with_label_values(&["gap"])
                        .inc();
                    self.stream.metrics.resumes_gap.inc();
                    return Some(Next::Gap { last_event_id });
                }
            }
        }
        let deep = self.deep.as_mut()?;
        // Boxed: the wait of every subscriber does not carry the room of a deep resume's read.
        match Box::pin(deep.next(&self.stream, max)).await {
            Step::Gap(last_event_id) => Some(Next::Gap { last_event_id }),
            Step::Events(events) => Some(Next::Events(events)),
            Step::Closed => Some(Next::Closed),
            Step::Join(cursor) => {
                self.floor = Some((deep.last_key(), deep.position().to_owned()));
                self.deep = None;
                self.cursor = cursor;
                self.shared.cursor.store(cursor, Ordering::Relaxed);
                self.shared.swept.store(u64::MAX, Ordering::Relaxed);
                None
            }
        }
    }

    /// An id to resume from that continues exactly where this subscriber stands (the last event it read, or the
    /// position it started at): the id of the event before its cursor, or a position token (docs/protocol.md).
    ///
    /// On a stream continuing a durable log (`kind: redis`) it is a log id whenever one is known — valid on every
    /// replica — and never before the subscriber's resume id; a position token only while the upstream has not
    /// connected yet and the client gave no id ([`Subscription::settle`] waits for that).
    pub fn position(&self) -> String {
        if let Some(deep) = &self.deep {
            return deep.position().to_owned();
        }
        if !self.stream.is_durable() {
            return lock(&self.stream.inner).ring.position(self.cursor);
        }
        // Read before the ring: an entry read after this shows in the ring.
        let frontier = self
            .stream
            .history()
            .and_then(|history| history.frontier().borrow().clone());
        let inner = lock(&self.stream.inner);
        let in_ring = inner.ring.log_position(self.cursor, frontier);
        let in_ring = in_ring.and_then(|id| Some((LogId::parse(&id)?, id)));
        match (in_ring, &self.floor) {
            (Some((key, id)), Some((floor, _))) if key >= *floor => id.to_string(),
            (Some((_, id)), None) => id.to_string(),
            (_, Some((_, floor))) => floor.clone(),
            (None, None) => inner.ring.position(self.cursor),
        }
    }

    /// Whether [`Subscription::position`] is valid on every replica: not a position token, on a stream that
    /// continues a durable log (elsewhere always true).
    pub fn settled(&self) -> bool {
        !self.stream.is_durable() || self.deep.is_some() || LogId::parse(&self.position()).is_some()
    }

    /// Waits until the position is [`settled`](Subscription::settled): on a durable-log stream whose upstream has
    /// not connected yet, for the connector's first position.
    pub async fn settle(&mut self) {
        if self.settled() {
            return;
        }
        if let Some(history) = self.stream.history() {
            let _ = history.frontier().wait_for(Option::is_some).await;
        }
    }

    /// For a reader told it is subscribed before any event (SSE headers, WebSocket open): on a fresh durable-log
    /// stream, waits until the connector has its start position, so every entry appended after this returns
    /// reaches the reader; not past a failed first attempt (the connector then starts at the log's end on connect).
    pub async fn settle_start(&mut self) {
        if self.settled() {
            return;
        }
        let stream = self.stream.clone();
        tokio::select! {
            () = self.settle() => {}
            () = stream.attempted() => {}
        }
    }

    /// What is available now from the ring without waiting; `None` when nothing is, or while a gap notice or a
    /// deep resume comes first (only [`Subscription::next`] serves those).
    pub fn try_next(&mut self, max: usize) -> Option<Next> {
        if self.stream.is_closed() {
            return Some(Next::Closed);
        }
        if self.deep.is_some() || self.gap.is_some() {
            return None;
        }
        let durable = self.stream.is_durable();
        loop {
            let mut inner = lock(&self.stream.inner);
            // Taking (or finding nothing) ends this subscriber's part in the pass that woke it.
            let wake = inner
                .pass
                .leave(&self.shared.seat)
                .then(|| start_pass(&mut inner));
            let ring = &inner.ring;
            let head = ring.head();
            let behind = head.saturating_sub(self.cursor);
            let lagged = self.cursor < ring.oldest();
            let mut events = Vec::new();
            if !lagged && behind > 0 {
                events.reserve_exact(behind.min(max as u64) as usize);
                ring.read(self.cursor, max, &mut events);
            }
            drop(inner);
            if let Some(head) = wake {
                self.stream.head.send_replace(head);
            }
            if lagged {
                return Some(Next::Lagged);
            }
            if let Some(last) = events.last() {
                self.cursor = last.seq + 1;
                self.shared.cursor.store(self.cursor, Ordering::Relaxed);
            }
            self.caught_up = self.cursor >= head;
            if behind == 0 {
                return None;
            }
            if durable {
                self.pass_floor(&mut events);
                if events.is_empty() {
                    continue;
                }
            }
            return Some(Next::Events(events));
        }
    }

    /// Drops the events not after the floor, and raises it to the last event kept.
    fn pass_floor(&mut self, events: &mut Vec<Arc<Event>>) {
        if let Some((floor, _)) = &self.floor {
            events.retain(|e| LogId::parse(&e.id).is_none_or(|key| key > *floor));
        }
        let last = events
            .last()
            .and_then(|e| Some((LogId::parse(&e.id)?, e.id.to_string())));
        if last.is_some() {
            self.floor = last;
        }
    }
}

/// A subscriber parked on the head watch; dropped while armed (its wait was cancelled: a heartbeat, a ping), it
/// leaves the pass at once, so a pass never waits for a subscriber that is not waiting.
struct Waiting<'a> {
    stream: &'a Stream,
    shared: &'a SubShared,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.armed || self.shared.seat.unwait() {
            return;
        }
        let mut inner = lock(&self.stream.inner);
        let wake = inner
            .pass
            .leave(&self.shared.seat)
            .then(|| start_pass(&mut inner));
        drop(inner);
        if let Some(head) = wake {
            self.stream.head.send_replace(head);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.unsubscribe(self.id);
    }
}
