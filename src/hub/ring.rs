//! The ring buffer of one stream: events by sequence number, bounded by count and age, with an id index for
//! resume and for dropping events an upstream replays after a reconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::Event;

/// Where a resuming client starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAt {
    /// The id was found: deliver from this sequence number on.
    Found(u64),
    /// The id is not buffered: tell the client, then deliver from this sequence number (the oldest held).
    Gap(u64),
}

/// How a position token starts (`pb:<epoch>:<seq>`, see [`Ring::position`]).
pub const POSITION_PREFIX: &str = "pb:";

#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Arc<Event>>,
    ids: HashMap<Arc<str>, u64>,
    next_seq: u64,
    max_events: usize,
    max_age: Duration,
    epoch: Arc<str>,
}

impl Ring {
    pub fn new(max_events: usize, max_age: Duration, epoch: &str) -> Ring {
        Ring {
            events: VecDeque::with_capacity(max_events.clamp(1, 1024)),
            ids: HashMap::new(),
            next_seq: 0,
            max_events: max_events.max(1),
            max_age,
            epoch: epoch.into(),
        }
    }

    /// Appends an event. `id` is the upstream's (empty = none, and the hub generates one). Returns `None` when an
    /// event with the same id is already held (an upstream replay).
    pub fn push(
        &mut self,
        id: Option<&str>,
        event: Option<&str>,
        data: &str,
        now: Instant,
    ) -> Option<Arc<Event>> {
        let seq = self.next_seq;
        let id: Arc<str> = match id.filter(|id| !id.is_empty()) {
            Some(id) if self.ids.contains_key(id) => return None,
            Some(id) => id.into(),
            None => format!("{}-{seq}", self.epoch).into(),
        };
        let event = Arc::new(Event::new(
            seq,
            id.clone(),
            event.map(Arc::from),
            data.into(),
        ));
        self.next_seq += 1;
        self.ids.insert(id, seq);
        self.events.push_back(event.clone());
        while self.events.len() > self.max_events {
            self.pop_front();
        }
        self.evict_expired(now);
        Some(event)
    }

    /// Drops events older than the age bound.
    pub fn evict_expired(&mut self, now: Instant) {
        while self
            .events
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.published) > self.max_age)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(old) = self.events.pop_front()
            && self.ids.get(&old.id) == Some(&old.seq)
        {
            self.ids.remove(&old.id);
        }
    }

    /// The sequence number the next event will get.
    pub fn head(&self) -> u64 {
        self.next_seq
    }

    /// The oldest sequence number held (`head()` when empty).
    pub fn oldest(&self) -> u64 {
        self.events.front().map_or(self.next_seq, |e| e.seq)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Up to `max` events from sequence `from` on.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<Arc<Event>>) {
        let start = from.saturating_sub(self.oldest()) as usize;
        out.extend(self.events.iter().skip(start).take(max).cloned());
    }

    /// Where a client that last saw `last_id` resumes: after the newest event with that id, or at the position a
    /// [`Ring::position`] token names (when it is still held: from the oldest event on, up to the head).
    pub fn resume(&self, last_id: &str) -> ResumeAt {
        if let Some(&seq) = self.ids.get(last_id) {
            return ResumeAt::Found(seq + 1);
        }
        match self.token_seq(last_id) {
            Some(seq) if (self.oldest()..=self.next_seq).contains(&seq) => ResumeAt::Found(seq),
            _ => ResumeAt::Gap(self.oldest()),
        }
    }

    /// The sequence number a position token of this ring names.
    fn token_seq(&self, token: &str) -> Option<u64> {
        let rest = token.strip_prefix(POSITION_PREFIX)?;
        let (epoch, seq) = rest.split_once(':')?;
        if epoch != &*self.epoch || seq.starts_with('+') {
            return None;
        }
        seq.parse().ok()
    }

    /// An id a client can resume from to get every event from sequence `seq` on: the id of the event before it when
    /// that id resolves to it, else a position token `pb:<epoch>:<seq>`.
    pub fn position(&self, seq: u64) -> String {
        let before = seq
            .checked_sub(1)
            .filter(|&prev| prev >= self.oldest() && prev < self.next_seq)
            .and_then(|prev| self.events.get((prev - self.oldest()) as usize));
        match before {
            Some(event) if self.ids.get(&event.id) == Some(&event.seq) => event.id.to_string(),
            _ => format!("{POSITION_PREFIX}{}:{seq}", self.epoch),
        }
    }

    /// The newest event's id, if any.
    pub fn newest_id(&self) -> Option<Arc<str>> {
        self.events.back().map(|e| e.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ring: &Ring, from: u64) -> Vec<String> {
        let mut out = Vec::new();
        ring.read(from, usize::MAX, &mut out);
        out.iter().map(|e| e.id.to_string()).collect()
    }

    #[test]
    fn generates_ids_and_bounds_count() {
        let now = Instant::now();
        let mut ring = Ring::new(3, Duration::from_secs(60), "ep");
        for i in 0..5 {
            ring.push(None, None, &format!("d{i}"), now).unwrap();
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.oldest(), 2);
        assert_eq!(ring.head(), 5);
        assert_eq!(ids(&ring, 0), ["ep-2", "ep-3", "ep-4"]);
        assert_eq!(ids(&ring, 4), ["ep-4"]);
        assert_eq!(ring.resume("ep-3"), ResumeAt::Found(4));
        assert_eq!(ring.resume("ep-1"), ResumeAt::Gap(2));
        assert_eq!(ring.resume("unknown"), ResumeAt::Gap(2));
    }

    #[test]
    fn drops_replayed_ids_and_keeps_upstream_ids() {
        let now = Instant::now();
        let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
        assert!(ring.push(Some("a"), Some("tick"), "1", now).is_some());
        assert!(ring.push(Some("b"), None, "2", now).is_some());
        assert!(ring.push(Some("a"), None, "1 again", now).is_none());
        assert!(ring.push(Some(""), None, "no id", now).is_some());
        assert_eq!(ids(&ring, 0), ["a", "b", "ep-2"]);
        assert_eq!(ring.newest_id().as_deref(), Some("ep-2"));
    }

    #[test]
    fn position_tokens_name_a_sequence_of_this_ring() {
        let now = Instant::now();
        let mut ring = Ring::new(2, Duration::from_secs(60), "ep");
        assert_eq!(ring.position(0), "pb:ep:0");
        assert_eq!(ring.resume("pb:ep:0"), ResumeAt::Found(0));
        ring.push(Some("a"), None, "1", now).unwrap();
        assert_eq!(ring.position(1), "a");
        assert_eq!(ring.position(0), "pb:ep:0");
        assert_eq!(ring.resume("pb:ep:0"), ResumeAt::Found(0));
        ring.push(Some("b"), None, "2", now).unwrap();
        ring.push(Some("c"), None, "3", now).unwrap();
        // Seq 0 was evicted: the token names a lost position.
        assert_eq!(ring.resume("pb:ep:0"), ResumeAt::Gap(1));
        assert_eq!(ring.resume("pb:ep:1"), ResumeAt::Found(1));
        assert_eq!(ring.resume("pb:ep:3"), ResumeAt::Found(3));
        for bad in [
            "pb:other:1",
            "pb:ep:4",
            "pb:ep:x",
            "pb:ep:+1",
            "pb:ep",
            "pb:",
        ] {
            assert_eq!(ring.resume(bad), ResumeAt::Gap(1), "{bad}");
        }
    }

    #[test]
    fn evicts_by_age() {
        let start = Instant::now();
        let mut ring = Ring::new(10, Duration::from_secs(5), "ep");
        ring.push(None, None, "old", start).unwrap();
        let later = start + Duration::from_secs(6);
        ring.evict_expired(later);
        assert!(ring.is_empty());
        assert_eq!(ring.oldest(), 1);
        assert_eq!(ring.resume("ep-0"), ResumeAt::Gap(1));
    }
}
