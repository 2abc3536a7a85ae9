//! Long-poll client transport (DESIGN §4): a `GET` after a cursor (`last_event_id`) is answered at once with the
//! events newer than it (up to `long_poll.max_batch`), or held until one arrives or `long_poll.timeout` passes.
//!
//! A held poll is a subscription (a cursor into the shared ring) and a timer; it is dropped as soon as the poll is
//! answered, so between polls a client costs nothing. The answer's `last_event_id` is the client's next cursor:
//! where the subscription stands after the answer (the last event sent; with none, the position it started at, as
//! an id or a position token), so a gap is reported once and a poll without a cursor learns the stream position.
//! The cursor is the app's id only while that id names one event, and a poll's `last_event_id` resumes as a cursor
//! (`Resume::Cursor`): a reused id then still means the occurrence it was given for (docs/protocol.md, "Long-poll
//! cursors and reused ids").
//! `wait=0` answers at once, never held (the browser client learns its first cursor this way).

mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::{OpenGauge, Served, StreamContext};
use crate::config::LongPollConfig;
use crate::event::Event;
use crate::hub::{Next, Subscription};
use crate::{Body, full_body};

/// Metrics label and slow-consumer label of this transport.
const TRANSPORT: &str = "long-poll";

/// Answers one poll from `subscription` (at the cursor: the `last_event_id` query parameter or the `Last-Event-ID`
/// header). `query` is the request's query string (for `callback=` and `wait=`). A poll that has to wait is
/// [`Served::Held`]: only its cursor, timer and context stay while it waits.
pub fn serve(ctx: StreamContext, mut subscription: Subscription, query: Option<&str>) -> Served {
    let config = ctx.route.config.long_poll;
    let callback = match callback(query, config.jsonp) {
        Ok(callback) => callback,
        Err(reason) => return Served::Now(refuse(reason)),
    };
    let wait = match wait(query, config.timeout) {
        Ok(wait) => wait,
        Err(reason) => return Served::Now(refuse(reason)),
    };
    let gauge = OpenGauge::new(&ctx.metrics, TRANSPORT, ctx.http_version);
    if wait.is_zero() {
        let mut gap = false;
        let first = ready(&mut subscription, config.max_batch, &mut gap).now_or_never();
        if let Some(events) = first.as_ref()
            && (!events.is_empty() || subscription.settled())
        {
            let events = first.unwrap_or_default();
            return Served::Now(respond(&ctx, subscription, gauge, events, gap, callback));
        }
        // A deep resume's read of the durable log, or the first position of its connector, is still to come: the
        // answer waits for that (never for new events), at most `long_poll.timeout`.
        return Served::Held(
            Box::pin(async move {
                let settled = async {
                    let events = match first {
                        Some(events) => events,
                        None => ready(&mut subscription, config.max_batch, &mut gap).await,
                    };
                    if events.is_empty() {
                        subscription.settle().await;
                    }
                    events
                };
                let events = tokio::time::timeout(config.timeout, settled)
                    .await
                    .unwrap_or_default();
                respond(&ctx, subscription, gauge, events, gap, callback)
            }),
            http::HeaderMap::new(),
        );
    }
    Served::Held(
        Box::pin(async move {
            let (events, gap) = collect(&ctx, &mut subscription, &config, wait).await;
            respond(&ctx, subscription, gauge, events, gap, callback)
        }),
        http::HeaderMap::new(),
    )
}

/// The answer to a poll: the events (counted as delivered), the next cursor and the gap flag.
fn respond(
    ctx: &StreamContext,
    subscription: Subscription,
    gauge: OpenGauge,
    events: Vec<Arc<Event>>,
    gap: bool,
    callback: Option<String>,
) -> Response<Body> {
    let cursor = subscription.position();
    ctx.metrics
        .delivered(TRANSPORT, &events, |e| subscription.is_live(e));
    drop(subscription);
    drop(gauge);
    let json = wire::batch(&events, &cursor, gap);
    match callback {
        Some(callback) => answer(
            StatusCode::OK,
            "application/javascript; charset=utf-8",
            wire::jsonp(&callback, &json),
        ),
        None => answer(StatusCode::OK, "application/json", json),
    }
}

fn refuse(reason: &'static str) -> Response<Body> {
    answer(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        Bytes::from_static(reason.as_bytes()),
    )
}

/// Waits for the batch: events (with `gap` when the cursor was not buffered), or nothing by the timeout, drain,
/// a kick or the stream's end — then whatever is there at that moment. Never waits past the timeout.
async fn collect(
    ctx: &StreamContext,
    subscription: &mut Subscription,
    config: &LongPollConfig,
    wait: Duration,
) -> (Vec<Arc<Event>>, bool) {
    let mut gap = false;
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            biased;
            () = ctx.drain.cancelled() => None,
            () = ctx.kick.cancelled() => None,
            next = subscription.next(config.max_batch) => Some(next),
            () = &mut deadline => None,
        };
        match next {
            Some(Next::Events(events)) => return (events, gap),
            Some(Next::Gap { .. }) => gap = true,
            // The next event was evicted before it could be read (a tiny ring): answer without it; the next poll,
            // from the same cursor, is told about the gap by the hub.
            Some(Next::Lagged) => {
                tracing::debug!(stream = %ctx.key, "Long-poll fell behind the ring before answering");
                return (Vec::new(), gap);
            }
            Some(Next::Closed) => return (Vec::new(), gap),
            None => {
                let events = ready(subscription, config.max_batch, &mut gap).now_or_never();
                return (events.unwrap_or_default(), gap);
            }
        }
    }
}

/// What the subscription has without waiting for new events: the gap notice (sets `gap`), then a batch from the
/// ring or, in a deep resume, from the durable log (awaited).
async fn ready(subscription: &mut Subscription, max: usize, gap: &mut bool) -> Vec<Arc<Event>> {
    loop {
        match subscription.ready(max).await {
            Some(Next::Gap { .. }) => *gap = true,
            Some(Next::Events(events)) => return events,
            _ => return Vec::new(),
        }
    }
}

/// How long the poll may be held: `long_poll.timeout`, or less with `wait=<seconds>` (`wait=0`: answer at once).
fn wait(query: Option<&str>, timeout: Duration) -> Result<Duration, &'static str> {
    match query.and_then(|q| crate::negotiate::query_param(q, "wait")) {
        None => Ok(timeout),
        Some(seconds) => match seconds.parse::<u32>() {
            Ok(seconds) => Ok(timeout.min(Duration::from_secs(seconds.into()))),
            Err(_) => Err("wait must be a whole number of seconds (wait=0: answer at once)\n"),
        },
    }
}

/// The JSONP callback of the request: `None` for plain JSON, or why it is refused (400): invalid, or JSONP is off.
fn callback(query: Option<&str>, jsonp: bool) -> Result<Option<String>, &'static str> {
    let Some(callback) = query.and_then(|q| crate::negotiate::query_param(q, "callback")) else {
        return Ok(None);
    };
    if !jsonp {
        return Err("JSONP is not enabled on this route (long_poll.jsonp): remove callback=\n");
    }
    if !wire::valid_callback(&callback) {
        return Err(
            "callback must be a JavaScript identifier path ([A-Za-z_$][A-Za-z0-9_$]* segments joined by '.', at most 64 characters)\n",
        );
    }
    Ok(Some(callback))
}

fn answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}
