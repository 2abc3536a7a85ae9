//! What one HTTP/2 connection may hold (issue 16 item 2): at most `limits.h2_max_streams_per_connection` streams
//! (announced in SETTINGS_MAX_CONCURRENT_STREAMS; h2 refuses more with REFUSED_STREAM, a conforming client queues
//! them), `limits.h2_send_buffer` bytes buffered per stream for a client that does not read (hyper's 400 KiB
//! default held ~100 MB per connection of 200 never-read streams), and receive windows of [`STREAM_WINDOW`] /
//! [`CONNECTION_WINDOW`]. Each stream in flight holds a [`Slot`] so reaching the limit is counted and logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::metrics::Metrics;

/// The receive window of each stream (request bodies; RFC 9113 §6.9.2 SETTINGS_INITIAL_WINDOW_SIZE).
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// The receive window of the whole connection.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// The streams in flight on one connection.
#[derive(Clone)]
pub struct Streams {
    open: Arc<AtomicUsize>,
    max: usize,
    /// The bound's name in the log line.
    bound: &'static str,
}

impl Streams {
    pub fn new(max: u32, bound: &'static str) -> Streams {
        Streams {
            open: Arc::default(),
            max: max as usize,
            bound,
        }
    }

    /// A slot for a new stream, given back when dropped; reaching the limit is counted and (rate-limited) logged.
    pub fn open(&self, metrics: &Metrics) -> Slot {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        if now == self.max {
            metrics.http2_stream_limit_reached.inc();
            crate::log_limited!(
                metrics.logs,
                crate::logs::LogKind::Refused,
                "h2_streams",
                info!(
                    max = self.max,
                    bound = self.bound,
                    "HTTP/2 connection at its stream limit; further streams are refused"
                )
            );
        }
        Slot(self.open.clone())
    }
}

/// One stream in flight.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
