//! SSE upstream: one `GET` with `Accept: text/event-stream` (and `Last-Event-ID: <the hub's newest id>` when it
//! holds one), decoded with [`crate::sse::Decoder`] and published into the hub. A non-200 status or another content
//! type is a failure; so is silence (no bytes, not even a comment) for `upstream.idle_timeout`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Empty};

use super::{HttpClient, SessionEnd, UpstreamSpec};
use crate::error::UpstreamError;
use crate::hub::{Published, Stream};
use crate::metrics::Metrics;
use crate::sse::{Decoder, Item};

/// Kept across reconnects: the decoder and the upstream's `retry:`.
pub(super) struct State {
    decoder: Decoder,
    pub(super) retry: Option<Duration>,
    items: Vec<Item>,
}

impl State {
    pub(super) fn new(max_event_bytes: usize) -> State {
        State {
            decoder: Decoder::new(max_event_bytes),
            retry: None,
            items: Vec::new(),
        }
    }
}

pub(super) async fn session(
    spec: &UpstreamSpec,
    client: &HttpClient<Empty<Bytes>>,
    stream: &Arc<Stream>,
    state: &mut State,
    metrics: &Metrics,
) -> Result<SessionEnd, UpstreamError> {
    let route = &*spec.route;
    // The hub's newest id, not the decoder's: it outlives this connector (a dormant stream restarts with a new one).
    let resume_from = stream.newest_id();
    let connected = connect(spec, client, resume_from.as_deref().unwrap_or_default()).await;
    super::count_attempt(metrics, route, &connected);
    let response = connected?;
    let _up = super::connected(spec, stream, metrics, resume_from.as_deref());

    state.decoder.restart();
    let mut body = response.into_body();
    let mut delivered = false;
    loop {
        let frame = match tokio::time::timeout(spec.idle_timeout, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                metrics.upstream.silent.with_label_values(&[route]).inc();
                return Err(UpstreamError::Silent(spec.idle_timeout));
            }
        };
        let frame = frame.map_err(|e| UpstreamError::Body(e.to_string()))?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        state.decoder.feed(chunk, &mut state.items);
        for item in state.items.drain(..) {
            match item {
                Item::Event(event) => {
                    metrics
                        .upstream
                        .events_received
                        .with_label_values(&[route])
                        .inc();
                    delivered |= stream.publish(Published {
                        id: event.id,
                        event: event.event,
                        data: event.data,
                    });
                }
                Item::LastEventId(id) => stream.set_upstream_last_id(&id),
                Item::Retry(retry) => {
                    state.retry = Some(retry);
                    stream.set_retry(retry);
                }
                Item::Oversize { bytes } => {
                    metrics.upstream.malformed.with_label_values(&[route]).inc();
                    crate::log_limited!(
                        metrics.logs,
                        crate::logs::LogKind::UpstreamMalformed,
                        stream.key(),
                        warn!(
                            stream = %stream.key(), bytes, limit = spec.max_event_bytes,
                            "Upstream event over max_event_bytes dropped"
                        )
                    );
                }
            }
        }
    }
    Ok(SessionEnd::Closed { delivered })
}

async fn connect(
    spec: &UpstreamSpec,
    client: &HttpClient<Empty<Bytes>>,
    last_event_id: &str,
) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
    let mut request = http::Request::get(spec.url.clone())
        .body(Empty::new())
        .map_err(|e| UpstreamError::Request(e.to_string()))?;
    let headers = request.headers_mut();
    headers.extend(spec.headers.clone());
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !last_event_id.is_empty()
        && let Ok(value) = HeaderValue::from_str(last_event_id)
    {
        headers.insert("last-event-id", value);
    }
    let response = tokio::time::timeout(spec.connect_timeout, client.request(request))
        .await
        .map_err(|_| UpstreamError::Timeout(spec.connect_timeout))?
        .map_err(|e| UpstreamError::Connect(crate::error::chain(&e)))?;
    let status = response.status();
    if status != http::StatusCode::OK {
        return Err(UpstreamError::Status(status));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/event-stream")
    {
        return Err(UpstreamError::ContentType(content_type.to_owned()));
    }
    Ok(response)
}
