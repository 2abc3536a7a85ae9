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
    flag: Arc<Flag>,
    waker: Waker,
}

/// Set by the tokens' wake-ups; holds the waker of the task polling [`Ends`].
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

impl Ends {
    pub fn new(drain: &CancellationToken, kick: &CancellationToken) -> Ends {
        // Woken at first: the first poll registers with both tokens.
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Ends {
            drained: Box::pin(drain.clone().cancelled_owned()),
            kicked: Box::pin(kick.clone().cancelled_owned()),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl Future for Ends {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let mut inner = Context::from_waker(&this.waker);
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
    flag: Arc<Flag>,
    waker: Waker,
}

impl<F: Future + Unpin> Gated<F> {
    pub fn new(future: F) -> Gated<F> {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Gated {
            future,
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&this.waker))
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
        let mut gated = Gated::new(Box::pin(async {
            let got = std::future::poll_fn(|cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                rx.poll_recv(cx)
            })
            .await;
            got
        }));
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
}
