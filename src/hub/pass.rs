//! Natural batching of a stream's wake-ups. A new event wakes the stream's waiting subscribers at once (a pass);
//! events that arrive while a pass is under way wait in the ring, and the pass's last subscriber to take its events
//! starts the next pass with all of them: the batch follows the backlog, and an event waits at most one pass.
//!
//! A subscriber is `IDLE` (taking or writing events), `WAITING` (parked on the head watch) or `COUNTED` (waiting
//! when a pass started: the pass waits for it to take). `IDLE → WAITING` and `WAITING → IDLE` are lock-free; every
//! other transition happens under the stream's lock. A counted subscriber that stops polling (a WebSocket blocked
//! sending a ping) cannot hold a pass for long: a watchdog starts the next one after [`Pass::bound`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The shortest and longest a pass may stay open before its deferred events are sent anyway.
const MIN_BOUND: Duration = Duration::from_millis(10);
const MAX_BOUND: Duration = Duration::from_millis(500);

pub(super) const IDLE: u8 = 0;
pub(super) const WAITING: u8 = 1;
pub(super) const COUNTED: u8 = 2;

/// What the watchdog does.
pub(super) enum Check {
    /// Nothing waits: it stops.
    Done,
    /// The pass took too long (a counted subscriber stopped polling): start the next one now.
    Start,
    /// A newer pass is under way: look again then.
    Wait(Instant),
}

/// A subscriber's part in the passes (in its `SubShared`).
#[derive(Default)]
pub(super) struct Seat(AtomicU8);

impl Seat {
    /// About to wait on the head watch.
    pub(super) fn wait(&self) {
        self.0.store(WAITING, Ordering::Release);
    }

    /// Stops waiting without the lock; false when a pass counted it (then [`Pass::leave`] under the lock).
    pub(super) fn unwait(&self) -> bool {
        self.0
            .compare_exchange(WAITING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.0.load(Ordering::Acquire) == IDLE
    }
}

/// The stream's pass (in its `Inner`, under the stream's lock).
#[derive(Default)]
pub(super) struct Pass {
    /// Subscribers the current pass woke that have not taken their events yet.
    outstanding: usize,
    /// Events arrived during the pass: the next pass starts when it ends.
    deferred: bool,
    started: Option<Instant>,
    /// How long the last pass took to end by itself.
    last: Duration,
    /// A watchdog task is armed for the current pass.
    pub(super) watched: bool,
}

impl Pass {
    /// A new event: true when it starts a pass now (the caller counts the waiting subscribers with
    /// [`Pass::start`] and sends the head); false when it waits for the current pass.
    pub(super) fn event(&mut self) -> bool {
        if self.outstanding == 0 {
            return true;
        }
        self.deferred = true;
        false
    }

    /// Starts a pass over `seats` (the subscribers): the waiting ones are counted. The caller sends the head.
    pub(super) fn start<'a>(&mut self, seats: impl Iterator<Item = &'a Seat>) {
        let mut counted = 0;
        for seat in seats {
            // A subscriber still counted by a pass the watchdog ended counts for this one (it was not re-added).
            match seat
                .0
                .compare_exchange(WAITING, COUNTED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => counted += 1,
                Err(COUNTED) => {}
                Err(_) => continue,
            }
        }
        self.outstanding += counted;
        self.deferred = false;
        self.started = Some(Instant::now());
    }

    /// The subscriber of `seat` takes its events (or leaves): true when that ends the pass with events deferred,
    /// so the caller starts the next pass.
    pub(super) fn leave(&mut self, seat: &Seat) -> bool {
        if seat.0.swap(IDLE, Ordering::AcqRel) != COUNTED {
            return false;
        }
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.outstanding > 0 {
            return false;
        }
        if let Some(started) = self.started.take() {
            self.last = started.elapsed();
        }
        self.deferred
    }

    /// The watchdog's look at the pass at its deadline.
    pub(super) fn check(&mut self) -> Check {
        if !self.deferred {
            self.watched = false;
            return Check::Done;
        }
        let deadline = self.deadline();
        if Instant::now() >= deadline {
            self.watched = false;
            return Check::Start;
        }
        Check::Wait(deadline)
    }

    /// When the watchdog looks at the current pass.
    pub(super) fn deadline(&self) -> Instant {
        self.started.unwrap_or_else(Instant::now) + self.bound()
    }

    /// Twice the last pass that ended by itself, within [`MIN_BOUND`]..[`MAX_BOUND`].
    fn bound(&self) -> Duration {
        (self.last * 2).clamp(MIN_BOUND, MAX_BOUND)
    }
}
