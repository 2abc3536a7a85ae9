//! The drain handle passed to every task, and signal handling: SIGTERM and SIGINT start a drain, SIGHUP asks for
//! a config reload.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Drain,
    Reload,
}

/// Listens for SIGTERM, SIGINT and SIGHUP and reports them in order.
pub fn signals() -> std::io::Result<mpsc::Receiver<Signal>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = term.recv() => Signal::Drain,
                Some(()) = int.recv() => Signal::Drain,
                Some(()) = hup.recv() => Signal::Reload,
                else => break,
            };
            if tx.send(signal).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Started when the server drains: listeners stop accepting, streams end.
#[derive(Debug, Clone, Default)]
pub struct Drain(CancellationToken);

impl Drain {
    pub fn new() -> Drain {
        Drain(CancellationToken::new())
    }

    pub fn start(&self) {
        self.0.cancel();
    }

    pub fn is_started(&self) -> bool {
        self.0.is_cancelled()
    }

    pub fn token(&self) -> CancellationToken {
        self.0.clone()
    }

    pub async fn started(&self) {
        self.0.cancelled().await;
    }
}
