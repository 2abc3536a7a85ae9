//! The one task per stream that keeps it in shape: every [`SWEEP_PERIOD`] it kicks stalled subscribers and forgets a
//! dormant stream whose events have all aged out; one idle deadline, re-armed when the subscriber set empties (never
//! a task per unsubscribe), closes the upstream connection after `idle_timeout` without subscribers. A per-client
//! stream is closed as soon as its client session ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lock;
use super::stream::Stream;

/// How often stalled subscribers and aged-out dormant streams are looked for.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

impl Stream {
    /// Runs the stream's keeper until the stream closes (or is dropped).
    pub(super) fn spawn_keeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        let changed = self.changed.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_PERIOD);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let idle = tokio::time::sleep(Duration::ZERO);
            tokio::pin!(idle);
            let mut armed = false;
            loop {
                let deadline = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {
                        let Some(stream) = weak.upgrade() else { return };
                        stream.sweep();
                        stream.forget_if_drained();
                        continue;
                    }
                    () = changed.notified() => match weak.upgrade() {
                        Some(stream) => stream.idle_deadline(),
                        None => return,
                    },
                    () = &mut idle, if armed => match weak.upgrade() {
                        Some(stream) => stream.idle_expired(),
                        None => return,
                    },
                };
                armed = deadline.is_some();
                if let Some(at) = deadline {
                    idle.as_mut().reset(at);
                }
            }
        });
    }

    fn per_client(&self) -> bool {
        self.key().session.is_some()
    }

    /// When the upstream connection should close: `None` while subscribed or already dormant.
    fn idle_deadline(&self) -> Option<Instant> {
        let inner = lock(&self.inner);
        if !inner.subs.is_empty() || inner.upstream.is_none() {
            return None;
        }
        Some(if self.per_client() {
            inner.idle_since
        } else {
            inner.idle_since + self.settings.idle_timeout
        })
    }

    /// The idle deadline passed: close the upstream connection (a per-client stream: the whole stream), unless a
    /// subscriber came back. Returns a later deadline when the stream became idle again in the meantime.
    fn idle_expired(self: &Arc<Self>) -> Option<Instant> {
        let deadline = self.idle_deadline()?;
        if deadline > Instant::now() {
            return Some(deadline);
        }
        if self.per_client() {
            self.forget();
            return None;
        }
        let mut inner = lock(&self.inner);
        self.sleep_locked(&mut inner);
        drop(inner);
        tracing::debug!(stream = %self.key(), "Stream idle: upstream closed, buffer kept for resume");
        self.forget_if_drained();
        None
    }

    /// Forgets a dormant stream once every event has aged out: nothing is left to resume from.
    fn forget_if_drained(self: &Arc<Self>) {
        let mut inner = lock(&self.inner);
        if inner.upstream.is_some() || !inner.subs.is_empty() {
            return;
        }
        inner.ring.evict_expired(std::time::Instant::now());
        if inner.ring.is_empty() {
            drop(inner);
            self.forget();
        }
    }

    fn forget(self: &Arc<Self>) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove_if_unused(self);
        }
    }

    /// When the stream's last subscriber left, if it is dormant now (shared, upstream closed, no subscriber): a
    /// stream a new one may replace at the stream limits.
    pub(super) fn dormant_since(&self) -> Option<Instant> {
        let inner = lock(&self.inner);
        let dormant = !self.per_client() && inner.subs.is_empty() && inner.upstream.is_none();
        dormant.then_some(inner.idle_since)
    }

    /// Whether the stream may be forgotten: no subscriber, and (shared) dormant with an empty ring.
    pub(super) fn unused(&self) -> bool {
        let inner = lock(&self.inner);
        inner.subs.is_empty()
            && (self.per_client() || (inner.upstream.is_none() && inner.ring.is_empty()))
    }

    /// Kicks subscribers that are more than `client_queue` events behind and made no progress since the previous
    /// sweep (their socket is full: the client stopped reading). A client that is behind but reading is left alone.
    fn sweep(&self) {
        use std::sync::atomic::Ordering;
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
                    self.key(),
                    info!(stream = %self.key(), transport = kick.transport, behind, "Slow subscriber disconnected")
                );
            }
        }
    }
}
