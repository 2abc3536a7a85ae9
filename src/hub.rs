//! The registry of streams. Per stream (one per route and path-parameter values): id assignment, the ring buffer
//! (bounded by count and age), fan-out to subscribers through a head-sequence watch, resume lookup by event id or
//! position token, slow-consumer detection, and the idle rule: after `idle_timeout` without subscribers only the
//! upstream connection closes; the stream and its ring stay (dormant) until every event has aged out, or until a new
//! stream needs its slot at a stream limit (the oldest dormant stream is evicted first).
//!
//! A subscriber's state is a cursor (the next sequence number it wants) into the shared ring: nothing is queued per
//! subscriber, so memory is bounded by the ring whatever the clients do.

mod history;
mod keeper;
mod negative;
mod pass;
mod publish;
mod ring;
mod snapshot;
mod stream;
mod subscription;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use history::{HISTORY_BATCH, History, LogEntry, LogId, Until};
pub use keeper::SWEEP_PERIOD;
pub use negative::{NEGATIVE_CACHE_KEYS, is_negative};
pub use publish::Delivered;
pub use ring::{POSITION_PREFIX, Push, Ring};
pub use snapshot::{Failure, RouteView, StreamView};
pub use stream::{Kick, Observer, Published, Resume, Stream, UpstreamState};
pub use subscription::{Next, Subscription};

use crate::metrics::Metrics;

/// Identity of a stream: the route name and the values of the route's path parameters (plus a session id in
/// per-client mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub route: Arc<str>,
    pub params: Vec<(String, String)>,
    pub session: Option<u64>,
}

impl StreamKey {
    /// What the key holds: its route name and parameter names and values (counted in `limits.max_buffer_bytes`).
    pub fn bytes(&self) -> usize {
        self.route.len()
            + self
                .params
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.route)?;
        for (name, value) in &self.params {
            write!(f, " {name}={value}")?;
        }
        if let Some(session) = self.session {
            write!(f, " session={session}")?;
        }
        Ok(())
    }
}

/// Buffering and pacing rules of one route's streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Most events the ring holds.
    pub buffer_events: usize,
    /// Oldest event the ring holds.
    pub buffer_age: Duration,
    /// How many events a subscriber may fall behind before it is disconnected.
    pub client_queue: usize,
    /// How long a stream with no subscribers keeps its upstream connection (its ring stays until it ages out).
    pub idle_timeout: Duration,
    /// Most bytes a stream's events may hold (fields and encodings).
    pub buffer_max_bytes: usize,
    /// Most streams of this route at once (`usize::MAX`: only the process-wide limit).
    pub max_streams: usize,
}

/// Why a new stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLimit {
    /// `limits.max_streams` streams exist.
    Global,
    /// The route's `max_streams` streams exist.
    Route,
}

impl StreamLimit {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamLimit::Global => "global",
            StreamLimit::Route => "route",
        }
    }
}

/// The process-wide byte budget of all resume buffers.
#[derive(Debug, Clone)]
pub struct BufferBudget {
    /// Bytes held by every stream's events.
    pub bytes: Arc<AtomicUsize>,
    /// The limit (`limits.max_buffer_bytes`).
    pub max: Arc<AtomicUsize>,
}

/// Starts an upstream connection feeding a stream; called when the stream is created and again whenever a subscriber
/// wakes a dormant one, with the stream, the connection's stop token and the client headers to forward (per-client
/// mode; empty when shared). The connection resumes after [`Stream::newest_id`].
pub type StartUpstream = Arc<dyn Fn(Arc<Stream>, CancellationToken, http::HeaderMap) + Send + Sync>;

/// All streams (with a running upstream, or dormant with events still buffered).
pub struct Hub {
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    metrics: Arc<Metrics>,
    budget: BufferBudget,
    /// `limits.max_streams`.
    max_streams: AtomicUsize,
    /// When the last stream-limit WARN was logged.
    limit_warned: Mutex<Option<std::time::Instant>>,
    /// When the last dormant-stream eviction was logged.
    evict_logged: Mutex<Option<std::time::Instant>>,
    /// When a look for a dormant stream last found none: for [`NO_DORMANT_FOR`] after, none is looked for.
    no_dormant_at: Mutex<Option<tokio::time::Instant>>,
    /// Keys the upstream answered 404/403/410 (`limits.negative_cache_ttl`).
    negative: Mutex<negative::NegativeCache>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            streams: Mutex::new(HashMap::new()),
            metrics,
            budget: BufferBudget {
                bytes: Arc::default(),
                max: Arc::new(AtomicUsize::new(usize::MAX)),
            },
            max_streams: AtomicUsize::new(usize::MAX),
            limit_warned: Mutex::new(None),
            evict_logged: Mutex::new(None),
            no_dormant_at: Mutex::new(None),
            negative: Mutex::default(),
        })
    }

    /// A WARN about refused streams, at most once a minute for the whole process.
    fn warn_limit(&self, limit: StreamLimit, key: &StreamKey) {
        let now = std::time::Instant::now();
        let mut last = lock(&self.limit_warned);
        if last.is_none_or(|at| now.duration_since(at) >= stream::REUSED_ID_WARN_PERIOD) {
            *last = Some(now);
            drop(last);
            tracing::warn!(
                route = %key.route, limit = limit.as_str(),
                "Stream limit reached: new streams refused with 503 (logged at most once a minute)"
            );
        }
    }

    /// Sets the most streams the process keeps at once (`limits.max_streams`).
    pub fn set_max_streams(&self, max: usize) {
        self.max_streams.store(max, Ordering::Relaxed);
    }

    /// How long keys the upstream refused are remembered (`limits.negative_cache_ttl`; zero: off).
    pub fn set_negative_cache_ttl(&self, ttl: Duration) {
        lock(&self.negative).set_ttl(ttl);
    }

    /// Remembers that the upstream of shared stream `key` answered `status` (404, 403 or 410).
    pub fn remember_refusal(&self, key: &StreamKey, status: http::StatusCode) {
        if key.session.is_none() && is_negative(status) {
            lock(&self.negative).insert(key.clone(), status, tokio::time::Instant::now());
        }
    }

    /// Forgets a refusal of `key` (its upstream answered after all).
    pub fn forget_refusal(&self, key: &StreamKey) {
        lock(&self.negative).remove(key);
    }

    /// The status the upstream recently refused `key` with, and for how much longer it is remembered; counted in
    /// `pushbridge_negative_cache_hits_total`.
    pub fn refused(&self, key: &StreamKey) -> Option<(http::StatusCode, Duration)> {
        let hit = lock(&self.negative).get(key, tokio::time::Instant::now());
        if hit.is_some() {
            self.metrics.negative_cache_hits.inc();
        }
        hit
    }

    /// Subscribes to the stream `key` like [`Hub::subscribe`], unless creating it would pass `limits.max_streams` or
    /// the route's `max_streams` and no dormant stream can be evicted to make room (an existing stream is always
    /// served). The subscription is registered before an
    /// upstream connection this request starts (a new stream, or a dormant one woken up), so a subscriber without a
    /// resume id gets every event of that connection, the first ones included (docs/protocol.md, "Opening a stream").
    pub fn admit(
        self: &Arc<Self>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        headers: http::HeaderMap,
        resume: Resume<'_>,
        kick: Option<Kick>,
    ) -> Result<Subscription, StreamLimit> {
        let mut streams = lock(&self.streams);
        if !streams.contains_key(&key) {
            let mut evicted = Vec::new();
            let room = self.make_room(&mut streams, &key, settings, &mut evicted);
            if !evicted.is_empty() {
                self.metrics.streams_open.set(streams.len() as i64);
            }
            if let Err(limit) = room {
                drop(streams);
                self.close_evicted(evicted);
                self.warn_limit(limit, &key);
                self.metrics
                    .stream_refusals
                    .with_label_values(&[limit.as_str()])
                    .inc();
                return Err(limit);
            }
            let subscription = self.register(streams, key, settings, start, resume, kick, headers);
            self.close_evicted(evicted);
            return Ok(subscription);
        }
        Ok(self.register(streams, key, settings, start, resume, kick, headers))
    }

    /// Room for one more stream like `key` within the route's `max_streams` and `limits.max_streams`: where a limit
    /// is reached, the oldest dormant stream (upstream closed, no subscriber) of the route, or of any route, is
    /// removed into `evicted` (its buffer goes; a later resume from it gets a gap notice). A live request wins
    /// over a dormant stream; `Err` when no dormant stream is left to evict.
    fn make_room(
        &self,
        streams: &mut HashMap<StreamKey, Arc<Stream>>,
        key: &StreamKey,
        settings: &Settings,
        evicted: &mut Vec<Arc<Stream>>,
    ) -> Result<(), StreamLimit> {
        if settings.max_streams != usize::MAX
            && streams.keys().filter(|k| k.route == key.route).count() >= settings.max_streams
        {
            let oldest = self.oldest_dormant(streams, Some(&key.route));
            evicted.push(self.evict(streams, oldest, StreamLimit::Route)?);
        }
        if streams.len() >= self.max_streams.load(Ordering::Relaxed) {
            let oldest = self.oldest_dormant(streams, None);
            evicted.push(self.evict(streams, oldest, StreamLimit::Global)?);
        }
        Ok(())
    }

    /// [`oldest_dormant`] of `route` (or any), unless a look at every stream found none within
    /// [`NO_DORMANT_FOR`]: a flood of new keys at a limit costs one scan per period, not one per request.
    fn oldest_dormant(
        &self,
        streams: &HashMap<StreamKey, Arc<Stream>>,
        route: Option<&str>,
    ) -> Option<StreamKey> {
        let now = tokio::time::Instant::now();
        let mut none_at = lock(&self.no_dormant_at);
        if none_at.is_some_and(|at| now.duration_since(at) < NO_DORMANT_FOR) {
            return None;
        }
        let oldest = oldest_dormant(streams, |k| route.is_none_or(|r| *k.route == *r));
        if oldest.is_none() && route.is_none() {
            *none_at = Some(now);
        }
        oldest
    }

    /// Removes the dormant stream `oldest` for `limit` (counted in `pushbridge_stream_evictions_total`).
    fn evict(
        &self,
        streams: &mut HashMap<StreamKey, Arc<Stream>>,
        oldest: Option<StreamKey>,
        limit: StreamLimit,
    ) -> Result<Arc<Stream>, StreamLimit> {
        let stream = oldest.and_then(|key| streams.remove(&key)).ok_or(limit)?;
        self.metrics
            .stream_evictions
            .with_label_values(&[limit.as_str()])
            .inc();
        Ok(stream)
    }

    /// Closes streams evicted for a new one (outside the hub lock), with an INFO at most once a minute.
    fn close_evicted(&self, evicted: Vec<Arc<Stream>>) {
        let Some(first) = evicted.first() else {
            return;
        };
        let now = std::time::Instant::now();
        let mut last = lock(&self.evict_logged);
        if last.is_none_or(|at| now.duration_since(at) >= stream::REUSED_ID_WARN_PERIOD) {
            *last = Some(now);
            drop(last);
            tracing::info!(
                stream = %first.key(),
                "Stream limit reached: the oldest dormant stream was closed for a new one, its buffer dropped \
                 (logged at most once a minute)"
            );
        }
        for stream in evicted {
            stream.close();
        }
    }

    /// Sets the byte budget of all resume buffers together (`limits.max_buffer_bytes`).
    pub fn set_max_buffer_bytes(&self, max: usize) {
        self.budget.max.store(max, Ordering::Relaxed);
    }

    /// Bytes held by every stream's events now.
    pub fn buffer_bytes(&self) -> usize {
        self.budget.bytes.load(Ordering::Relaxed)
    }

    /// Subscribe to the stream `key`, creating it (and starting its upstream) if it does not exist, and restarting
    /// the upstream of a dormant one. `kick` is cancelled if this subscriber stops reading while more than
    /// `client_queue` events behind.
    pub fn subscribe(
        self: &Arc<Self>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        resume: Resume<'_>,
        kick: Option<Kick>,
        headers: http::HeaderMap,
    ) -> Subscription {
        self.register(
            lock(&self.streams),
            key,
            settings,
            start,
            resume,
            kick,
            headers,
        )
    }

    /// Looks up or creates `key` and registers the subscriber under the held hub lock (so the stream cannot be
    /// forgotten in between, nor its upstream publish before the subscriber's cursor is set), then starts the
    /// upstream if the stream was new or dormant.
    #[allow(clippy::too_many_arguments)]
    fn register(
        self: &Arc<Self>,
        streams: std::sync::MutexGuard<'_, HashMap<StreamKey, Arc<Stream>>>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        resume: Resume<'_>,
        kick: Option<Kick>,
        headers: http::HeaderMap,
    ) -> Subscription {
        let (streams, stream) = self.lookup(streams, key, settings, start, headers);
        let (subscription, wake) = stream.register(resume, kick);
        drop(streams);
        if let Some(token) = wake {
            stream.start_upstream(token);
        }
        subscription
    }

    fn lookup<'a>(
        self: &Arc<Self>,
        mut streams: std::sync::MutexGuard<'a, HashMap<StreamKey, Arc<Stream>>>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        headers: http::HeaderMap,
    ) -> (
        std::sync::MutexGuard<'a, HashMap<StreamKey, Arc<Stream>>>,
        Arc<Stream>,
    ) {
        if let Some(stream) = streams.get(&key) {
            let stream = stream.clone();
            return (streams, stream);
        }
        let stream = Stream::new(
            key.clone(),
            settings.clone(),
            Arc::downgrade(self),
            self.metrics.clone(),
            start.clone(),
            headers,
            &self.budget,
        );
        streams.insert(key, stream.clone());
        self.metrics.streams_open.set(streams.len() as i64);
        stream.spawn_keeper();
        (streams, stream)
    }

    /// How many streams are registered (dormant ones included).
    pub fn len(&self) -> usize {
        lock(&self.streams).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A registered stream, if any.
    pub fn get(&self, key: &StreamKey) -> Option<Arc<Stream>> {
        lock(&self.streams).get(key).cloned()
    }

    /// Every registered stream (for readiness and drain).
    pub fn all(&self) -> Vec<Arc<Stream>> {
        lock(&self.streams).values().cloned().collect()
    }

    /// Forgets `stream` if it is still the one registered under its key and unused (no subscribers; shared: dormant
    /// with nothing buffered).
    fn remove_if_unused(&self, stream: &Arc<Stream>) {
        let mut streams = lock(&self.streams);
        let registered = streams
            .get(stream.key())
            .is_some_and(|s| Arc::ptr_eq(s, stream));
        if registered && stream.unused() {
            streams.remove(stream.key());
            self.metrics.streams_open.set(streams.len() as i64);
            drop(streams);
            tracing::debug!(stream = %stream.key(), "Stream closed");
            stream.close();
        }
    }

    /// Closes every stream (drain): subscribers see the end of their stream.
    pub fn close_all(&self) {
        let streams: Vec<_> = lock(&self.streams).drain().map(|(_, s)| s).collect();
        self.metrics.streams_open.set(0);
        for stream in streams {
            stream.close();
        }
    }

    /// Closes and forgets the streams of routes for which `keep` says false (reload).
    pub fn retain_routes(&self, keep: impl Fn(&str) -> bool) {
        let mut streams = lock(&self.streams);
        let gone: Vec<StreamKey> = streams
            .keys()
            .filter(|k| !keep(&k.route))
            .cloned()
            .collect();
        let closed: Vec<_> = gone.iter().filter_map(|k| streams.remove(k)).collect();
        self.metrics.streams_open.set(streams.len() as i64);
        drop(streams);
        for stream in closed {
            stream.close();
        }
    }
}

/// After a look for a dormant stream found none, how long none is looked for (a stream turns dormant only
/// `idle_timeout` after its last subscriber left, so this delays no eviction that matters).
const NO_DORMANT_FOR: std::time::Duration = std::time::Duration::from_millis(100);

/// The dormant stream among those `keys` selects that has been without subscribers longest.
fn oldest_dormant(
    streams: &HashMap<StreamKey, Arc<Stream>>,
    keys: impl Fn(&StreamKey) -> bool,
) -> Option<StreamKey> {
    streams
        .iter()
        .filter(|(key, _)| keys(key))
        .filter_map(|(key, stream)| Some((stream.dormant_since()?, key)))
        .min_by_key(|(since, _)| *since)
        .map(|(_, key)| key.clone())
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the hub's invariants are restored by
/// every critical section before it can panic).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
