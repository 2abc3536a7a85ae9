//! One live stream: its ring, its subscribers' cursors, the head-sequence watch that wakes them, and the
//! slow-consumer and idle rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ring::{ResumeAt, Ring};
use super::{Hub, Settings, StreamKey, lock};
use crate::event::Event;
use crate::metrics::Metrics;

/// How often stalled subscribers are looked for.
pub const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a new subscriber starts.
#[derive(Debug, Clone, Copy)]
pub enum Resume<'a> {
    /// Only events published from now on.
    Live,
    /// Every buffered event after this id (the client's last seen id).
    After(&'a str),
}

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
    /// The stream was closed (idle teardown, reload or drain).
    Closed,
}

/// Where a stream's upstream connection stands (for readiness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamState {
    /// Not connected yet, or reconnecting after the upstream ended the stream normally.
    Connecting,
    Up,
    /// The last attempt failed (refused, timeout, bad status or content type, broken stream).
    Down,
}

/// What the upstream hands the hub.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

struct SubShared {
    cursor: AtomicU64,
    /// The cursor the previous sweep saw: unchanged over a sweep period means the client is not reading.
    swept: AtomicU64,
    kick: Option<Kick>,
}

/// How to disconnect a subscriber that stopped reading.
#[derive(Debug, Clone)]
pub struct Kick {
    pub token: CancellationToken,
    /// The client transport (metrics label).
    pub transport: &'static str,
}

struct Inner {
    ring: Ring,
    subs: HashMap<u64, Arc<SubShared>>,
    next_sub: u64,
    /// Bumped whenever the subscriber set changes; an idle timer only fires for the generation it saw.
    generation: u64,
}

pub struct Stream {
    key: StreamKey,
    settings: Settings,
    inner: Mutex<Inner>,
    head: watch::Sender<u64>,
    stop: CancellationToken,
    closed: AtomicBool,
    upstream: std::sync::atomic::AtomicU8,
    hub: Weak<Hub>,
    metrics: Arc<Metrics>,
}

impl Stream {
    pub(super) fn new(
        key: StreamKey,
        settings: Settings,
        hub: Weak<Hub>,
        metrics: Arc<Metrics>,
    ) -> Arc<Stream> {
        let epoch = format!("{:08x}", rand::random::<u32>());
        let ring = Ring::new(settings.buffer_events, settings.buffer_age, &epoch);
        Arc::new(Stream {
            key,
            settings,
            inner: Mutex::new(Inner {
                ring,
                subs: HashMap::new(),
                next_sub: 0,
                generation: 0,
            }),
            head: watch::Sender::new(0),
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
            upstream: std::sync::atomic::AtomicU8::new(UpstreamState::Connecting as u8),
            hub,
            metrics,
        })
    }

    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Cancelled when the stream closes: the upstream task stops on it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn set_upstream(&self, state: UpstreamState) {
        self.upstream.store(state as u8, Ordering::Release);
    }

    pub fn upstream(&self) -> UpstreamState {
        match self.upstream.load(Ordering::Acquire) {
            x if x == UpstreamState::Up as u8 => UpstreamState::Up,
            x if x == UpstreamState::Down as u8 => UpstreamState::Down,
            _ => UpstreamState::Connecting,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.inner).subs.len()
    }

    /// The newest event's id (what an upstream reconnect could resume from).
    pub fn newest_id(&self) -> Option<Arc<str>> {
        lock(&self.inner).ring.newest_id()
    }

    /// Called by every upstream connector once per connected upstream session, before it publishes anything.
    /// `resumed_from` is the id the connector sent the upstream to resume after (`Last-Event-ID`, a resume query
    /// or header), `None` when it asked for no position. Opens the replay window (docs/protocol.md).
    pub fn upstream_connected(&self, resumed_from: Option<&str>) {
        let _ = resumed_from;
    }

    /// Adds an upstream event. Returns false when it was a replay of an event already held.
    pub fn publish(&self, event: Published) -> bool {
        let mut inner = lock(&self.inner);
        let Some(pushed) = inner.ring.push(
            event.id.as_deref(),
            event.event.as_deref(),
            &event.data,
            Instant::now(),
        ) else {
            drop(inner);
            self.metrics.upstream_duplicates.inc();
            return false;
        };
        let head = pushed.seq + 1;
        drop(inner);
        self.head.send_replace(head);
        true
    }

    /// Registers a subscriber.
    pub fn subscribe(self: &Arc<Self>, resume: Resume<'_>, kick: Option<Kick>) -> Subscription {
        let mut inner = lock(&self.inner);
        inner.ring.evict_expired(Instant::now());
        let (cursor, gap) = match resume {
            Resume::Live => (inner.ring.head(), None),
            Resume::After(id) => match inner.ring.resume(id) {
                ResumeAt::Found(seq) => {
                    self.metrics.resumes.with_label_values(&["hit"]).inc();
                    (seq, None)
                }
                ResumeAt::Gap(seq) => {
                    self.metrics.resumes.with_label_values(&["gap"]).inc();
                    self.metrics.resumes_gap.inc();
                    (seq, Some(id.to_owned()))
                }
            },
        };
        let shared = Arc::new(SubShared {
            cursor: AtomicU64::new(cursor),
            swept: AtomicU64::new(u64::MAX),
            kick,
        });
        let id = inner.next_sub;
        inner.next_sub += 1;
        inner.generation += 1;
        inner.subs.insert(id, shared.clone());
        drop(inner);
        Subscription {
            stream: self.clone(),
            shared,
            id,
            cursor,
            rx: self.head.subscribe(),
            gap,
        }
    }

    fn unsubscribe(self: &Arc<Self>, id: u64) {
        let mut inner = lock(&self.inner);
        inner.subs.remove(&id);
        inner.generation += 1;
        if !inner.subs.is_empty() || self.is_closed() {
            return;
        }
        let generation = inner.generation;
        drop(inner);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let stream = self.clone();
        let idle = self.settings.idle_timeout;
        runtime.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(idle) => {}
                () = stream.stop.cancelled() => return,
            }
            if let Some(hub) = stream.hub.upgrade() {
                hub.remove_if_idle(&stream, generation);
            }
        });
    }

    /// Kicks subscribers that are more than `client_queue` events behind and made no progress since the previous
    /// sweep (their socket is full: the client stopped reading). A client that is behind but reading is left alone.
    fn sweep(&self) {
        let inner = lock(&self.inner);
        let head = inner.ring.head();
        let limit = self.settings.client_queue as u64;
        for sub in inner.subs.values() {
            let cursor = sub.cursor.load(Ordering::Relaxed);
            let stalled = sub.swept.swap(cursor, Ordering::Relaxed) == cursor;
            let behind = head.saturating_sub(cursor);
            if stalled
                && behind > limit
                && let Some(kick) = &sub.kick
                && !kick.token.is_cancelled()
            {
                kick.token.cancel();
                self.metrics
                    .slow_consumers
                    .with_label_values(&[kick.transport])
                    .inc();
                crate::log_limited!(
                    self.metrics.logs,
                    crate::logs::LogKind::SlowSubscriber,
                    self.key,
                    info!(stream = %self.key, transport = kick.transport, behind, "Slow subscriber disconnected")
                );
            }
        }
    }

    /// Runs [`Stream::sweep`] every [`SWEEP_PERIOD`] until the stream closes.
    pub(super) fn spawn_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_PERIOD);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match weak.upgrade() {
                    Some(stream) => stream.sweep(),
                    None => return,
                }
            }
        });
    }

    pub(super) fn is_idle(&self, generation: u64) -> bool {
        let inner = lock(&self.inner);
        inner.subs.is_empty() && inner.generation == generation
    }

    /// Ends the stream: its upstream stops and every subscriber sees `Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        self.head.send_modify(|_| {});
    }
}

/// A subscriber's cursor into a stream. Dropping it unsubscribes.
pub struct Subscription {
    stream: Arc<Stream>,
    shared: Arc<SubShared>,
    id: u64,
    cursor: u64,
    rx: watch::Receiver<u64>,
    gap: Option<String>,
}

impl Subscription {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Waits for what comes next: a gap notice (once, first), up to `max` events, or the end.
    pub async fn next(&mut self, max: usize) -> Next {
        if let Some(last_event_id) = self.gap.take() {
            return Next::Gap { last_event_id };
        }
        loop {
            self.rx.borrow_and_update();
            if let Some(next) = self.try_next(max) {
                return next;
            }
            if self.rx.changed().await.is_err() {
                return Next::Closed;
            }
        }
    }

    /// What is available now without waiting; `None` when nothing is.
    pub fn try_next(&mut self, max: usize) -> Option<Next> {
        if self.stream.is_closed() {
            return Some(Next::Closed);
        }
        let inner = lock(&self.stream.inner);
        let ring = &inner.ring;
        let behind = ring.head().saturating_sub(self.cursor);
        if self.cursor < ring.oldest() {
            return Some(Next::Lagged);
        }
        if behind == 0 {
            return None;
        }
        let mut events = Vec::with_capacity(behind.min(max as u64) as usize);
        ring.read(self.cursor, max, &mut events);
        drop(inner);
        if let Some(last) = events.last() {
            self.cursor = last.seq + 1;
            self.shared.cursor.store(self.cursor, Ordering::Relaxed);
        }
        Some(Next::Events(events))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.unsubscribe(self.id);
    }
}
