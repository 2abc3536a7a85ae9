//! SSE client transport (WHATWG HTML §9.2): `text/event-stream` with an immediate first flush (a comment and
//! `retry:`, so clients see the stream is live), the application's `retry:` passed on within the route's bounds (and
//! again whenever it changes), heartbeat comments when a `heartbeat` passed without writes,
//! resume from `Last-Event-ID`, the gap event, and a clean end on drain or when the client falls behind (the
//! browser reconnects with `Last-Event-ID`).
//!
//! The body is a [`Feed`]: each wake-up appends everything the subscriber can take at that moment (up to
//! [`MAX_WRITE`] bytes, plus one event) to one buffer, so a client that fell behind catches up in few large writes
//! and the cost per event falls as the load rises. The direct HTTP/1.1 path writes the buffer itself; hyper gets it as one frame.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::ends::Ends;
use super::{OpenGauge, StreamContext};
use crate::event::Event;
use crate::hub::{Next, Stream, Subscription};
use crate::{Body, BoxError};

/// The heartbeat: an empty comment line.
const HEARTBEAT: &[u8] = b":\n";
/// Most events taken from the ring per read of it.
const BATCH: usize = 64;
/// Bytes gathered for one write at most (a client far behind catches up in writes of this size).
pub const MAX_WRITE: usize = 64 * 1024;
/// Room [`Feed::fill`] leaves after the events it appends, so a writer can frame them without growing the buffer:
/// an HTTP/1.1 chunk's size line and CRLF (12 bytes) and the last chunk (5).
pub const FRAMING_ROOM: usize = 24;
/// The same over HTTP/2, where h2 cuts every write into 16 KiB frames anyway and buffers each one whole on top of
/// `limits.h2_send_buffer` for a client that does not read.
pub const MAX_WRITE_HTTP2: usize = 16 * 1024;

/// The event that `?open=1` asks for at the start of the stream: a visible sign (EventSource does not show
/// comments) that the stream is not being held back by a buffering proxy.
pub const OPEN_EVENT: &str = "pushbridge-open";

/// Serves one SSE client from `subscription` (resumed from its `Last-Event-ID` header or query); `announce_open`
/// adds the [`OPEN_EVENT`] to the first flush. The response's body is the [`Feed`].
pub fn serve(
    ctx: StreamContext,
    subscription: Subscription,
    announce_open: bool,
) -> http::Response<Feed> {
    let heartbeat = ctx.route.config.heartbeat;
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let retry = client_retry(&ctx, subscription.stream());
    let mut preamble = crate::sse::encode_comment("pushbridge").to_vec();
    preamble.extend_from_slice(&crate::sse::encode_retry(millis(retry)));
    if announce_open {
        preamble.extend_from_slice(&crate::sse::encode_event(None, Some(OPEN_EVENT), "{}"));
    }
    let feed = Feed {
        ends: Ends::new(&ctx.drain, &ctx.kick),
        _gauge: OpenGauge::new(&ctx.metrics, "sse", ctx.http_version),
        preamble: Some(Bytes::from(preamble)),
        subscription,
        ticker,
        retry,
        active: false,
        ctx,
        done: false,
        pending: VecDeque::new(),
    };
    let mut response = http::Response::new(feed);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One SSE client's stream of bytes.
pub struct Feed {
    /// The drain and the kick (a kicked connection is being dropped; the sweeper counted it), polled only when
    /// one of them fired.
    ends: Ends,
    ctx: StreamContext,
    subscription: Subscription,
    ticker: Interval,
    /// The `retry:` the client has.
    retry: Duration,
    /// Something was written since the last tick: no heartbeat needed (cheaper than resetting the timer per event).
    active: bool,
    /// The first flush, until it is taken.
    preamble: Option<Bytes>,
    _gauge: OpenGauge,
    done: bool,
    /// Events taken from the ring but not written yet (a batch larger than [`MAX_WRITE`]), oldest first.
    pending: VecDeque<Arc<Event>>,
}

impl Feed {
    /// Waits until there is something to send, then appends all that is ready (up to [`MAX_WRITE`] bytes in all)
    /// to `out`. `false` when the stream has ended (`out` may still have received its last bytes). Cancel-safe: it
    /// waits only while it has appended nothing.
    pub async fn fill(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if let Some(preamble) = self.preamble.take() {
            out.extend_from_slice(&preamble);
        }
        self.write_pending(out, start);
        while out.len() == start && !self.done {
            let next = tokio::select! {
                biased;
                _ = &mut self.ends => Next::Closed,
                next = self.subscription.next(BATCH) => next,
                _ = self.ticker.tick() => {
                    self.refresh_retry(out);
                    if !std::mem::take(&mut self.active) {
                        out.extend_from_slice(HEARTBEAT);
                    }
                    continue;
                }
            };
            self.take(next, out, start);
        }
        // Whatever else is ready goes out in the same write (nothing is when the last read reached the head).
        while !self.done
            && out.len() - start < self.max_write()
            && self.pending.is_empty()
            && !self.subscription.caught_up()
        {
            match self.subscription.try_next(BATCH) {
                Some(next) => self.take(next, out, start),
                None => break,
            }
        }
        !self.done
    }

    /// Appends pending events while the write (from `start`) is under [`Feed::max_write`]: one write holds at most
    /// that plus one event, however large the events (a batch of 64 large ones would be megabytes per client).
    fn write_pending(&mut self, out: &mut Vec<u8>, start: usize) {
        let max = self.max_write();
        let mut n = 0;
        let mut len = out.len() - start;
        for event in &self.pending {
            if len >= max {
                break;
            }
            len += event.sse_bytes().len();
            n += 1;
        }
        if n == 0 {
            return;
        }
        // One allocation for the wake-up's buffer, with room for its framing (an HTTP/1.1 chunk).
        out.reserve(len + start - out.len() + FRAMING_ROOM);
        let events = &self.pending.make_contiguous()[..n];
        for event in events {
            out.extend_from_slice(event.sse_bytes());
        }
        let subscription = &self.subscription;
        self.ctx
            .metrics
            .delivered("sse", events, |e| subscription.is_live(e));
        self.pending.drain(..n);
    }

    /// [`MAX_WRITE`], or [`MAX_WRITE_HTTP2`] over HTTP/2.
    fn max_write(&self) -> usize {
        if self.ctx.http_version == "http2" {
            MAX_WRITE_HTTP2
        } else {
            MAX_WRITE
        }
    }

    fn take(&mut self, next: Next, out: &mut Vec<u8>, start: usize) {
        match next {
            Next::Events(events) => {
                // The upstream's retry: came before these events: the client gets it first too.
                self.refresh_retry(out);
                self.active = true;
                self.pending.extend(events);
                self.write_pending(out, start);
            }
            Next::Gap { last_event_id } => {
                out.extend_from_slice(&gap_frame(&self.ctx.route.config.gap_event, &last_event_id))
            }
            Next::Lagged => {
                self.ctx
                    .metrics
                    .slow_consumers
                    .with_label_values(&["sse"])
                    .inc();
                tracing::debug!(stream = %self.ctx.key, "SSE subscriber fell behind: ending its stream");
                self.done = true;
            }
            Next::Closed => self.done = true,
        }
    }

    /// Appends a `retry:` line when the route's client retry changed since the client last got one.
    fn refresh_retry(&mut self, out: &mut Vec<u8>) {
        let retry = client_retry(&self.ctx, self.subscription.stream());
        if retry != self.retry {
            self.retry = retry;
            self.active = true;
            out.extend_from_slice(&crate::sse::encode_retry(millis(retry)));
        }
    }

    /// The feed as a hyper body (HTTP/2): one data frame per wake-up. The wait for the next frame is one future
    /// that owns the feed and restarts in place for each frame, inside the body's box: an idle stream holds one
    /// copy of the feed in one allocation (`stream::unfold` kept two copies, and a box of its own).
    pub fn into_body(self) -> Body {
        FeedBody {
            next: Some(next_frame(self)),
            restart: next_frame,
        }
        .boxed_unsync()
    }
}

/// Waits for the feed's next bytes: the feed back, the bytes, and whether the stream goes on.
#[allow(clippy::manual_async_fn)] // an `async fn` would keep its argument twice
fn next_frame(mut feed: Feed) -> impl Future<Output = (Feed, Vec<u8>, bool)> + Send {
    async move {
        let mut out = Vec::new();
        let more = feed.fill(&mut out).await;
        (feed, out, more)
    }
}

pin_project_lite::pin_project! {
    /// [`Feed::into_body`]'s body: `next` is the wait for the next frame (none once the stream ended), `restart`
    /// makes the next wait from the feed.
    struct FeedBody<F, R> {
        #[pin]
        next: Option<F>,
        restart: R,
    }
}

impl<F, R> http_body::Body for FeedBody<F, R>
where
    F: Future<Output = (Feed, Vec<u8>, bool)>,
    R: Fn(Feed) -> F,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let Some(next) = this.next.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let (feed, out, more) = ready!(next.poll(cx));
        // The finished wait's room takes the next one.
        if more && !out.is_empty() {
            this.next.set(Some((this.restart)(feed)));
        } else {
            this.next.set(None);
        }
        if out.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }

    fn is_end_stream(&self) -> bool {
        self.next.is_none()
    }
}

/// The `retry:` for this route's clients: the application's latest (or `sse.retry` while it sent none), no lower
/// than `upstream.reconnect.initial` and no higher than `sse.retry_max`.
pub fn client_retry(ctx: &StreamContext, stream: &Stream) -> Duration {
    let config = &ctx.route.config;
    let ceiling = config.sse.retry_max;
    let floor = config.upstream.reconnect.initial.min(ceiling);
    stream
        .retry()
        .unwrap_or(config.sse.retry)
        .clamp(floor, ceiling)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The gap notice: an event named by `gap_event` whose data names the id that could not be resumed from. It has no
/// `id:` line, so the client's last event id is unchanged by it.
pub fn gap_frame(gap_event: &str, last_event_id: &str) -> Bytes {
    let data = serde_json::json!({ "last_event_id": last_event_id }).to_string();
    crate::sse::encode_event(None, Some(gap_event), &data)
}
