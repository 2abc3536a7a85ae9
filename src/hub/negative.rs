//! The negative cache: stream keys the upstream answered 404, 403 or 410, remembered for
//! `limits.negative_cache_ttl` so that repeated requests for a channel that does not exist get the app's answer at
//! once instead of each opening a stream and an upstream request. Bounded by [`NEGATIVE_CACHE_KEYS`]; the oldest
//! entry is forgotten first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::StreamKey;
pub use crate::config::NEGATIVE_CACHE_KEYS;

/// Whether an upstream answer says the key does not exist (or is not for us): 404, 403, 410.
pub fn is_negative(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::GONE
    )
}

#[derive(Debug, Default)]
pub(super) struct NegativeCache {
    ttl: Duration,
    entries: HashMap<StreamKey, (StatusCode, Instant)>,
    /// Keys in insertion order with their expiry (all share one TTL, so this is also expiry order); an entry whose
    /// expiry no longer matches the map's was re-inserted and is skipped.
    order: VecDeque<(StreamKey, Instant)>,
}

impl NegativeCache {
    pub(super) fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
        if ttl.is_zero() {
            self.entries.clear();
            self.order.clear();
        }
    }

    /// Remembers `key` as answered `status` (no-op while the cache is off).
    pub(super) fn insert(&mut self, key: StreamKey, status: StatusCode, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        self.expire(now);
        if let Some(entry) = self.entries.get_mut(&key) {
            // Still remembered (an existing stream failed again): keep the first expiry.
            entry.0 = status;
            return;
        }
        while self.entries.len() >= NEGATIVE_CACHE_KEYS
            || self.order.len() >= 2 * NEGATIVE_CACHE_KEYS
        {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|(_, e)| *e == at) {
                self.entries.remove(&old);
            }
        }
        let expires = now + self.ttl;
        self.entries.insert(key.clone(), (status, expires));
        self.order.push_back((key, expires));
    }

    /// The remembered status of `key` and how long it is still remembered.
    pub(super) fn get(&mut self, key: &StreamKey, now: Instant) -> Option<(StatusCode, Duration)> {
        self.expire(now);
        self.entries
            .get(key)
            .map(|(status, expires)| (*status, expires.saturating_duration_since(now)))
    }

    /// Forgets `key` (its upstream answered after all).
    pub(super) fn remove(&mut self, key: &StreamKey) {
        self.entries.remove(key);
    }

    /// Drops expired entries and, at the front, the order entries of removed keys.
    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            let current = self.entries.get(key).is_some_and(|(_, e)| e == at);
            if current && *at > now {
                break;
            }
            if current {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: usize) -> StreamKey {
        StreamKey {
            route: "r".into(),
            params: vec![("c".into(), c.to_string())],
            session: None,
        }
    }

    #[test]
    fn remembers_for_the_ttl_within_the_key_bound() {
        let mut cache = NegativeCache::default();
        let now = Instant::now();
        cache.insert(key(0), StatusCode::NOT_FOUND, now);
        assert!(cache.get(&key(0), now).is_none(), "off by default");
        cache.set_ttl(Duration::from_secs(10));
        cache.insert(key(0), StatusCode::GONE, now);
        assert_eq!(
            cache.get(&key(0), now + Duration::from_secs(4)),
            Some((StatusCode::GONE, Duration::from_secs(6)))
        );
        assert!(cache.get(&key(0), now + Duration::from_secs(10)).is_none());
        for c in 0..NEGATIVE_CACHE_KEYS + 5 {
            cache.insert(key(c), StatusCode::NOT_FOUND, now);
        }
        assert_eq!(cache.entries.len(), NEGATIVE_CACHE_KEYS);
        assert!(cache.get(&key(0), now).is_none(), "oldest forgotten first");
        assert!(cache.get(&key(NEGATIVE_CACHE_KEYS + 4), now).is_some());
        cache.remove(&key(NEGATIVE_CACHE_KEYS + 4));
        assert!(cache.get(&key(NEGATIVE_CACHE_KEYS + 4), now).is_none());
        // Removed and re-inserted keys do not grow the order queue without bound.
        for _ in 0..3 * NEGATIVE_CACHE_KEYS {
            cache.insert(key(1), StatusCode::NOT_FOUND, now);
            cache.remove(&key(1));
        }
        assert!(cache.order.len() <= 2 * NEGATIVE_CACHE_KEYS);
    }
}
