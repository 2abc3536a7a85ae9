//! Pass-through bodies and the request-body deadline: once the application's response has ended (or was
//! dropped), the rest of the client's request body must arrive within `passthrough.body_timeout`, so a client
//! that trickles a body the application no longer wants cannot hold the connection (and the upstream request)
//! forever. While the response is still streaming (gRPC bidirectional streams, long uploads answered at the end)
//! the body is not limited. Trailers pass through in both directions (`Frame::trailers`), except request trailers
//! to an HTTP/1.1 application ([`RequestBody::without_trailers`]).
//!
//! An application that answers early and stops reading (closes, or resets its HTTP/2 stream) drops the request
//! body while the client is still sending it. Dropping it at once would reset the client (TCP reset on HTTP/1.1,
//! `RST_STREAM` on HTTP/2) while the answer is on its way, and clients lose it (curl: no status, or error 92). So
//! the rest is read and discarded for a while first ([`linger`]), as a server's lingering close does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::BoxError;
use crate::metrics::Metrics;
use crate::transports::ws::{LINGER_BYTES, LINGER_TIME};

/// The request body of a pass-through request: the client's body (or none, for a WebSocket upgrade) under the
/// deadline armed by the paired [`ResponseBody`].
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Resolves when the response ended; then `deadline` is armed.
    response_done: Option<oneshot::Receiver<()>>,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    /// End the body at its trailers instead of sending them.
    drop_trailers: bool,
}

/// The error a request body ends with when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("request body not complete {0:?} after the response ended")]
pub struct BodyTimeout(Duration);

impl RequestBody {
    /// An empty body (the WebSocket upgrade request).
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            response_done: None,
            deadline: None,
            timeout: Duration::ZERO,
            metrics: None,
            drop_trailers: false,
        }
    }

    /// This body without its trailers, for an HTTP/1.1 application: some (aiohttp) take request trailers as the
    /// head of the next request on the connection, which the pool may give to another client (as nginx does,
    /// request trailers are not sent over HTTP/1.1).
    pub fn without_trailers(mut self) -> RequestBody {
        self.drop_trailers = true;
        self
    }
}

/// Wraps a request body and its response: the body gets `timeout` once the response has ended.
pub fn timed(
    body: Incoming,
    timeout: Duration,
    metrics: Arc<Metrics>,
) -> (RequestBody, ResponseDone) {
    let (tx, rx) = oneshot::channel();
    let body = RequestBody {
        inner: Some(body),
        response_done: Some(rx),
        deadline: None,
        timeout,
        metrics: Some(metrics),
        drop_trailers: false,
    };
    (body, ResponseDone(Some(tx)))
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if this.drop_trailers
                && let Some(Ok(frame)) = &frame
                && frame.is_trailers()
            {
                tracing::debug!(
                    "Pass-through request trailers not sent to an HTTP/1.1 application"
                );
                this.inner = None;
                return Poll::Ready(None);
            }
            return Poll::Ready(frame.map(|r| r.map_err(BoxError::from)));
        }
        if let Some(done) = this.response_done.as_mut() {
            // Ok: the response ended; Err: it was dropped (client gone, or the request failed).
            if Pin::new(done).poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.response_done = None;
            this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
        }
        let expired = this
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        this.inner = None;
        if let Some(metrics) = &this.metrics {
            metrics.passthrough.body_timeouts.inc();
        }
        tracing::debug!(timeout = ?this.timeout, "Pass-through request body too slow after the response: dropped");
        Poll::Ready(Some(Err(BodyTimeout(this.timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if inner.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let time = self.timeout.min(LINGER_TIME);
            runtime.spawn(linger(inner, time, self.metrics.take()));
        }
    }
}

/// Reads and discards the rest of a request body the application no longer reads, for at most `time` (the
/// smaller of `passthrough.body_timeout` and 2 s) and [`LINGER_BYTES`], so the client reads the answer before
/// its request is cut; a cut is counted with the body timeouts.
async fn linger(mut body: Incoming, time: Duration, metrics: Option<Arc<Metrics>>) {
    let mut left = LINGER_BYTES;
    let drained = tokio::time::timeout(time, async {
        while let Some(frame) = body.frame().await {
            match frame.map(Frame::into_data) {
                Ok(Ok(data)) => match left.checked_sub(data.len()) {
                    Some(rest) => left = rest,
                    None => return false,
                },
                Ok(Err(_)) => {}       // trailers
                Err(_) => return true, // the client is gone: nothing to cut
            }
        }
        true
    })
    .await;
    if drained != Ok(true) {
        tracing::debug!(
            ?time,
            "Pass-through request body still arriving after the early answer: cut"
        );
        if let Some(metrics) = metrics {
            metrics.passthrough.body_timeouts.inc();
        }
    }
}

/// Arms the paired request body's deadline when dropped or [`fire`](ResponseDone::fire)d.
pub struct ResponseDone(Option<oneshot::Sender<()>>);

impl ResponseDone {
    pub fn fire(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// The application's response body; its end arms the request body's deadline.
pub struct ResponseBody {
    inner: Incoming,
    done: ResponseDone,
}

impl ResponseBody {
    pub fn new(inner: Incoming, done: ResponseDone) -> ResponseBody {
        ResponseBody { inner, done }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.done.fire(),
            _ => {}
        }
        polled.map(|frame| frame.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
