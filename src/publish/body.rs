//! A publish request's body → events, all or nothing (docs/protocol.md, "Publishing"): `application/json` (one
//! object `{"data", "event", "id"}` or an array of them), `application/x-ndjson` (one object per line), anything
//! else (the whole body is the data; `?event=` and `?id=` name it). `data` may be any JSON value (sent as its
//! compact text); `event` and `id` must be strings without CR, LF or NUL (they become SSE field lines); data over
//! `limits.max_event_bytes` is refused with 413. Pure, unit-tested.

use http::StatusCode;
use serde_json::Value;

use super::answer::Refusal;
use crate::hub::Published;

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
    max_event_bytes: usize,
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
    for (i, event) in events.iter().enumerate() {
        if event.data.len() > max_event_bytes {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "event {} has {} bytes of data, over limits.max_event_bytes ({max_event_bytes})",
                    i + 1,
                    event.data.len()
                ),
            ));
        }
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

    fn ok(
        format: Format,
        body: &str,
        query: Option<&str>,
    ) -> Vec<(Option<String>, Option<String>, String)> {
        parse(format, body.as_bytes(), query, 100)
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.event, p.data))
            .collect()
    }

    fn refused(format: Format, body: &str, query: Option<&str>) -> (u16, String) {
        let refusal = parse(format, body.as_bytes(), query, 100).unwrap_err();
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
}
