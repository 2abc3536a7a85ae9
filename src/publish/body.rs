//! A publish request's body → events, all or nothing (docs/protocol.md, "Publishing"): `application/json` (one
//! object `{"data", "event", "id"}` or an array of them), `application/x-ndjson` (one object per line), anything
//! else (the whole body is the data; `?event=` and `?id=` name it). `data` may be any JSON value (sent as its
//! compact text); `event` and `id` must be strings without CR, LF or NUL (they become SSE field lines), an id at
//! most [`MAX_ID_BYTES`] (400). An event whose data, name and id together pass `limits.max_event_bytes`, or a
//! request past its [`Bounds`] of events or bytes, is refused with 413. Pure, unit-tested.

use http::StatusCode;
use serde_json::Value;

use super::answer::Refusal;
use crate::event::EVENT_OVERHEAD;
use crate::hub::Published;

/// Most events one request publishes (fewer when the route's `buffer.events` is smaller).
pub const MAX_EVENTS: usize = 1000;
/// Longest event id (longer: 400).
pub const MAX_ID_BYTES: usize = 1024;

/// What one request may hold: a batch larger than the route's ring would evict itself before a subscriber or a
/// resume could read it.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `limits.max_event_bytes`: data, name and id of one event.
    pub max_event_bytes: usize,
    /// [`MAX_EVENTS`], or the route's `buffer.events` if smaller.
    pub max_events: usize,
    /// The route's `buffer.max_bytes`, against [`batch_bytes`].
    pub max_batch_bytes: usize,
}

/// An event's bytes as its stream's buffer counts them once it is sent: its fields, their SSE encoding (about as
/// long) and [`EVENT_OVERHEAD`].
pub fn batch_bytes(event: &Published) -> usize {
    let fields = event.id.as_deref().map_or(0, str::len)
        + event.event.as_deref().map_or(0, str::len)
        + event.data.len();
    2 * fields + EVENT_OVERHEAD
}

fn too_large(message: String) -> Refusal {
    Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
}

fn too_many(bounds: &Bounds) -> Refusal {
    too_large(format!(
        "more than {} events in one request (at most {MAX_EVENTS}, and never more than the route's buffer.events)",
        bounds.max_events
    ))
}

/// How the body is read, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Text,
}

impl Format {
    /// The format a `Content-Type` value names (media type compared case-insensitively, parameters ignored).
    pub fn of(content_type: Option<&[u8]>) -> Format {
        let media = content_type
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("application/json") => Format::Json,
            Some("application/x-ndjson" | "application/ndjson") => Format::Ndjson,
            _ => Format::Text,
        }
    }
}

/// The events of a body, or why none of them is published.
pub fn parse(
    format: Format,
    body: &[u8],
    query: Option<&str>,
    bounds: &Bounds,
) -> Result<Vec<Published>, Refusal> {
    let (event, id) = query_fields(query)?;
    if format != Format::Text && (event.is_some() || id.is_some()) {
        return Err(Refusal::bad_request(
            "?event= and ?id= apply to a text body; a JSON or NDJSON event carries its own \"event\" and \"id\"",
        ));
    }
    let events = match format {
        Format::Text => {
            let data = std::str::from_utf8(body)
                .map_err(|_| Refusal::bad_request("the body is not UTF-8"))?;
            if data.is_empty() {
                return Err(Refusal::bad_request(
                    "the body is empty: an event needs data",
                ));
            }
            let published = Published {
                id,
                event,
                data: data.to_owned(),
            };
            check(&published, "the event")?;
            vec![published]
        }
        Format::Json => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| Refusal::bad_request(format!("the body is not JSON: {e}")))?;
            match value {
                Value::Array(items) if items.is_empty() => {
                    return Err(Refusal::bad_request("the array holds no event"));
                }
                Value::Array(items) if items.len() > bounds.max_events => {
                    return Err(too_many(bounds));
                }
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| object(item, &format!("event [{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
                item => vec![object(item, "the event")?],
            }
        }
        Format::Ndjson => {
            let mut events = Vec::new();
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if events.len() == bounds.max_events {
                    return Err(too_many(bounds));
                }
                let at = format!("line {}", i + 1);
                let value: Value = serde_json::from_slice(line)
                    .map_err(|e| Refusal::bad_request(format!("{at}: not JSON: {e}")))?;
                events.push(object(value, &at)?);
            }
            if events.is_empty() {
                return Err(Refusal::bad_request("the body holds no event"));
            }
            events
        }
    };
    let mut total = 0usize;
    for (i, event) in events.iter().enumerate() {
        let bytes = event.data.len()
            + event.event.as_deref().map_or(0, str::len)
            + event.id.as_deref().map_or(0, str::len);
        if bytes > bounds.max_event_bytes {
            return Err(too_large(format!(
                "event {} has {bytes} bytes of data, name and id, over limits.max_event_bytes ({})",
                i + 1,
                bounds.max_event_bytes
            )));
        }
        total = total.saturating_add(batch_bytes(event));
    }
    if total > bounds.max_batch_bytes {
        return Err(too_large(format!(
            "the events would take {total} bytes of the stream's buffer, over the route's buffer.max_bytes ({}): \
             the batch would evict itself; publish it in smaller requests",
            bounds.max_batch_bytes
        )));
    }
    Ok(events)
}

/// `?event=` and `?id=` (percent-decoded); any other parameter is refused.
fn query_fields(query: Option<&str>) -> Result<(Option<String>, Option<String>), Refusal> {
    let (mut event, mut id) = (None, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "event" if event.is_none() => event = Some(value.into_owned()),
            "id" if id.is_none() => id = Some(value.into_owned()),
            "event" | "id" => {
                return Err(Refusal::bad_request(format!("?{name}= is given twice")));
            }
            _ => {
                return Err(Refusal::bad_request(
                    "unknown query parameter: only ?event= and ?id= are read",
                ));
            }
        }
    }
    Ok((event.filter(|e| !e.is_empty()), id))
}

/// One `{"data", "event", "id"}` object.
fn object(value: Value, at: &str) -> Result<Published, Refusal> {
    let Value::Object(fields) = value else {
        return Err(Refusal::bad_request(format!(
            "{at}: expected an object {{\"data\": ..., \"event\": \"name\", \"id\": \"x\"}}"
        )));
    };
    let mut published = Published::default();
    let mut has_data = false;
    for (name, value) in fields {
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("data", Value::String(text)) => {
                published.data = text;
                has_data = true;
            }
            ("data", other) => {
                published.data = other.to_string();
                has_data = true;
            }
            ("event", Value::String(text)) => {
                published.event = Some(text).filter(|e| !e.is_empty());
            }
            ("id", Value::String(text)) => published.id = Some(text),
            ("event" | "id", _) => {
                return Err(Refusal::bad_request(format!(
                    "{at}: \"{name}\" must be a string"
                )));
            }
            _ => {
                return Err(Refusal::bad_request(format!(
                    "{at}: unknown field (an event has \"data\", \"event\" and \"id\")"
                )));
            }
        }
    }
    if !has_data {
        return Err(Refusal::bad_request(format!("{at} has no \"data\"")));
    }
    check(&published, at)?;
    Ok(published)
}

/// An event name or id must fit on an SSE field line; an id must not be empty.
fn check(event: &Published, at: &str) -> Result<(), Refusal> {
    for (field, value) in [("event", &event.event), ("id", &event.id)] {
        if value
            .as_deref()
            .is_some_and(|v| v.contains(['\r', '\n', '\0']))
        {
            return Err(Refusal::bad_request(format!(
                "{at}: \"{field}\" holds a line break or NUL"
            )));
        }
    }
    if event.id.as_ref().is_some_and(|id| id.len() > MAX_ID_BYTES) {
        return Err(Refusal::bad_request(format!(
            "{at}: \"id\" is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    if event.id.as_deref() == Some("") {
        return Err(Refusal::bad_request(format!(
            "{at}: \"id\" is empty (leave it out to have one assigned)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_event_bytes: 100,
        max_events: 3,
        max_batch_bytes: 3 * (2 * 100 + EVENT_OVERHEAD),
    };

    fn ok(
        format: Format,
        body: &str,
        query: Option<&str>,
    ) -> Vec<(Option<String>, Option<String>, String)> {
        parse(format, body.as_bytes(), query, &BOUNDS)
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.event, p.data))
            .collect()
    }

    fn refused(format: Format, body: &str, query: Option<&str>) -> (u16, String) {
        let refusal = parse(format, body.as_bytes(), query, &BOUNDS).unwrap_err();
        (refusal.status.as_u16(), refusal.message)
    }

    #[test]
    fn content_type_picks_the_format() {
        assert_eq!(
            Format::of(Some(b"application/json; charset=utf-8")),
            Format::Json
        );
        assert_eq!(Format::of(Some(b"Application/X-NDJSON")), Format::Ndjson);
        assert_eq!(Format::of(Some(b"text/plain")), Format::Text);
        assert_eq!(Format::of(None), Format::Text);
    }

    #[test]
    fn each_format_gives_its_events() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            ok(Format::Text, "hello\nworld", Some("event=greet&id=a%201")),
            [(s("a 1"), s("greet"), "hello\nworld".to_owned())]
        );
        assert_eq!(
            ok(
                Format::Json,
                r#"{"data": {"x": [1, 2]}, "event": "e"}"#,
                None
            ),
            [(None, s("e"), r#"{"x":[1,2]}"#.to_owned())]
        );
        assert_eq!(
            ok(
                Format::Json,
                r#"[{"data": "a", "id": "1"}, {"data": 2}]"#,
                None
            ),
            [(s("1"), None, "a".to_owned()), (None, None, "2".to_owned())]
        );
        assert_eq!(
            ok(
                Format::Ndjson,
                "{\"data\":\"a\"}\r\n\n{\"data\":\"b\",\"event\":\"\"}\n",
                None
            ),
            [(None, None, "a".to_owned()), (None, None, "b".to_owned())]
        );
    }

    #[test]
    fn every_refusal_says_why_and_where() {
        let (status, message) =
            refused(Format::Ndjson, "{\"data\":1}\n{\"data\":2}\n{oops\n", None);
        assert_eq!(status, 400);
        assert!(message.starts_with("line 3: not JSON"), "{message}");
        let (_, message) = refused(Format::Json, r#"[{"data": 1}, {"event": "x"}]"#, None);
        assert_eq!(message, "event [1] has no \"data\"");
        let (_, message) = refused(Format::Json, r#"{"data": 1, "id": "a\nb"}"#, None);
        assert!(message.contains("line break"), "{message}");
        let (_, message) = refused(Format::Text, "x", Some("event=a%00b"));
        assert!(message.contains("NUL"), "{message}");
        let (_, message) = refused(Format::Json, r#"{"data": 1, "date": 2}"#, None);
        assert!(message.contains("unknown field"), "{message}");
        let (_, message) = refused(Format::Json, r#"{"data": 1}"#, Some("event=x"));
        assert!(message.contains("text body"), "{message}");
        let (status, _) = refused(Format::Text, &"x".repeat(101), None);
        assert_eq!(status, 413);
        let (status, _) = refused(Format::Json, "[]", None);
        assert_eq!(status, 400);
        let (status, _) = refused(Format::Text, "", None);
        assert_eq!(status, 400);
    }

    #[test]
    fn the_bounds_count_names_ids_and_events() {
        // Data 90 + name 11: over 100.
        let body = format!(
            r#"{{"data": "{}", "event": "{}"}}"#,
            "x".repeat(90),
            "e".repeat(11)
        );
        assert_eq!(refused(Format::Json, &body, None).0, 413);
        let (status, message) =
            refused(Format::Text, "x", Some(&format!("id={}", "i".repeat(1025))));
        assert_eq!(status, 400, "{message}");
        assert!(message.contains("longer than 1024"), "{message}");
        assert_eq!(
            ok(Format::Json, r#"[{"data":1},{"data":2},{"data":3}]"#, None).len(),
            3
        );
        let (status, message) = refused(
            Format::Json,
            r#"[{"data":1},{"data":2},{"data":3},{"data":4}]"#,
            None,
        );
        assert_eq!(status, 413);
        assert!(message.contains("more than 3 events"), "{message}");
        let (status, _) = refused(
            Format::Ndjson,
            "{\"data\":1}\n{\"data\":2}\n{\"data\":3}\n{\"data\":4}\n",
            None,
        );
        assert_eq!(status, 413);
        let small = Bounds {
            max_batch_bytes: 2 * (2 * 100 + EVENT_OVERHEAD),
            ..BOUNDS
        };
        let full = format!(r#"{{"data": "{}"}}"#, "x".repeat(100));
        let three = format!("[{full},{full},{full}]");
        let refusal = parse(Format::Json, three.as_bytes(), None, &small).unwrap_err();
        assert!(
            refusal.message.contains("buffer.max_bytes"),
            "{}",
            refusal.message
        );
        assert_eq!(
            parse(Format::Json, three.as_bytes(), None, &BOUNDS)
                .unwrap()
                .len(),
            3
        );
    }
}
