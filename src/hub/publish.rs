//! Publishing into a stream from the publish listener (`kind: publish`, issue 18): the stream is created on
//! first use like a subscriber's would be (within the stream limits, evicting the oldest dormant stream first),
//! but without a subscriber it stays dormant, its ring kept for resume until the events age out.

use std::sync::Arc;

use super::{Hub, Published, Settings, StartUpstream, StreamKey, StreamLimit, lock};

/// What a publish did: the ids the events got, in order, and the stream's subscribers on this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub ids: Vec<Arc<str>>,
    pub subscribers: usize,
}

impl Hub {
    /// Appends `events` to stream `key` (created if needed) and wakes its subscribers. All of them or, at a
    /// stream limit with nothing dormant to evict, none (`Err`, counted like a subscriber's refusal). Runs under
    /// the hub lock, so the stream cannot be forgotten or evicted between its lookup and the events.
    pub fn publish(
        self: &Arc<Self>,
        key: StreamKey,
        settings: &Settings,
        start: &StartUpstream,
        events: Vec<Published>,
    ) -> Result<Delivered, StreamLimit> {
        let mut streams = lock(&self.streams);
        let mut evicted = Vec::new();
        if !streams.contains_key(&key) {
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
        }
        let (streams, stream) = self.lookup(streams, key, settings, start, http::HeaderMap::new());
        // A publish stream has no replay window (no upstream connects), so every event is added.
        let ids = events
            .into_iter()
            .filter_map(|event| stream.publish_id(event))
            .collect();
        let subscribers = stream.subscriber_count();
        drop(streams);
        self.close_evicted(evicted);
        Ok(Delivered { ids, subscribers })
    }
}
