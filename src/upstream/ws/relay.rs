//! `ws.subprotocols_upstream: pass`: the meeting point of a client's WebSocket handshake and the first handshake of
//! its per-client upstream connection. The connection offers the client's `Sec-WebSocket-Protocol` list (RFC 6455
//! §4.1) and reports the application's answer here; the client's handshake waits for it and relays the choice in
//! its 101. Keyed by the per-client session number; an entry lives only while its client waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderValue;
use tokio::sync::oneshot;

/// What the application answered to the first upstream handshake of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 101 selecting this subprotocol, one the client offered (`None`: no `Sec-WebSocket-Protocol`).
    Selected(Option<HeaderValue>),
    /// A 101 selecting a subprotocol the client did not offer (the upstream connection is closed).
    Unoffered,
    /// Another status than 101.
    Refused(StatusCode),
    /// No answer: unreachable, timed out, or not a valid WebSocket handshake.
    Failed,
}

/// The clients waiting for their upstream's first handshake, of one route.
#[derive(Debug, Default)]
pub struct Relay {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl Relay {
    /// Registers session `session` as waiting; call before its upstream connection starts.
    pub fn wait(self: &Arc<Self>, session: u64) -> Waiting {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(session, tx);
        Waiting {
            relay: self.clone(),
            session,
            rx,
        }
    }

    /// Hands `answer` to session `session`'s client if it still waits (only the first answer is relayed).
    pub fn answer(&self, session: u64, answer: Answer) {
        if let Some(tx) = self.lock().remove(&session) {
            let _ = tx.send(answer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client's wait for its upstream's answer; leaves the relay when dropped.
#[derive(Debug)]
pub struct Waiting {
    relay: Arc<Relay>,
    session: u64,
    rx: oneshot::Receiver<Answer>,
}

impl Waiting {
    /// The answer, or [`Answer::Failed`] when none came within `within`.
    pub async fn answer(&mut self, within: Duration) -> Answer {
        match tokio::time::timeout(within, &mut self.rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => Answer::Failed,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.relay.lock().remove(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_answer_reaches_the_waiting_client_and_entries_leave() {
        let relay = Arc::new(Relay::default());
        let mut waiting = relay.wait(7);
        relay.answer(8, Answer::Unoffered);
        relay.answer(7, Answer::Selected(None));
        relay.answer(7, Answer::Failed);
        assert_eq!(
            waiting.answer(Duration::from_secs(1)).await,
            Answer::Selected(None)
        );
        assert!(relay.lock().is_empty());
        let mut late = relay.wait(9);
        assert_eq!(late.answer(Duration::from_secs(1)).await, Answer::Failed);
        drop(late);
        assert!(relay.lock().is_empty());
    }
}
