//! Poll upstream: repeated `GET`s of a JSON document, turning an old polling API into a live stream. Each
//! response's array at `poll.events` becomes events through `map`; the cursor at `poll.cursor` goes back on the
//! next request through `resume` (before the first response of a connector: the newest id held). `ETag` is
//! sent back as `If-None-Match`; `304 Not Modified` means nothing new. A short-poll endpoint is asked every
//! `poll.interval`; a long-poll endpoint holds the request until it has something (`interval: 0s`). A body
//! over `limits.max_event_bytes` or one that is not JSON is counted and skipped; a failed request ends the
//! session, so the supervisor backs off.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{ACCEPT, ETAG, HeaderValue, IF_NONE_MATCH};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;

use super::map::{self, Feed, Skip};
use super::{HttpClient, SessionEnd, UpstreamSpec};
use crate::config::PollConfig;
use crate::error::UpstreamError;
use crate::hub::Stream;
use crate::metrics::Metrics;

/// Longest wait for one poll response (a long-poll endpoint holds the request for less than this).
pub const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn session(
    spec: &UpstreamSpec,
    client: &HttpClient<Empty<Bytes>>,
    stream: &Arc<Stream>,
    feed: &mut Feed,
    metrics: &Metrics,
) -> Result<SessionEnd, UpstreamError> {
    let route = &*spec.route;
    let defaults = PollConfig::default();
    let poll = spec.options.poll.as_ref().unwrap_or(&defaults);
    let mut up = None;
    loop {
        // The cursor of the previous response; without one (first request, or no `poll.cursor`) the newest id.
        let resumed_from = feed
            .cursor
            .clone()
            .filter(|_| spec.options.resume.is_some())
            .or_else(|| map::resume_position(spec, stream));
        let polled = request(spec, client, resumed_from.as_deref(), feed).await;
        if up.is_none() {
            super::count_attempt(metrics, route, &polled);
        }
        let response = polled?;
        if up.is_none() {
            up = Some(super::connected(
                spec,
                stream,
                metrics,
                resumed_from.as_deref(),
            ));
        }
        match response {
            Polled::NotModified => {}
            Polled::Body(body) => match serde_json::from_slice::<Value>(&body) {
                Ok(doc) => publish(spec, poll, stream, feed, metrics, &doc),
                Err(e) => feed.skip(spec, stream, metrics, Skip::NotJson(e.to_string())),
            },
            Polled::Oversize => {
                feed.skip(
                    spec,
                    stream,
                    metrics,
                    Skip::Oversize(spec.max_event_bytes + 1),
                );
                // Asking again at once would fetch the same body: back off instead.
                return Err(UpstreamError::Body(format!(
                    "response over limits.max_event_bytes ({})",
                    spec.max_event_bytes
                )));
            }
        }
        tokio::time::sleep(poll.interval).await;
    }
}

fn publish(
    spec: &UpstreamSpec,
    poll: &PollConfig,
    stream: &Arc<Stream>,
    feed: &mut Feed,
    metrics: &Metrics,
    doc: &Value,
) {
    match poll.events.select(doc) {
        Some(Value::Array(events)) => {
            for item in events {
                let result = map::from_value(spec.options.map.as_ref(), item);
                feed.offer(spec, stream, metrics, result);
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => feed.skip(spec, stream, metrics, Skip::BadField("events")),
    }
    if let Some(pointer) = &poll.cursor {
        match pointer.select(doc) {
            Some(Value::String(s)) if !s.is_empty() => feed.cursor = Some(s.clone()),
            Some(Value::Number(n)) => feed.cursor = Some(n.to_string()),
            // No cursor in this response: keep the previous one.
            None | Some(Value::Null) => {}
            Some(_) => feed.skip(spec, stream, metrics, Skip::BadField("cursor")),
        }
    }
}

/// What one poll brought.
enum Polled {
    NotModified,
    Body(Bytes),
    /// The body passed `limits.max_event_bytes` (not read further).
    Oversize,
}

async fn request(
    spec: &UpstreamSpec,
    client: &HttpClient<Empty<Bytes>>,
    position: Option<&str>,
    feed: &mut Feed,
) -> Result<Polled, UpstreamError> {
    let (url, header) = map::resume_target(&spec.url, spec.options.resume.as_ref(), position)?;
    let mut request = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| UpstreamError::Request(e.to_string()))?;
    let headers = request.headers_mut();
    headers.extend(spec.headers.clone());
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some((name, value)) = header {
        headers.insert(name, value);
    }
    if let Some(etag) = &feed.etag {
        headers.insert(IF_NONE_MATCH, etag.clone());
    }
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| UpstreamError::Connect(crate::error::chain(&e)))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(Polled::NotModified),
            StatusCode::OK => {}
            other => return Err(UpstreamError::Status(other)),
        }
        let etag = response.headers().get(ETAG).cloned();
        let limited = Limited::new(response.into_body(), spec.max_event_bytes);
        match limited.collect().await {
            Ok(body) => {
                feed.etag = etag;
                Ok(Polled::Body(body.to_bytes()))
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(Polled::Oversize),
            Err(e) => Err(UpstreamError::Body(e.to_string())),
        }
    };
    tokio::time::timeout(POLL_REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| UpstreamError::Timeout(POLL_REQUEST_TIMEOUT))?
}
