//! `Idempotency-Key` on `kind: publish` routes: the first answer of each key per stream, kept for the route's
//! `buffer.age`, so a retry answers it again and publishes nothing. Memory is bounded by [`MAX_KEYS`] and
//! [`MAX_BYTES`] (oldest dropped first, counted in `pushbridge_publish_idempotency_evictions_total`): a retry
//! arriving after its key was dropped publishes again. Redis routes keep their keys in Redis (`redis.rs`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hub::StreamKey;

/// Most keys remembered by one process.
pub const MAX_KEYS: usize = 100_000;
/// Most bytes (keys and answers) remembered by one process.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Longest `Idempotency-Key` accepted (longer: 400).
pub const MAX_KEY_LEN: usize = 256;

/// Whether a header value is a usable key: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn valid(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(u8::is_ascii_graphic)
}

type Key = (StreamKey, String);

struct Entry {
    answer: Bytes,
    expires: Instant,
    /// Its place in `order` (an entry replaced after expiry gets a new one).
    serial: u64,
}

/// Remembered first answers, oldest first.
#[derive(Default)]
pub struct Seen {
    map: HashMap<Key, Entry>,
    order: VecDeque<(Key, u64)>,
    next: u64,
    bytes: usize,
}

fn size(key: &Key, answer: &Bytes) -> usize {
    key.0.bytes() + key.1.len() + answer.len() + 96
}

impl Seen {
    /// The first answer for `key`, unless it expired.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Bytes> {
        self.map
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.answer.clone())
    }

    /// Remembers `answer` for `key` for `ttl`; returns how many older keys were dropped to stay in bounds.
    pub fn insert(&mut self, key: Key, answer: Bytes, ttl: Duration, now: Instant) -> usize {
        let serial = self.next;
        self.next += 1;
        self.bytes += size(&key, &answer);
        let entry = Entry {
            answer,
            expires: now + ttl,
            serial,
        };
        if let Some(old) = self.map.insert(key.clone(), entry) {
            self.bytes -= size(&key, &old.answer);
        }
        self.order.push_back((key, serial));
        let mut evicted = 0;
        while let Some((front, serial)) = self.order.front() {
            // A stale place (the key was replaced since) goes; so does an expired key, or the oldest one while
            // over a bound.
            let live = self.map.get(front).filter(|e| e.serial == *serial);
            let over = self.map.len() > MAX_KEYS || self.bytes > MAX_BYTES;
            match live {
                Some(entry) if entry.expires > now && !over => break,
                Some(entry) if entry.expires > now => evicted += 1,
                _ => {}
            }
            let Some((front, serial)) = self.order.pop_front() else {
                break;
            };
            if let Some(entry) = self.map.get(&front).filter(|e| e.serial == serial) {
                self.bytes -= size(&front, &entry.answer);
                self.map.remove(&front);
            }
        }
        evicted
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        let stream = StreamKey {
            route: "r".into(),
            params: vec![],
            session: None,
        };
        (stream, k.to_owned())
    }

    #[test]
    fn answers_within_ttl_then_forgets() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(seen.insert(key("a"), Bytes::from("A"), ttl, t0), 0);
        assert_eq!(
            seen.get(&key("a"), t0 + Duration::from_secs(9)),
            Some(Bytes::from("A"))
        );
        assert_eq!(seen.get(&key("a"), t0 + ttl), None);
        // An expired key is dropped by the next insert, not counted as an eviction.
        assert_eq!(seen.insert(key("b"), Bytes::from("B"), ttl, t0 + ttl), 0);
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_counts_it() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut evicted = 0;
        for i in 0..=MAX_KEYS {
            evicted += seen.insert(key(&i.to_string()), Bytes::from("x"), ttl, t0);
        }
        assert_eq!(evicted, 1);
        assert_eq!(seen.len(), MAX_KEYS);
        assert_eq!(seen.get(&key("0"), t0), None);
        assert!(seen.get(&key("1"), t0).is_some());
    }

    #[test]
    fn header_values_are_checked() {
        assert!(valid(b"order-42"));
        assert!(!valid(b""));
        assert!(!valid(b"a b"));
        assert!(!valid(&[b'a'; MAX_KEY_LEN + 1]));
    }
}
