//! The event-stream encoder: fields → one `text/event-stream` block (WHATWG HTML §9.2.5 "Parsing an event stream",
//! the grammar; §9.2.6 for how a browser reads it back).
//!
//! Every field is written as `name: value` with one space, so a value that itself starts with a space survives the
//! decoder stripping one. Values never contain a line end: `id` and `event` lose CR/LF, `data` is split into one
//! `data:` line per line.

use std::borrow::Cow;

use bytes::Bytes;
use memchr::memchr2;

/// One event block: `id:` (when given), `event:` (when given and not empty), one `data:` line per line of `data`
/// (split on LF, CRLF or CR; empty data gives one `data:` line), then the blank line that dispatches it.
/// CR and LF are removed from `id` and `event` so they cannot break framing; NUL is removed from `id` too, since a
/// browser ignores an `id` line containing NUL.
pub fn encode_event(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    let extra = id.map_or(0, str::len) + event.map_or(0, str::len);
    let mut out = Vec::with_capacity(data.len() + extra + 32);
    if let Some(id) = id {
        push_field(&mut out, b"id", &strip(id, &['\r', '\n', '\0']));
    }
    if let Some(event) = event {
        let event = strip(event, &['\r', '\n']);
        if !event.is_empty() {
            push_field(&mut out, b"event", &event);
        }
    }
    for line in lines(data) {
        push_field(&mut out, b"data", line);
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// A comment, one `: line` per line of `text` (an empty line gives `:`). Browsers ignore it; it keeps idle
/// connections alive and shows that the stream is flowing. No blank line follows: a comment dispatches nothing.
pub fn encode_comment(text: &str) -> Bytes {
    let mut out = Vec::with_capacity(text.len() + 4);
    for line in lines(text) {
        push_field(&mut out, b"", line);
    }
    Bytes::from(out)
}

/// Sets the client's reconnection time: `retry: N` and a blank line. The block has no data, so a browser
/// dispatches nothing (§9.2.6: an empty data buffer at a blank line only resets the buffers).
pub fn encode_retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

/// `name: value\n`, or `name:\n` when the value is empty.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.push(b':');
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

/// `value` without the characters in `drop` (borrowed when there are none).
fn strip<'a>(value: &'a str, drop: &[char]) -> Cow<'a, [u8]> {
    if value.contains(drop) {
        Cow::Owned(value.replace(drop, "").into_bytes())
    } else {
        Cow::Borrowed(value.as_bytes())
    }
}

/// The lines of `text`, split on LF, CRLF and CR; "" is one empty line and a trailing line end gives a last empty
/// line, so joining with LF gives `text` back with its line ends normalised.
fn lines(text: &str) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text.as_bytes());
    std::iter::from_fn(move || {
        let bytes = rest?;
        match memchr2(b'\r', b'\n', bytes) {
            Some(i) => {
                let next = if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
                rest = Some(&bytes[next..]);
                Some(&bytes[..i])
            }
            None => {
                rest = None;
                Some(bytes)
            }
        }
    })
}
