//! A read-only view of the hub for the admin status page (`/status`, `/status.json`): per route, how many streams
//! exist and the busiest ones with their subscribers per transport, buffer and upstream state. Built only when asked
//! (one pass over the streams, each locked briefly); nothing is recorded per event for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::stream::Stream;
use super::{Hub, StreamKey, UpstreamState, lock};
use crate::metrics::TRANSPORTS;

/// An upstream's last failed attempt (recorded once per attempt by the connector supervisor).
#[derive(Debug, Clone)]
pub struct Failure {
    /// The error's text as the supervisor saw it (the status page redacts and cuts it).
    pub error: String,
    /// When the next attempt is due.
    pub retry_at: SystemTime,
}

/// One stream as the status page shows it.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub key: StreamKey,
    pub upstream: UpstreamState,
    /// Subscribers per client transport, in [`TRANSPORTS`] order.
    pub subscribers: [usize; TRANSPORTS.len()],
    /// Events the ring holds.
    pub buffered: usize,
    /// Age of the oldest event held.
    pub oldest_age: Option<Duration>,
    /// When the newest event held was published.
    pub last_event: Option<SystemTime>,
    /// Set while the upstream is failing.
    pub failure: Option<Failure>,
}

impl StreamView {
    pub fn subscriber_total(&self) -> usize {
        self.subscribers.iter().sum()
    }
}

/// A route's streams: how many exist, how many per upstream state, and the busiest.
#[derive(Debug, Clone, Default)]
pub struct RouteView {
    pub streams: usize,
    /// Streams per upstream state: connecting, connected, reconnecting (down), dormant.
    pub states: [usize; 4],
    /// The streams with the most subscribers, most first (ties: by key).
    pub busiest: Vec<StreamView>,
}

impl UpstreamState {
    /// The status page's word for the state (and the index into [`RouteView::states`]).
    pub fn label(self) -> (&'static str, usize) {
        match self {
            UpstreamState::Connecting => ("connecting", 0),
            UpstreamState::Up => ("connected", 1),
            UpstreamState::Down => ("reconnecting", 2),
            UpstreamState::Dormant => ("dormant", 3),
        }
    }
}

impl Hub {
    /// Every route's streams, with its `busiest` streams in full (routes by name). One pass counts every stream;
    /// only the busiest are then described, so a hub with many streams costs one lock per stream and no more.
    pub fn snapshot(&self, busiest: usize) -> Vec<(Arc<str>, RouteView)> {
        type Candidates = Vec<(usize, Arc<Stream>)>;
        let mut routes: BTreeMap<Arc<str>, (RouteView, Candidates)> = BTreeMap::new();
        for stream in self.all() {
            let (route, candidates) = routes.entry(stream.key().route.clone()).or_default();
            route.streams += 1;
            route.states[stream.upstream().label().1] += 1;
            candidates.push((stream.subscriber_count(), stream));
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        routes
            .into_iter()
            .map(|(name, (mut route, mut candidates))| {
                // Most subscribers first; ties by key, so the page is stable between looks.
                let order = |a: &(usize, Arc<Stream>), b: &(usize, Arc<Stream>)| {
                    let (ka, kb) = (a.1.key(), b.1.key());
                    (b.0, &ka.params, ka.session).cmp(&(a.0, &kb.params, kb.session))
                };
                if candidates.len() > busiest {
                    candidates.select_nth_unstable_by(busiest, order);
                    candidates.truncate(busiest);
                }
                candidates.sort_by(order);
                route.busiest = candidates.iter().map(|(_, s)| s.view(now, wall)).collect();
                (name, route)
            })
            .collect()
    }
}

impl Stream {
    /// Records a failed upstream attempt and the delay before the next one.
    pub fn set_failure(&self, error: String, retry_in: Duration) {
        let now = SystemTime::now();
        let retry_at = now.checked_add(retry_in).unwrap_or(now);
        *lock(&self.failure) = Some(Failure { error, retry_at });
    }

    fn view(&self, now: Instant, wall: SystemTime) -> StreamView {
        let upstream = self.upstream();
        let failure = match upstream {
            UpstreamState::Down => lock(&self.failure).clone(),
            _ => None,
        };
        let inner = lock(&self.inner);
        let mut subscribers = [0; TRANSPORTS.len()];
        for sub in inner.subs.values() {
            let transport = sub.kick.as_ref().map(|k| k.transport);
            if let Some(i) = TRANSPORTS.iter().position(|t| Some(*t) == transport) {
                subscribers[i] += 1;
            }
        }
        let (oldest, newest) = inner.ring.published_range();
        StreamView {
            key: self.key().clone(),
            upstream,
            subscribers,
            buffered: inner.ring.len(),
            oldest_age: oldest.map(|at| now.saturating_duration_since(at)),
            last_event: newest.map(|at| {
                let ago = now.saturating_duration_since(at);
                wall.checked_sub(ago).unwrap_or(wall)
            }),
            failure,
        }
    }
}
