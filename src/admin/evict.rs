//! Room on a full admin listener: when every permit is held, a new connection takes the place of the oldest
//! idle one (no request in flight: silent since its accept, or between keep-alive requests), so probes never
//! wait behind idle sockets. Only when every connection has a request in flight does a new one wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::listener::watch::OWN_HANDLES;

/// The admin listener's open connections, oldest first.
#[derive(Default)]
pub struct Connections {
    open: Mutex<(u64, BTreeMap<u64, Entry>)>,
}

struct Entry {
    /// The connection's permit (the connection holds [`OWN_HANDLES`] handles on it, more while busy).
    permit: Weak<OwnedSemaphorePermit>,
    evict: CancellationToken,
}

/// A connection's place in [`Connections`], given up on drop.
pub struct Registration {
    id: u64,
    connections: Arc<Connections>,
    /// Cancelled when the connection must close to make room.
    pub evicted: CancellationToken,
}

impl Connections {
    /// Registers a connection (newest last) by its permit, on which it holds at most [`OWN_HANDLES`] handles
    /// while idle.
    pub fn register(self: &Arc<Self>, permit: &Arc<OwnedSemaphorePermit>) -> Registration {
        let evicted = CancellationToken::new();
        let mut open = lock(&self.open);
        let id = open.0;
        open.0 += 1;
        open.1.insert(
            id,
            Entry {
                permit: Arc::downgrade(permit),
                evict: evicted.clone(),
            },
        );
        Registration {
            id,
            connections: self.clone(),
            evicted,
        }
    }

    /// Tells the oldest idle connection to close (its permit is freed once it has); false if none is idle.
    pub fn evict_idle(&self) -> bool {
        let mut open = lock(&self.open);
        let idle = open
            .1
            .iter()
            .find(|(_, entry)| entry.permit.strong_count() <= OWN_HANDLES)
            .map(|(id, _)| *id);
        let Some(entry) = idle.and_then(|id| open.1.remove(&id)) else {
            return false;
        };
        entry.evict.cancel();
        true
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.connections.open).1.remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[test]
    fn the_oldest_idle_connection_is_evicted_busy_ones_never() {
        let permits = Arc::new(Semaphore::new(3));
        let connections = Arc::new(Connections::default());
        // Each connection holds its own handles on its permit; a third handle means a request in flight.
        let held: Vec<_> = (0..3)
            .map(|_| {
                let permit = Arc::new(permits.clone().try_acquire_owned().unwrap());
                let handles = vec![permit.clone(), permit.clone()];
                let registration = connections.register(&permit);
                (handles, registration)
            })
            .collect();
        let busy = held[0].0[0].clone();
        assert!(connections.evict_idle());
        assert!(!held[0].1.evicted.is_cancelled(), "busy");
        assert!(held[1].1.evicted.is_cancelled(), "the oldest idle");
        assert!(connections.evict_idle());
        assert!(held[2].1.evicted.is_cancelled());
        assert!(!connections.evict_idle(), "only a busy one is left");
        drop(busy);
        assert!(connections.evict_idle());
    }
}
