//! The publish listener's budget of request body bytes in flight (read, or held until the request is answered),
//! all requests and connections together: [`MAX_BYTES`]. A request whose body would pass it gets 503 with
//! `Retry-After` and publishes nothing; `publish.max_body` bounds one request, this bounds them all (1 024
//! connections × 8 HTTP/2 streams × `max_body` would otherwise be the memory a caller can make pushbridge hold).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

/// Most body bytes in flight at once.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// `Retry-After` seconds of a 503 at the budget.
pub const RETRY_AFTER: u32 = 1;

/// The bytes in flight.
pub struct Budget {
    held: Arc<AtomicUsize>,
    gauge: IntGauge,
}

impl Budget {
    pub fn new(gauge: IntGauge) -> Budget {
        Budget {
            held: Arc::default(),
            gauge,
        }
    }

    /// An empty hold for one request.
    pub fn hold(&self) -> Held {
        Held {
            held: self.held.clone(),
            gauge: self.gauge.clone(),
            bytes: 0,
        }
    }
}

/// One request's bytes, given back when dropped.
pub struct Held {
    held: Arc<AtomicUsize>,
    gauge: IntGauge,
    bytes: usize,
}

impl Held {
    /// Takes `n` more bytes; `false` when that passes [`MAX_BYTES`] (they are taken anyway, until the drop).
    pub fn take(&mut self, n: usize) -> bool {
        self.bytes += n;
        self.gauge.add(n as i64);
        self.held.fetch_add(n, Ordering::Relaxed) + n <= MAX_BYTES
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
        self.gauge.sub(self.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_add_up_and_are_given_back() {
        let budget = Budget::new(IntGauge::new("g", "g").unwrap());
        let mut a = budget.hold();
        assert!(a.take(MAX_BYTES - 10));
        let mut b = budget.hold();
        assert!(b.take(10));
        assert!(!b.take(1), "one byte past the budget");
        drop(b);
        assert_eq!(budget.gauge.get() as usize, MAX_BYTES - 10);
        drop(a);
        assert_eq!(budget.gauge.get(), 0);
        assert!(budget.hold().take(MAX_BYTES));
    }
}
