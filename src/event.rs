//! `Event`: one event of a hub stream, and its wire encodings — each made at most once, on first use, and then
//! shared by every subscriber (`Bytes` clones), so per-subscriber work is a write, never an encode.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

/// One event as the hub holds it.
#[derive(Debug)]
pub struct Event {
    /// The hub's monotonic position in its stream.
    pub seq: u64,
    /// The upstream's id, or one the hub generated (`<epoch>-<seq>`).
    pub id: Arc<str>,
    /// Event type; `None` is the default `message`.
    pub event: Option<Arc<str>>,
    /// The payload (UTF-8).
    pub data: Arc<str>,
    /// When the hub received it (for publish → write latency).
    pub published: Instant,
    sse: OnceLock<Bytes>,
    envelope: OnceLock<Bytes>,
    data_bytes: OnceLock<Bytes>,
}

impl Event {
    pub fn new(seq: u64, id: Arc<str>, event: Option<Arc<str>>, data: Arc<str>) -> Self {
        Event {
            seq,
            id,
            event,
            data,
            published: Instant::now(),
            sse: OnceLock::new(),
            envelope: OnceLock::new(),
            data_bytes: OnceLock::new(),
        }
    }

    /// The SSE block (`id:`, `event:`, `data:` lines and the blank line).
    pub fn sse_frame(&self) -> Bytes {
        self.sse
            .get_or_init(|| {
                crate::sse::encode_event(Some(&self.id), self.event.as_deref(), &self.data)
            })
            .clone()
    }

    /// The JSON object `{"id":…,"event":…,"data":…}`: the WebSocket envelope and a long-poll batch item.
    pub fn envelope(&self) -> Bytes {
        self.envelope
            .get_or_init(|| {
                let value = serde_json::json!({
                    "id": &*self.id,
                    "event": self.event.as_deref().unwrap_or("message"),
                    "data": &*self.data,
                });
                Bytes::from(value.to_string())
            })
            .clone()
    }

    /// The payload alone, for `ws.format: data`.
    pub fn data_frame(&self) -> Bytes {
        self.data_bytes
            .get_or_init(|| Bytes::copy_from_slice(self.data.as_bytes()))
            .clone()
    }
}
