//! Long-poll wire format (DESIGN §4): the batch `{"events":[…],"last_event_id":"…","gap":false}` assembled from
//! each event's shared envelope bytes (encoded once per event, never per client), the JSONP wrapper, and the
//! callback-name rule. Pure functions.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::Event;

/// Longest JSONP callback name accepted.
pub const MAX_CALLBACK_LEN: usize = 64;

/// The JSON answer to one poll. Each event's item is its cached [`Event::envelope`]; only the frame around the
/// items is written here.
pub fn batch(events: &[Arc<Event>], last_event_id: &str, gap: bool) -> Bytes {
    let envelopes: Vec<Bytes> = events.iter().map(|e| e.envelope()).collect();
    let cursor = serde_json::Value::from(last_event_id).to_string();
    let items: usize = envelopes.iter().map(|e| e.len() + 1).sum();
    let mut out = BytesMut::with_capacity(items + cursor.len() + 48);
    out.put_slice(b"{\"events\":[");
    for (i, envelope) in envelopes.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(envelope);
    }
    out.put_slice(b"],\"last_event_id\":");
    out.put_slice(cursor.as_bytes());
    out.put_slice(if gap {
        b",\"gap\":true}"
    } else {
        b",\"gap\":false}"
    });
    out.freeze()
}

/// `/**/callback(json);` — the leading comment defuses content sniffing of the first bytes. U+2028 and U+2029,
/// legal in JSON strings but line terminators in pre-ES2019 JavaScript, are escaped (they can only occur inside
/// JSON strings, so the escape keeps the value).
pub fn jsonp(callback: &str, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + callback.len() + 8);
    out.put_slice(b"/**/");
    out.put_slice(callback.as_bytes());
    out.put_u8(b'(');
    let mut rest = json;
    while let Some(at) = rest
        .windows(3)
        .position(|w| w == b"\xe2\x80\xa8" || w == b"\xe2\x80\xa9")
    {
        out.put_slice(&rest[..at]);
        out.put_slice(if rest[at + 2] == 0xa8 {
            b"\\u2028"
        } else {
            b"\\u2029"
        });
        rest = &rest[at + 3..];
    }
    out.put_slice(rest);
    out.put_slice(b");");
    out.freeze()
}

/// A JSONP callback must be a JavaScript identifier path: `[A-Za-z_$][A-Za-z0-9_$]*` segments joined by `.`, at
/// most [`MAX_CALLBACK_LEN`] bytes. Nothing else can reach the script body.
pub fn valid_callback(name: &str) -> bool {
    let segment_ok = |segment: &str| {
        let mut bytes = segment.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    };
    name.len() <= MAX_CALLBACK_LEN && name.split('.').all(segment_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, id: &str, name: Option<&str>, data: &str) -> Arc<Event> {
        Arc::new(Event::new(seq, id.into(), name.map(Arc::from), data.into()))
    }

    #[test]
    fn batch_is_valid_json_with_the_shared_envelopes() {
        let events = [
            event(0, "1", None, "a \"quoted\"\nline"),
            event(1, "2", Some("tick"), "é"),
        ];
        let body = batch(&events, "2", false);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "events": [
                    {"id": "1", "event": "message", "data": "a \"quoted\"\nline"},
                    {"id": "2", "event": "tick", "data": "é"},
                ],
                "last_event_id": "2",
                "gap": false,
            })
        );
        // The items are the very bytes every other client gets.
        assert!(
            body.windows(events[1].envelope().len())
                .any(|w| w == events[1].envelope())
        );
    }

    #[test]
    fn empty_batch_escapes_the_cursor() {
        let body = batch(&[], "a\"b\\", true);
        assert_eq!(
            &body[..],
            br#"{"events":[],"last_event_id":"a\"b\\","gap":true}"#
        );
    }

    #[test]
    fn jsonp_wraps_and_escapes_js_line_terminators() {
        let events = [event(0, "1", None, "x\u{2028}y\u{2029}z")];
        let body = jsonp("cb.on_data", &batch(&events, "1", false));
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with("/**/cb.on_data({"), "{text}");
        assert!(text.ends_with("});"), "{text}");
        assert!(
            !text.contains('\u{2028}') && !text.contains('\u{2029}'),
            "{text}"
        );
        let json = &text["/**/cb.on_data(".len()..text.len() - 2];
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["events"][0]["data"], "x\u{2028}y\u{2029}z");
    }

    #[test]
    fn callback_names() {
        for good in [
            "cb",
            "_",
            "$",
            "jQuery123_456",
            "a.b.c",
            "$.x_1",
            &"a".repeat(MAX_CALLBACK_LEN),
        ] {
            assert!(valid_callback(good), "{good:?} should be accepted");
        }
        let long = "a".repeat(MAX_CALLBACK_LEN + 1);
        for bad in [
            "",
            "1a",
            "a..b",
            ".a",
            "a.",
            "a-b",
            "a(b)",
            "alert(1)//",
            "a b",
            "a[0]",
            "é",
            "a;b",
            &long,
        ] {
            assert!(!valid_callback(bad), "{bad:?} should be refused");
        }
    }
}
