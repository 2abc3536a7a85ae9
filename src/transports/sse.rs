//! SSE client transport (WHATWG HTML §9.2): `text/event-stream` with an immediate first flush (a comment and
//! `retry:`, so clients see the stream is live), the application's `retry:` passed on within the route's bounds (and
//! again whenever it changes), heartbeat comments when a `heartbeat` passed without writes,
//! resume from `Last-Event-ID`, the gap event, and a clean end on drain or when the client falls behind (the
//! browser reconnects with `Last-Event-ID`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::{OpenGauge, StreamContext};
use crate::hub::{Next, Resume, Stream, Subscription};
use crate::{Body, BoxError};

/// The heartbeat: an empty comment line.
const HEARTBEAT: &[u8] = b":\n";
/// Most events taken from the ring per wake-up.
const BATCH: usize = 64;

/// The event that `?open=1` asks for at the start of the stream: a visible sign (EventSource does not show
/// comments) that the stream is not being held back by a buffering proxy.
pub const OPEN_EVENT: &str = "pushbridge-open";

/// Serves one SSE client. `last_event_id` comes from the `Last-Event-ID` header (or the query); `announce_open`
/// adds the [`OPEN_EVENT`] to the first flush.
pub fn serve(
    ctx: StreamContext,
    last_event_id: Option<&str>,
    announce_open: bool,
) -> http::Response<Body> {
    let resume = last_event_id.map_or(Resume::Live, Resume::After);
    let subscription = ctx.subscribe(resume, "sse");
    let heartbeat = ctx.route.config.heartbeat;
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let retry = client_retry(&ctx, subscription.stream());
    let mut preamble = crate::sse::encode_comment("pushbridge").to_vec();
    preamble.extend_from_slice(&crate::sse::encode_retry(millis(retry)));
    if announce_open {
        preamble.extend_from_slice(&crate::sse::encode_event(None, Some(OPEN_EVENT), "{}"));
    }
    let state = State {
        drained: Box::pin(ctx.drain.clone().cancelled_owned()),
        kicked: Box::pin(ctx.kick.clone().cancelled_owned()),
        _gauge: OpenGauge::new(&ctx.metrics, "sse", ctx.http_version),
        gap_event: ctx.route.config.gap_event.clone(),
        pending: VecDeque::from([Bytes::from(preamble)]),
        subscription,
        ticker,
        retry,
        active: false,
        ctx,
        done: false,
    };
    let body = StreamBody::new(stream::unfold(state, next_frame)).boxed_unsync();
    let mut response = http::Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct State {
    /// Registered once for the whole stream (not per event: a cancellation token's waiters share a lock).
    drained: Pin<Box<WaitForCancellationFutureOwned>>,
    kicked: Pin<Box<WaitForCancellationFutureOwned>>,
    ctx: StreamContext,
    subscription: Subscription,
    ticker: Interval,
    /// The `retry:` the client has.
    retry: Duration,
    /// Something was written since the last tick: no heartbeat needed (cheaper than resetting the timer per event).
    active: bool,
    pending: VecDeque<Bytes>,
    gap_event: String,
    _gauge: OpenGauge,
    done: bool,
}

impl State {
    /// Queues a `retry:` line when the route's client retry changed since the client last got one.
    fn refresh_retry(&mut self) {
        let retry = client_retry(&self.ctx, self.subscription.stream());
        if retry != self.retry {
            self.retry = retry;
            self.active = true;
            self.pending
                .push_back(crate::sse::encode_retry(millis(retry)));
        }
    }
}

async fn next_frame(mut state: State) -> Option<(Result<Frame<Bytes>, BoxError>, State)> {
    loop {
        if let Some(bytes) = state.pending.pop_front() {
            return Some((Ok(Frame::data(bytes)), state));
        }
        if state.done {
            return None;
        }
        let next = tokio::select! {
            biased;
            () = &mut state.drained => Next::Closed,
            // A kicked connection is being dropped; the sweeper counted it.
            () = &mut state.kicked => Next::Closed,
            next = state.subscription.next(BATCH) => next,
            _ = state.ticker.tick() => {
                state.refresh_retry();
                if !std::mem::take(&mut state.active) {
                    state.pending.push_back(Bytes::from_static(HEARTBEAT));
                }
                continue;
            }
        };
        match next {
            Next::Events(events) => {
                // The upstream's retry: came before these events: the client gets it first too.
                state.refresh_retry();
                state.active = true;
                for event in &events {
                    state.pending.push_back(event.sse_frame());
                    if state.subscription.is_live(event) {
                        state.ctx.metrics.delivered("sse", event);
                    } else {
                        state.ctx.metrics.delivered_replayed("sse");
                    }
                }
            }
            Next::Gap { last_event_id } => state
                .pending
                .push_back(gap_frame(&state.gap_event, &last_event_id)),
            Next::Lagged => {
                state
                    .ctx
                    .metrics
                    .slow_consumers
                    .with_label_values(&["sse"])
                    .inc();
                tracing::debug!(stream = %state.ctx.key, "SSE subscriber fell behind: ending its stream");
                state.done = true;
            }
            Next::Closed => state.done = true,
        }
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
