//! The registry of live streams. Per stream (one per route and path-parameter values): id assignment, the ring
//! buffer (bounded by count and age), fan-out to subscribers through a head-sequence watch, resume lookup by
//! event id, slow-consumer detection, and idle teardown once the last subscriber leaves.
//!
//! A subscriber's state is a cursor (the next sequence number it wants) into the shared ring: nothing is queued per
//! subscriber, so memory is bounded by the ring whatever the clients do.

mod ring;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use ring::Ring;
pub use stream::{Kick, Next, Published, Resume, Stream, Subscription, UpstreamState};

use crate::metrics::Metrics;

/// Identity of a stream: the route name and the values of the route's path parameters (plus a session id in
/// per-client mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub route: Arc<str>,
    pub params: Vec<(String, String)>,
    pub session: Option<u64>,
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
    /// How long a stream with no subscribers lives on.
    pub idle_timeout: Duration,
}

/// Starts the upstream feeding a new stream; called once per stream with the stream, its stop token and the
/// client headers to forward (per-client mode; empty when shared).
pub type StartUpstream = Arc<dyn Fn(Arc<Stream>, CancellationToken, http::HeaderMap) + Send + Sync>;

/// All live streams.
pub struct Hub {
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            streams: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Subscribe to the stream `key`, creating it (and starting its upstream) if it does not exist.
    /// `kick` is cancelled if this subscriber stops reading while more than `client_queue` events behind.
    pub fn subscribe(
        self: &Arc<Self>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        resume: Resume<'_>,
        kick: Option<Kick>,
        headers: http::HeaderMap,
    ) -> Subscription {
        let stream = self.get_or_create(key, settings, start, headers);
        Stream::subscribe(&stream, resume, kick)
    }

    /// The stream `key`, creating it (and starting its upstream) if needed.
    pub fn get_or_create(
        self: &Arc<Self>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        headers: http::HeaderMap,
    ) -> Arc<Stream> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.get(&key) {
            return stream.clone();
        }
        let stream = Stream::new(
            key.clone(),
            settings.clone(),
            Arc::downgrade(self),
            self.metrics.clone(),
        );
        streams.insert(key, stream.clone());
        self.metrics.streams_open.set(streams.len() as i64);
        drop(streams);
        stream.spawn_sweeper();
        start(stream.clone(), stream.stop_token(), headers);
        stream
    }

    /// How many streams are live.
    pub fn len(&self) -> usize {
        lock(&self.streams).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A live stream, if any.
    pub fn get(&self, key: &StreamKey) -> Option<Arc<Stream>> {
        lock(&self.streams).get(key).cloned()
    }

    /// Every live stream (for readiness and drain).
    pub fn all(&self) -> Vec<Arc<Stream>> {
        lock(&self.streams).values().cloned().collect()
    }

    /// Removes `stream` if it still has no subscribers and is the one registered under its key.
    fn remove_if_idle(&self, stream: &Arc<Stream>, generation: u64) {
        let mut streams = lock(&self.streams);
        let registered = streams
            .get(stream.key())
            .is_some_and(|s| Arc::ptr_eq(s, stream));
        if registered && stream.is_idle(generation) {
            streams.remove(stream.key());
            self.metrics.streams_open.set(streams.len() as i64);
            drop(streams);
            tracing::debug!(stream = %stream.key(), "Stream idle: closed");
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

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the hub's invariants are restored by
/// every critical section before it can panic).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
