//! What the JSON kinds (`ws`, `ndjson`, `poll`) share: turning a text or JSON document into a [`Published`]
//! event through the route's `map` pointers (RFC 6901), publishing it with the hub's bookkeeping, counting and
//! rate-limited logging of what is skipped, and putting the resume position into the request (`resume`).

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Uri};
use serde_json::Value;

use super::UpstreamSpec;
use crate::config::{MapConfig, ResumeConfig};
use crate::error::UpstreamError;
use crate::hub::{Published, Stream};
use crate::metrics::Metrics;

/// Why an upstream message or line did not become an event.
#[derive(Debug)]
pub(super) enum Skip {
    NotJson(String),
    Oversize(usize),
    /// A pointer selected a value of the wrong type (`id`: string or number; `event`: string).
    BadField(&'static str),
    /// The `data` pointer selects nothing in the document.
    NoData,
    /// An id or event name with a line break or NUL (they could not be framed for SSE clients).
    Unframeable(&'static str),
    Binary,
    NotUtf8,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotJson(e) => write!(f, "not JSON: {e}"),
            Skip::Oversize(bytes) => {
                write!(f, "at least {bytes} bytes, over limits.max_event_bytes")
            }
            Skip::BadField(field) => {
                write!(f, "the {field} pointer selects a value of the wrong type")
            }
            Skip::NoData => f.write_str("the data pointer selects nothing"),
            Skip::Unframeable(field) => write!(f, "the {field} contains a line break or NUL"),
            Skip::Binary => f.write_str("binary message refused (set upstream.binary: base64)"),
            Skip::NotUtf8 => f.write_str("not UTF-8"),
        }
    }
}

/// One event from a text message or line. Without `map` the text is the data; `json` also requires it to be a
/// JSON document (NDJSON lines).
pub(super) fn from_text(
    map: Option<&MapConfig>,
    text: &str,
    json: bool,
) -> Result<Published, Skip> {
    match map {
        None if !json => Ok(event(None, None, text.to_owned())),
        None => serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(|_| event(None, None, text.to_owned()))
            .map_err(|e| Skip::NotJson(e.to_string())),
        Some(map) => {
            let doc: Value =
                serde_json::from_str(text).map_err(|e| Skip::NotJson(e.to_string()))?;
            from_value(Some(map), &doc)
        }
    }
}

/// One event from a parsed document (a poll response's array element). Without `map` the whole document is
/// the data: a string as is, anything else as its JSON text.
pub(super) fn from_value(map: Option<&MapConfig>, doc: &Value) -> Result<Published, Skip> {
    let Some(map) = map else {
        return Ok(event(None, None, json_text(doc)));
    };
    let id = match map.id.as_ref().and_then(|p| p.select(doc)) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(Skip::BadField("id")),
    };
    let name = match map.event.as_ref().and_then(|p| p.select(doc)) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Skip::BadField("event")),
    };
    if id.as_deref().is_some_and(unframeable) {
        return Err(Skip::Unframeable("id"));
    }
    if name.as_deref().is_some_and(unframeable) {
        return Err(Skip::Unframeable("event name"));
    }
    let data = match &map.data {
        None => json_text(doc),
        Some(pointer) => json_text(pointer.select(doc).ok_or(Skip::NoData)?),
    };
    Ok(event(
        id.filter(|id| !id.is_empty()),
        name.filter(|n| !n.is_empty()),
        data,
    ))
}

fn unframeable(text: &str) -> bool {
    text.contains(['\r', '\n', '\0'])
}

fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// `..Default::default()`: the hub's `Published` may grow fields the upstream does not set.
#[allow(clippy::needless_update)]
fn event(id: Option<String>, event: Option<String>, data: String) -> Published {
    Published {
        id,
        event,
        data,
        ..Default::default()
    }
}

/// Publishes events and accounts for skipped input of one connector (kept across its sessions).
pub(super) struct Feed {
    /// `poll`: the cursor of the last response (the resume position while the connector runs).
    pub(super) cursor: Option<String>,
    /// `poll`: the last response's `ETag`, sent as `If-None-Match`.
    pub(super) etag: Option<HeaderValue>,
}

impl Feed {
    pub(super) fn new() -> Feed {
        Feed {
            cursor: None,
            etag: None,
        }
    }

    /// Publishes `result` (or counts and logs why it was skipped); true when a new event reached the hub.
    pub(super) fn offer(
        &mut self,
        spec: &UpstreamSpec,
        stream: &Arc<Stream>,
        metrics: &Metrics,
        result: Result<Published, Skip>,
    ) -> bool {
        match result {
            Ok(event) if event.data.len() > spec.max_event_bytes => {
                self.skip(spec, stream, metrics, Skip::Oversize(event.data.len()));
                false
            }
            Ok(event) => {
                metrics
                    .upstream
                    .events_received
                    .with_label_values(&[&*spec.route])
                    .inc();
                stream.publish(event)
            }
            Err(skip) => {
                self.skip(spec, stream, metrics, skip);
                false
            }
        }
    }

    /// Counts skipped input in `pushbridge_upstream_malformed_total` and logs it within the log rate limit.
    pub(super) fn skip(
        &mut self,
        spec: &UpstreamSpec,
        stream: &Stream,
        metrics: &Metrics,
        why: Skip,
    ) {
        metrics
            .upstream
            .malformed
            .with_label_values(&[&*spec.route])
            .inc();
        crate::log_limited!(
            metrics.logs,
            crate::logs::LogKind::UpstreamMalformed,
            stream.key(),
            warn!(stream = %stream.key(), kind = %spec.kind, reason = %why, "Upstream input skipped")
        );
    }
}

/// Where the resume position goes: the URL with `?NAME=position` (an existing `NAME` replaced), or a header.
pub(super) fn resume_target(
    url: &Uri,
    resume: Option<&ResumeConfig>,
    position: Option<&str>,
) -> Result<(Uri, Option<(HeaderName, HeaderValue)>), UpstreamError> {
    let (Some(resume), Some(position)) = (resume, position) else {
        return Ok((url.clone(), None));
    };
    if let Some(name) = &resume.header {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| UpstreamError::Request(e.to_string()))?;
        let value =
            HeaderValue::from_str(position).map_err(|e| UpstreamError::Request(e.to_string()))?;
        return Ok((url.clone(), Some((name, value))));
    }
    let Some(name) = &resume.query else {
        return Ok((url.clone(), None));
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(url.query().unwrap_or("").as_bytes()) {
        if key != name.as_str() {
            query.append_pair(&key, &value);
        }
    }
    query.append_pair(name, position);
    let path_and_query = format!("{}?{}", url.path(), query.finish());
    let mut parts = url.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamError::Request(e.to_string()))?,
    );
    let uri = Uri::from_parts(parts).map_err(|e| UpstreamError::Request(e.to_string()))?;
    Ok((uri, None))
}

/// The position a (re)connecting session asks for: the newest id the hub holds, when the route has `resume`.
pub(super) fn resume_position(spec: &UpstreamSpec, stream: &Arc<Stream>) -> Option<String> {
    spec.options.resume.as_ref()?;
    stream.newest_id().map(|id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JsonPointer;

    fn map(id: &str, event: &str, data: &str) -> MapConfig {
        let p = |s: &str| (!s.is_empty()).then(|| JsonPointer::parse(s).unwrap());
        MapConfig {
            id: p(id),
            event: p(event),
            data: p(data),
        }
    }

    #[test]
    fn kubernetes_watch_shape() {
        let line = r#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"42"}}}"#;
        let got = from_text(
            Some(&map("/object/metadata/resourceVersion", "/type", "/object")),
            line,
            true,
        )
        .unwrap();
        assert_eq!(got.id.as_deref(), Some("42"));
        assert_eq!(got.event.as_deref(), Some("ADDED"));
        assert_eq!(
            got.data,
            r#"{"kind":"Pod","metadata":{"name":"a","resourceVersion":"42"}}"#
        );
    }

    #[test]
    fn without_map_the_text_is_the_data() {
        assert_eq!(from_text(None, "not json", false).unwrap().data, "not json");
        assert!(matches!(
            from_text(None, "not json", true),
            Err(Skip::NotJson(_))
        ));
        assert_eq!(
            from_text(None, r#"{"a":1}"#, true).unwrap().data,
            r#"{"a":1}"#
        );
        assert_eq!(from_value(None, &serde_json::json!("s")).unwrap().data, "s");
    }

    #[test]
    fn field_types_are_checked() {
        let m = map("/id", "/type", "/d");
        let ok = from_text(Some(&m), r#"{"id":7,"d":[1]}"#, false).unwrap();
        assert_eq!(
            (ok.id.as_deref(), ok.event, ok.data.as_str()),
            (Some("7"), None, "[1]")
        );
        for (bad, why) in [
            (r#"{"id":{},"d":1}"#, "id"),
            (r#"{"type":1,"d":1}"#, "event"),
            (r#"{"id":"a\nb","d":1}"#, "line"),
            (r#"{"id":1}"#, "nothing"),
        ] {
            let err = from_text(Some(&m), bad, false).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn resume_goes_into_query_or_header() {
        let url: Uri = "http://h/feed?since=old&x=1".parse().unwrap();
        let query = ResumeConfig {
            query: Some("since".into()),
            header: None,
        };
        let (uri, header) = resume_target(&url, Some(&query), Some("a b")).unwrap();
        assert_eq!(uri.to_string(), "http://h/feed?x=1&since=a+b");
        assert!(header.is_none());
        let (uri, _) = resume_target(&url, Some(&query), None).unwrap();
        assert_eq!(uri, url);
        let header = ResumeConfig {
            query: None,
            header: Some("x-resume-after".into()),
        };
        let (uri, h) = resume_target(&url, Some(&header), Some("9")).unwrap();
        assert_eq!((uri, h.unwrap().1), (url, HeaderValue::from_static("9")));
    }
}
