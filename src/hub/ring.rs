//! The ring buffer of one stream: events by sequence number, bounded by count and age, with an id index for
//! resume, the upstream's last event id (what an upstream reconnect resumes after), and the replay window that
//! drops what an upstream provably repeats after such a resume (docs/protocol.md, "Upstream replays").

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::event::{BufferBytes, Event};

/// Where a resuming client starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAt {
    /// The id was found: deliver from this sequence number on.
    Found(u64),
    /// The id is not buffered: tell the client, then deliver from this sequence number (the oldest held).
    Gap(u64),
}

/// What [`Ring::push`] did with an upstream event.
#[derive(Debug, Clone)]
pub enum Push {
    /// A new event. `reused_id`: the upstream gave an id the ring already held (the index now names this one).
    /// `evicted`: older events dropped to keep within the stream's and the process's byte budgets.
    Added {
        event: Arc<Event>,
        reused_id: bool,
        evicted: Evicted,
    },
    /// It repeats, in order, what the ring holds after the id the upstream resumed from: dropped.
    Replayed,
}

/// Events evicted by a push to keep within the byte budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// For the stream's `buffer.max_bytes`.
    pub stream: usize,
    /// For the process's `limits.max_buffer_bytes`.
    pub global: usize,
}

/// A ring's byte budget: its account (stream and process totals) and both limits.
#[derive(Debug)]
pub struct Budget {
    pub account: Arc<BufferBytes>,
    pub max_bytes: usize,
    pub global_max: Arc<AtomicUsize>,
}

/// How a position token starts (`pb:<epoch>:<seq>`, see [`Ring::position`]).
pub const POSITION_PREFIX: &str = "pb:";

/// The occurrences of one id in the ring (an upstream may reuse ids).
#[derive(Debug, Clone, Copy)]
struct Held {
    newest: u64,
    count: usize,
    /// An occurrence was evicted while a newer one was held: a cursor naming the id may have meant the evicted one.
    shadowed: bool,
}

impl Held {
    /// The id names one event and always did while it was held: a cursor can be the plain id.
    fn unambiguous(&self) -> bool {
        self.count == 1 && !self.shadowed
    }
}

#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Each id held: its newest occurrence, how many are held, whether an older one was evicted meanwhile.
    ids: HashMap<Arc<str>, Held>,
    next_seq: u64,
    max_events: usize,
    max_age: Duration,
    epoch: Arc<str>,
    /// The upstream's last event id as of the newest event pushed (the WHATWG "last event ID string": set by an
    /// `id:`, reset by an empty one, kept by events without one). Outlives the events themselves.
    upstream_last_id: Option<Arc<str>>,
    /// The sequence number of the first event after the point where `upstream_last_id` was set (what an upstream
    /// resuming from it sends first).
    last_id_next: u64,
    /// The id of the newest event evicted (the one before `oldest()`), for naming a log position there.
    last_evicted: Option<Arc<str>>,
    /// Where the latest upstream session started: the sequence number of its first event and the id it resumed
    /// after.
    resumed_at: Option<(u64, Arc<str>)>,
    /// The held sequence numbers an upstream replay is still expected to repeat, in order.
    replay: Option<Range<u64>>,
    /// The resume id's own event, which an upstream may resend first (an inclusive resume).
    replay_own: Option<u64>,
    /// A session that sent no resume position has published nothing yet: if its first event has an id and repeats
    /// the held event with that id, it opens the replay window there (the app replays without being asked).
    replay_anchor: bool,
    budget: Option<Budget>,
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
            upstream_last_id: None,
            last_id_next: 0,
            last_evicted: None,
            resumed_at: None,
            replay: None,
            replay_own: None,
            replay_anchor: false,
            budget: None,
        }
    }

    /// The same ring, also bounded by bytes: its events charge `budget.account`; a push evicts the oldest events
    /// while the stream is over `max_bytes` or the process over `global_max` (never the event just pushed).
    pub fn with_budget(mut self, budget: Budget) -> Ring {
        self.budget = Some(budget);
        self
    }

    /// A new upstream session resumed after `resumed_from` (`None`: it asked for no position). Opens the replay
    /// window: the events held after the point where the upstream's last id was set to it (its newest event with
    /// that id, or an id-only block; all events held when that point was evicted), else after the newest event
    /// with that id; optionally preceded by that event itself (apps that resume inclusively resend it). Without a
    /// position the window opens at the session's first event when that event has an id and repeats the held event
    /// with that id (ARCHITECTURE §3: held ids an upstream replays are dropped); events without an id never anchor.
    pub fn open_replay(&mut self, resumed_from: Option<&str>) {
        self.replay = None;
        self.replay_own = None;
        self.replay_anchor = false;
        let Some(from) = resumed_from.filter(|id| !id.is_empty()) else {
            self.resumed_at = None;
            self.replay_anchor = true;
            return;
        };
        self.resumed_at = Some((self.next_seq, from.into()));
        let held = self.ids.get(from).map(|held| held.newest);
        let start = if self.upstream_last_id.as_deref() == Some(from) {
            self.replay_own = held.filter(|&seq| seq + 1 == self.last_id_next);
            self.last_id_next.max(self.oldest())
        } else if let Some(seq) = held {
            self.replay_own = Some(seq);
            seq + 1
        } else {
            return;
        };
        if start < self.next_seq {
            self.replay = Some(start..self.next_seq);
        }
    }

    /// Appends an upstream event (`id` as the upstream gave it: `None` = no `id:` line, `Some("")` = a reset; the
    /// hub then generates `<epoch>-<seq>`), unless it is the next event of an open replay window.
    pub fn push(
        &mut self,
        id: Option<&str>,
        event: Option<&str>,
        data: &str,
        now: Instant,
    ) -> Push {
        let given = id.filter(|id| !id.is_empty());
        if self.is_replay(given, event, data) {
            return Push::Replayed;
        }
        let seq = self.next_seq;
        let reset = id.is_some() && given.is_none();
        let (id, generated) = match given {
            Some(given) => (Arc::<str>::from(given), false),
            None => (Arc::<str>::from(format!("{}-{seq}", self.epoch)), true),
        };
        if !generated {
            self.upstream_last_id = Some(id.clone());
            self.last_id_next = seq + 1;
        } else if reset {
            self.upstream_last_id = None;
        }
        let reused_id = !generated && self.ids.contains_key(&id);
        let mut new = Event::new(seq, id.clone(), event.map(Arc::from), data.into());
        new.generated_id = generated;
        if let Some(budget) = &self.budget {
            new = new.with_account(budget.account.clone());
        }
        let new = Arc::new(new);
        self.next_seq += 1;
        self.ids
            .entry(id)
            .and_modify(|held| {
                held.newest = seq;
                held.count += 1;
            })
            .or_insert(Held {
                newest: seq,
                count: 1,
                shadowed: false,
            });
        self.events.push_back(new.clone());
        while self.events.len() > self.max_events {
            self.pop_front();
        }
        self.evict_expired(now);
        let evicted = self.enforce_budget();
        Push::Added {
            event: new,
            reused_id,
            evicted,
        }
    }

    /// Evicts the oldest events (not the newest) while over a byte budget. An evicted event's bytes are released
    /// when the last subscriber writing it lets go, so the excess is reduced by what each eviction will free.
    pub fn enforce_budget(&mut self) -> Evicted {
        let mut evicted = Evicted::default();
        let Some(budget) = &self.budget else {
            return evicted;
        };
        let global_max = budget.global_max.load(Ordering::Relaxed);
        let mut over_stream = budget.account.stream().saturating_sub(budget.max_bytes);
        let mut over_global = budget.account.global().saturating_sub(global_max);
        while (over_stream > 0 || over_global > 0) && self.events.len() > 1 {
            let bytes = self.events.front().map_or(0, |e| e.bytes());
            if over_stream > 0 {
                evicted.stream += 1;
            } else {
                evicted.global += 1;
            }
            over_stream = over_stream.saturating_sub(bytes);
            over_global = over_global.saturating_sub(bytes);
            self.pop_front();
        }
        evicted
    }

    /// Whether `(id, event, data)` is the next event of the replay window; closes the window when it is not, or
    /// when it was the last one. The resume id's own event may come first, once.
    fn is_replay(&mut self, id: Option<&str>, event: Option<&str>, data: &str) -> bool {
        if std::mem::take(&mut self.replay_anchor) {
            let held = id.and_then(|id| self.ids.get(id)).map(|held| held.newest);
            let Some(seq) = held.filter(|&seq| self.held_matches(seq, id, event, data)) else {
                return false;
            };
            if seq + 1 < self.next_seq {
                self.replay = Some(seq + 1..self.next_seq);
            }
            return true;
        }
        if let Some(own) = self.replay_own.take()
            && self.held_matches(own, id, event, data)
        {
            return true;
        }
        let Some(window) = self.replay.take() else {
            return false;
        };
        let matches = self.held_matches(window.start, id, event, data);
        if matches && window.start + 1 < window.end {
            self.replay = Some(window.start + 1..window.end);
        }
        matches
    }

    /// Whether the event held at `seq` has this upstream id, name and data.
    fn held_matches(&self, seq: u64, id: Option<&str>, event: Option<&str>, data: &str) -> bool {
        let held = seq
            .checked_sub(self.oldest())
            .and_then(|at| self.events.get(at as usize));
        held.is_some_and(|held| {
            held.upstream_id() == id && held.event.as_deref() == event && *held.data == *data
        })
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
        let Some(old) = self.events.pop_front() else {
            return;
        };
        if let Some(held) = self.ids.get_mut(&old.id) {
            held.count = held.count.saturating_sub(1);
            if held.count == 0 {
                self.ids.remove(&old.id);
            } else {
                held.shadowed = true;
            }
        }
        self.last_evicted = Some(old.id.clone());
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

    /// When the oldest and the newest events held were published.
    pub fn published_range(&self) -> (Option<Instant>, Option<Instant>) {
        let published = |e: &Arc<Event>| e.published;
        (
            self.events.front().map(published),
            self.events.back().map(published),
        )
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
        if let Some(held) = self.ids.get(last_id) {
            return ResumeAt::Found(held.newest + 1);
        }
        self.resume_token(last_id)
    }

    /// Where a client resumes from a cursor [`Ring::position`] gave it (a long-poll `last_event_id`). A plain id is
    /// given only while it names one event, so when the upstream has reused it since, the cursor means its oldest
    /// held occurrence; when an occurrence was evicted meanwhile (maybe the one meant), a gap. Unlike
    /// [`Ring::resume`], whose id is the last one a client saw in an event (an SSE `Last-Event-ID`).
    pub fn resume_cursor(&self, cursor: &str) -> ResumeAt {
        let Some(held) = self.ids.get(cursor) else {
            return self.resume_token(cursor);
        };
        if held.shadowed {
            return ResumeAt::Gap(self.oldest());
        }
        let oldest = self
            .events
            .iter()
            .find(|e| *e.id == *cursor)
            .map_or(held.newest, |e| e.seq);
        ResumeAt::Found(oldest + 1)
    }

    /// Where a position token resumes (a gap when it is not one of this ring's, or no longer held).
    fn resume_token(&self, last_id: &str) -> ResumeAt {
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

    /// A cursor a client can resume from ([`Ring::resume_cursor`]) to get every event from sequence `seq` on: the
    /// id of the event before it when that id names only that event (and always did while held), else a position
    /// token `pb:<epoch>:<seq>` (an app that reused the id: docs/protocol.md, "Long-poll cursors").
    pub fn position(&self, seq: u64) -> String {
        let before = seq
            .checked_sub(1)
            .filter(|&prev| prev >= self.oldest() && prev < self.next_seq)
            .and_then(|prev| self.events.get((prev - self.oldest()) as usize));
        match before {
            Some(event)
                if self
                    .ids
                    .get(&event.id)
                    .is_some_and(|held| held.unambiguous() && held.newest == event.seq) =>
            {
                event.id.to_string()
            }
            _ => format!("{POSITION_PREFIX}{}:{seq}", self.epoch),
        }
    }

    /// For a ring continuing a durable log (`kind: redis`, every id an entry id): the log id after which the log
    /// goes on with sequence `seq` — the id of the event before it (held or the newest evicted), the id the upstream
    /// session that starts at `seq` resumed after, or at the head the upstream's last id (else `frontier`, the
    /// newest id the connector has read). `None` when none of these is known.
    pub fn log_position(&self, seq: u64, frontier: Option<Arc<str>>) -> Option<Arc<str>> {
        let oldest = self.oldest();
        let held_before = seq
            .checked_sub(1)
            .filter(|prev| (oldest..self.next_seq).contains(prev))
            .and_then(|prev| self.events.get((prev - oldest) as usize));
        if let Some(event) = held_before {
            return Some(event.id.clone());
        }
        match &self.resumed_at {
            Some((at, from)) if *at == seq => return Some(from.clone()),
            _ => {}
        }
        if seq >= self.next_seq {
            self.upstream_last_id.clone().or(frontier)
        } else if seq == oldest {
            self.last_evicted.clone()
        } else {
            None
        }
    }

    /// The upstream set its last event id without an event (an SSE block with an `id:` and no data; `""` resets
    /// it): a reconnect resumes from it, and what the upstream then resends starts after this point.
    pub fn set_upstream_last_id(&mut self, id: &str) {
        self.upstream_last_id = (!id.is_empty()).then(|| Arc::from(id));
        self.last_id_next = self.next_seq;
    }

    /// The id an upstream (re)connection resumes after: the upstream's last event id as of the newest event (kept
    /// when that event is evicted, as a browser keeps it).
    pub fn upstream_last_id(&self) -> Option<Arc<str>> {
        self.upstream_last_id.clone()
    }
}

#[cfg(test)]
mod tests;
