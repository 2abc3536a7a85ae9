//! One stream: its ring, its subscribers' cursors, the head-sequence watch that wakes them, and its upstream
//! connection — running while it has subscribers (and for `idle_timeout` after the last one left), dormant
//! afterwards. A dormant stream keeps its ring, so a later subscriber resumes without loss and the restarted upstream
//! resumes from the newest id held; it is forgotten once every event has aged out (see `keeper.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::pass::{Check, Pass};
use super::ring::{Budget, Evicted, Push, ResumeAt, Ring};
use super::subscription::SubShared;
use super::{Hub, Settings, StartUpstream, StreamKey, Subscription, lock};
use crate::metrics::Metrics;

/// At most one WARN per stream in this period about an upstream reusing ids, and one about byte-budget evictions.
pub const REUSED_ID_WARN_PERIOD: Duration = Duration::from_secs(60);

/// Where a new subscriber starts.
#[derive(Debug, Clone, Copy)]
pub enum Resume<'a> {
    /// Only events published from now on.
    Live,
    /// Every buffered event after this id (the client's last seen id, or a position token).
    After(&'a str),
    /// Every buffered event after this cursor, as [`Subscription::position`] gave it (a long-poll
    /// `last_event_id`): like `After`, except for an id the upstream reused since (`Ring::resume_cursor`).
    Cursor(&'a str),
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
    /// Closed on purpose: the stream has had no subscribers for `idle_timeout` (its ring is kept for resume).
    Dormant,
}

/// What the upstream hands the hub.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// How to disconnect a subscriber that stopped reading.
#[derive(Debug, Clone)]
pub struct Kick {
    pub token: CancellationToken,
    /// The client transport (metrics label).
    pub transport: &'static str,
}

pub(super) struct Inner {
    pub(super) ring: Ring,
    pub(super) subs: HashMap<u64, Arc<SubShared>>,
    next_sub: u64,
    /// Stops the running upstream connection; `None` while dormant.
    pub(super) upstream: Option<CancellationToken>,
    /// When the last subscriber left (the idle deadline runs from here; tokio's clock, paused in tests).
    pub(super) idle_since: tokio::time::Instant,
    /// When the last reused-id WARN was logged.
    reuse_warned: Option<Instant>,
    /// When the last byte-budget eviction WARN was logged.
    budget_warned: Option<Instant>,
    /// The fan-out pass under way (natural batching, `pass.rs`).
    pub(super) pass: Pass,
}

pub struct Stream {
    key: StreamKey,
    pub(super) settings: Settings,
    pub(super) inner: Mutex<Inner>,
    pub(super) head: watch::Sender<u64>,
    pub(super) stop: CancellationToken,
    closed: AtomicBool,
    upstream: AtomicU8,
    /// Woken at every upstream state change.
    upstream_changed: Notify,
    /// Set while the upstream is dormant (wins over `upstream`, which a stopping connector may still write).
    dormant: AtomicBool,
    /// The upstream's `retry:` in milliseconds (`u64::MAX`: none yet).
    retry_ms: AtomicU64,
    /// Woken when the subscriber set becomes empty or not empty: the keeper re-arms the idle deadline.
    pub(super) changed: Arc<Notify>,
    start: StartUpstream,
    /// Client headers for the upstream request (per-client mode; empty when shared).
    headers: http::HeaderMap,
    pub(super) hub: Weak<Hub>,
    pub(super) metrics: Arc<Metrics>,
    /// The durable log the ring continues, when the upstream is one (deep resume, `history.rs`).
    pub(super) history: Mutex<Option<Arc<dyn super::History>>>,
    /// Set with `history` (never unset): the event ids are the log's ids.
    pub(super) durable: AtomicBool,
    /// Sees each new event after it is buffered (`upstream.tee`).
    observer: std::sync::OnceLock<Observer>,
    /// The upstream's last failure and when the next attempt is due (set per failed attempt, for `/status`).
    pub(super) failure: Mutex<Option<super::snapshot::Failure>>,
}

/// A hook called with each new event of a stream (never with dropped replays); must not block.
pub type Observer = Arc<dyn Fn(&Arc<crate::event::Event>) + Send + Sync>;

impl Stream {
    pub(super) fn new(
        key: StreamKey,
        settings: Settings,
        hub: Weak<Hub>,
        metrics: Arc<Metrics>,
        start: StartUpstream,
        headers: http::HeaderMap,
        budget: &super::BufferBudget,
    ) -> Arc<Stream> {
        let epoch = format!("{:08x}", rand::random::<u32>());
        let ring =
            Ring::new(settings.buffer_events, settings.buffer_age, &epoch).with_budget(Budget {
                account: Arc::new(crate::event::BufferBytes::with_key(
                    budget.bytes.clone(),
                    key.bytes(),
                )),
                max_bytes: settings.buffer_max_bytes,
                global_max: budget.max.clone(),
            });
        Arc::new(Stream {
            key,
            settings,
            inner: Mutex::new(Inner {
                ring,
                subs: HashMap::new(),
                next_sub: 0,
                upstream: None,
                idle_since: tokio::time::Instant::now(),
                reuse_warned: None,
                budget_warned: None,
                pass: Pass::default(),
            }),
            head: watch::Sender::new(0),
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
            upstream: AtomicU8::new(UpstreamState::Connecting as u8),
            upstream_changed: Notify::new(),
            dormant: AtomicBool::new(true),
            retry_ms: AtomicU64::new(u64::MAX),
            changed: Arc::new(Notify::new()),
            start,
            headers,
            hub,
            metrics,
            history: Mutex::new(None),
            durable: AtomicBool::new(false),
            observer: std::sync::OnceLock::new(),
            failure: Mutex::new(None),
        })
    }

    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Cancelled when the stream closes: every upstream connection of the stream stops on it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn set_upstream(&self, state: UpstreamState) {
        let was = self.upstream.swap(state as u8, Ordering::AcqRel);
        if was != state as u8 {
            self.upstream_changed.notify_waiters();
        }
        if state == UpstreamState::Up && was != UpstreamState::Up as u8 {
            *lock(&self.failure) = None;
            if let Some(hub) = self.hub.upgrade() {
                hub.forget_refusal(&self.key);
            }
        }
    }

    /// Waits until the upstream is no longer [`UpstreamState::Connecting`] (connected, or its attempt failed).
    pub async fn attempted(&self) {
        loop {
            let notified = self.upstream_changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.upstream() != UpstreamState::Connecting {
                return;
            }
            notified.await;
        }
    }

    /// The upstream answered `status`: a 404, 403 or 410 of a shared stream goes to the hub's negative cache.
    pub fn upstream_refused(&self, status: http::StatusCode) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remember_refusal(&self.key, status);
        }
    }

    pub fn upstream(&self) -> UpstreamState {
        if self.dormant.load(Ordering::Acquire) {
            return UpstreamState::Dormant;
        }
        match self.upstream.load(Ordering::Acquire) {
            x if x == UpstreamState::Up as u8 => UpstreamState::Up,
            x if x == UpstreamState::Down as u8 => UpstreamState::Down,
            _ => UpstreamState::Connecting,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.inner).subs.len()
    }

    /// How many events the ring holds.
    pub fn buffered(&self) -> usize {
        lock(&self.inner).ring.len()
    }

    /// The id an upstream (re)connection resumes after: the upstream's last event id as of the newest event held
    /// (it survives idle teardown with the ring). `None` when the upstream gave no id (or reset it).
    pub fn newest_id(&self) -> Option<Arc<str>> {
        lock(&self.inner).ring.upstream_last_id()
    }

    /// Called by every upstream connector once per connected upstream session, before it publishes anything.
    /// `resumed_from` is the id the connector sent the upstream to resume after (`Last-Event-ID`, a resume query
    /// or header), `None` when it asked for no position. Opens the replay window (docs/protocol.md).
    pub fn upstream_connected(&self, resumed_from: Option<&str>) {
        lock(&self.inner).ring.open_replay(resumed_from);
    }

    /// The upstream set its last event id without sending an event (an SSE `id:` block without data; `""`: reset):
    /// the next upstream connection resumes from it, as a browser's would (docs/protocol.md).
    pub fn set_upstream_last_id(&self, id: &str) {
        lock(&self.inner).ring.set_upstream_last_id(id);
    }

    pub fn has_observer(&self) -> bool {
        self.observer.get().is_some()
    }

    /// Sets the hook that sees each new event (once: false when one was already set).
    pub fn set_observer(&self, observer: Observer) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Records the upstream's `retry:` (passed on to SSE clients within the route's bounds).
    pub fn set_retry(&self, retry: Duration) {
        let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX - 1);
        self.retry_ms.store(ms.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// The upstream's latest `retry:`, if it sent one.
    pub fn retry(&self) -> Option<Duration> {
        match self.retry_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Adds an upstream event. Returns false when it was dropped as a replay (docs/protocol.md).
    pub fn publish(self: &Arc<Self>, event: Published) -> bool {
        self.publish_id(event).is_some()
    }

    /// [`Stream::publish`], returning the id the event got (given or generated); `None`: dropped as a replay.
    pub fn publish_id(self: &Arc<Self>, event: Published) -> Option<Arc<str>> {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        let pushed = inner.ring.push(
            event.id.as_deref(),
            event.event.as_deref(),
            &event.data,
            now,
        );
        let (_, reused_id, evicted, id) = match pushed {
            Push::Replayed => {
                drop(inner);
                self.metrics.upstream.duplicates.inc();
                return None;
            }
            Push::Added {
                event: added,
                reused_id,
                evicted,
            } => {
                if let Some(observer) = self.observer.get() {
                    observer(&added);
                }
                ((), reused_id, evicted, added.id.clone())
            }
        };
        let warn = reused_id && due(&mut inner.reuse_warned, now);
        let budget_warn = evicted != Evicted::default() && due(&mut inner.budget_warned, now);
        let wake = if inner.pass.event() {
            Some(start_pass(&mut inner))
        } else {
            self.watch_pass(&mut inner);
            None
        };
        drop(inner);
        if let Some(head) = wake {
            self.head.send_replace(head);
        }
        self.metrics.buffer_evicted(evicted.stream, evicted.global);
        self.metrics
            .buffer_bytes
            .set(i64::try_from(self.hub_bytes()).unwrap_or(i64::MAX));
        if budget_warn {
            tracing::warn!(
                stream = %self.key, stream_budget = evicted.stream, global_budget = evicted.global,
                max_bytes = self.settings.buffer_max_bytes,
                "Resume buffer over its byte budget: oldest events evicted (logged at most once a minute per stream)"
            );
        }
        if reused_id {
            self.metrics.upstream.reused_id(&self.key.route);
            if warn {
                tracing::warn!(
                    stream = %self.key, id = event.id.as_deref().unwrap_or_default(),
                    "Upstream reused an event id still buffered: delivered as a new event; a resume from that id \
                     continues after its newest occurrence (logged at most once a minute per stream)"
                );
            }
        }
        Some(id)
    }

    /// Arms the watchdog of a pass that events now wait for, unless it is armed (`pass.rs`).
    fn watch_pass(self: &Arc<Self>, inner: &mut Inner) {
        if inner.pass.watched {
            return;
        }
        self.metrics.paced_wakes.inc();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        inner.pass.watched = true;
        let mut deadline = inner.pass.deadline();
        let stream = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep_until(deadline).await;
                let Some(stream) = stream.upgrade() else {
                    return;
                };
                let mut inner = lock(&stream.inner);
                match inner.pass.check() {
                    Check::Done => return,
                    Check::Wait(next) => deadline = next,
                    Check::Start => {
                        let head = start_pass(&mut inner);
                        drop(inner);
                        stream.head.send_replace(head);
                        return;
                    }
                }
            }
        });
    }

    /// Bytes held by the events of every stream.
    fn hub_bytes(&self) -> usize {
        self.hub
            .upgrade()
            .map_or(0, |hub| hub.budget.bytes.load(Ordering::Relaxed))
    }

    /// Registers a subscriber, restarting the upstream if the stream is dormant.
    pub fn subscribe(self: &Arc<Self>, resume: Resume<'_>, kick: Option<Kick>) -> Subscription {
        let (subscription, wake) = self.register(resume, kick);
        if let Some(token) = wake {
            self.start_upstream(token);
        }
        subscription
    }

    /// [`Stream::subscribe`] without starting the upstream: returns the token to start it with, if it must start.
    pub(super) fn register(
        self: &Arc<Self>,
        resume: Resume<'_>,
        kick: Option<Kick>,
    ) -> (Subscription, Option<CancellationToken>) {
        let mut inner = lock(&self.inner);
        inner.ring.evict_expired(Instant::now());
        let live_from = inner.ring.head();
        let resumed = match resume {
            Resume::Live => None,
            Resume::After(id) => Some((id, inner.ring.resume(id))),
            Resume::Cursor(id) => Some((id, inner.ring.resume_cursor(id))),
        };
        let (cursor, gap) = match resumed {
            None => (live_from, None),
            Some((_, ResumeAt::Found(seq))) => {
                self.metrics.resumes.with_label_values(&["hit"]).inc();
                (seq, None)
            }
            // Counted when the subscription reports it: a stream with a durable log may serve it instead.
            Some((id, ResumeAt::Gap(seq))) => (seq, Some(id.to_owned())),
        };
        let shared = SubShared::new(cursor, kick);
        let id = inner.next_sub;
        inner.next_sub += 1;
        inner.subs.insert(id, shared.clone());
        let first = inner.subs.len() == 1;
        let wake = self.wake_locked(&mut inner);
        drop(inner);
        if first {
            self.changed.notify_one();
        }
        let resumed_from = resumed.map(|(id, _)| id);
        let subscription = Subscription::new(
            self.clone(),
            shared,
            (id, cursor, live_from),
            self.head.subscribe(),
            gap,
            resumed_from,
        );
        (subscription, wake)
    }

    /// Ends the dormancy (under the inner lock): the token for a new upstream connection, if none is running.
    pub(super) fn wake_locked(&self, inner: &mut Inner) -> Option<CancellationToken> {
        if inner.upstream.is_some() || self.is_closed() {
            return None;
        }
        let token = self.stop.child_token();
        inner.upstream = Some(token.clone());
        self.upstream
            .store(UpstreamState::Connecting as u8, Ordering::Release);
        self.dormant.store(false, Ordering::Release);
        Some(token)
    }

    /// Starts an upstream connection with `token` as its stop token.
    pub(super) fn start_upstream(self: &Arc<Self>, token: CancellationToken) {
        (self.start)(self.clone(), token, self.headers.clone());
    }

    /// Closes the upstream connection (idle): the ring stays.
    pub(super) fn sleep_locked(&self, inner: &mut Inner) {
        if let Some(token) = inner.upstream.take() {
            self.dormant.store(true, Ordering::Release);
            token.cancel();
        }
    }

    pub(super) fn unsubscribe(&self, id: u64) {
        let mut inner = lock(&self.inner);
        let left = inner.subs.remove(&id);
        // The last subscriber a pass waited for may be this one.
        let wake = left
            .is_some_and(|shared| inner.pass.leave(&shared.seat))
            .then(|| start_pass(&mut inner));
        let empty = inner.subs.is_empty();
        if empty {
            inner.idle_since = tokio::time::Instant::now();
        }
        drop(inner);
        if let Some(head) = wake {
            self.head.send_replace(head);
        }
        if empty {
            self.changed.notify_one();
        }
    }

    /// Ends the stream: its upstream stops and every subscriber sees `Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        self.head.send_modify(|_| {});
    }
}

/// Starts a fan-out pass over the waiting subscribers (under the lock): the head to send them.
pub(super) fn start_pass(inner: &mut Inner) -> u64 {
    let Inner {
        pass, subs, ring, ..
    } = inner;
    pass.start(subs.values().map(|shared| &shared.seat));
    ring.head()
}

/// Whether a rate-limited log line is due (at most one per [`REUSED_ID_WARN_PERIOD`]); records it if so.
fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    let due = last.is_none_or(|at| now.duration_since(at) >= REUSED_ID_WARN_PERIOD);
    if due {
        *last = Some(now);
    }
    due
}
