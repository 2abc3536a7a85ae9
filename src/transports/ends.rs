//! A stream's two ends — the drain and its connection's kick — as one future that polls its cancellation tokens
//! only after one of them woke it. Polling a token's future takes its tree's lock and its `Notify`'s lock, and the
//! drain token is one for every connection: polled on every wake-up of every subscriber, that was ~3% of the CPU
//! at 1 000 SSE subscribers × 200 events/s (docs/BENCHMARKS.md, issue 17). [`Gated`] does the same for any future
//! sharing a task with a busier one (a WebSocket's reader beside its writer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Which end came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Drained,
    Kicked,
}

/// Ready when the connection is kicked or the drain starts (the kick first when both).
pub struct Ends {
    drained: Pin<Box<WaitForCancellationFutureOwned>>,
    kicked: Pin<Box<WaitForCancellationFutureOwned>>,
    gate: Gate,
}

/// Lets a future be polled only after a wake-up of its own: the inner future gets the gate's waker, which sets a
/// flag and wakes the task. A poll that finds the flag down touches nothing else: the task's waker is registered
/// again only after a wake-up took it or when the task changed (registering on every poll was itself ~2% of the CPU
/// at 1 000 SSE subscribers: a write to memory of every connection).
struct Gate {
    flag: Arc<Flag>,
    waker: Waker,
    /// The task waker last registered with `flag` (still there unless a wake-up took it, which raises the flag).
    registered: Option<Waker>,
}

/// Set by the inner future's wake-ups; holds the waker of the task polling the gate.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Gate {
    fn new() -> Gate {
        // Raised at first: the first poll registers with the inner future.
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Gate {
            waker: Waker::from(flag.clone()),
            flag,
            registered: None,
        }
    }

    /// Whether the inner future is to be polled now (with [`Gate::waker`]).
    fn open(&mut self, cx: &Context<'_>) -> bool {
        if !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.flag.task.register(cx.waker());
            self.registered = Some(cx.waker().clone());
        }
        if !self.flag.woken.load(Ordering::Acquire) {
            return false;
        }
        // A wake-up took the registered waker: lower the flag, then register again before polling, so a wake-up
        // from here on finds the waker (one before it is seen by the poll that follows).
        self.flag.woken.store(false, Ordering::Release);
        self.flag.task.register(cx.waker());
        true
    }
}

impl Ends {
    pub fn new(drain: &CancellationToken, kick: &CancellationToken) -> Ends {
        Ends {
            drained: Box::pin(drain.clone().cancelled_owned()),
            kicked: Box::pin(kick.clone().cancelled_owned()),
            gate: Gate::new(),
        }
    }
}

impl Future for Ends {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        if !this.gate.open(cx) {
            return Poll::Pending;
        }
        let mut inner = Context::from_waker(&this.gate.waker);
        if this.kicked.as_mut().poll(&mut inner).is_ready() {
            return Poll::Ready(End::Kicked);
        }
        if this.drained.as_mut().poll(&mut inner).is_ready() {
            return Poll::Ready(End::Drained);
        }
        Poll::Pending
    }
}

/// `F`, polled only after a wake-up of its own (and on the first poll): the task around it may be woken for other
/// futures (a WebSocket session's writer, on every event) without polling this one (its reader) each time.
pub struct Gated<F> {
    future: F,
    gate: Gate,
}

impl<F: Future + Unpin> Gated<F> {
    pub fn new(future: F) -> Gated<F> {
        Gated {
            future,
            gate: Gate::new(),
        }
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if !this.gate.open(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&this.gate.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_on_either_token_and_idle_otherwise() {
        use futures_util::FutureExt;
        let (drain, kick) = (CancellationToken::new(), CancellationToken::new());
        let mut ends = Ends::new(&drain, &kick);
        assert!((&mut ends).now_or_never().is_none());
        assert!((&mut ends).now_or_never().is_none());
        kick.cancel();
        assert_eq!(ends.await, End::Kicked);
        let mut ends = Ends::new(&drain, &CancellationToken::new());
        assert!((&mut ends).now_or_never().is_none());
        drain.cancel();
        assert_eq!(ends.await, End::Drained);
    }

    #[tokio::test]
    async fn a_gated_future_is_polled_only_after_its_own_wake_up() {
        use futures_util::FutureExt;
        use std::sync::atomic::AtomicUsize;
        let polls = AtomicUsize::new(0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let mut gated = Gated::new(Box::pin(std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            rx.poll_recv(cx)
        })));
        assert!((&mut gated).now_or_never().is_none());
        assert!((&mut gated).now_or_never().is_none());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "not polled again without a wake-up"
        );
        tx.send(7).unwrap();
        assert_eq!(gated.await, Some(7));
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_gated_future_sees_every_wake_up_of_its_own() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let (busy_tx, mut busy_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let task = tokio::spawn(async move {
            let mut gated = Gated::new(Box::pin(async move {
                let a = rx.recv().await;
                let b = rx.recv().await;
                (a, b)
            }));
            // Other wake-ups of the task (a writer's events) poll the gate without opening it.
            loop {
                tokio::select! {
                    got = &mut gated => return got,
                    Some(()) = busy_rx.recv() => {}
                }
            }
        });
        for _ in 0..3 {
            busy_tx.send(()).unwrap();
            tokio::task::yield_now().await;
        }
        tx.send(1).unwrap();
        for _ in 0..3 {
            busy_tx.send(()).unwrap();
            tokio::task::yield_now().await;
        }
        tx.send(2).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("every wake-up reaches the task")
            .unwrap();
        assert_eq!(got, (Some(1), Some(2)));
    }
}
