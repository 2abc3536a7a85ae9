//! Bytes of HTTP/1.x responses for the direct path, as hyper's HTTP/1 writes them: the status line (the request's
//! version) and headers (with `date`, the body's framing, and the `connection` field hyper adds), and chunk framing
//! written around a payload in place.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use http::header::DATE;
use http::response::Parts;

/// How a response's body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Until the connection closes (HTTP/1.0 streams).
    Close,
    /// No body: `101 Switching Protocols`.
    Upgrade,
}

/// The connection a response goes out on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Conn {
    /// The request was HTTP/1.0: so is the response's status line.
    pub http10: bool,
    /// Another request may follow the response.
    pub keep_alive: bool,
}

/// Appends the response head: `connection: close` when an HTTP/1.1 connection ends after it, `connection:
/// keep-alive` when an HTTP/1.0 one does not (hyper's rules).
pub fn head(out: &mut Vec<u8>, parts: &Parts, framing: Framing, conn: Conn) {
    out.extend_from_slice(if conn.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if bodyless(parts.status) => debug_assert_eq!(n, 0),
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Close | Framing::Upgrade => {}
    }
    match (conn.http10, conn.keep_alive) {
        (false, false) => out.extend_from_slice(b"connection: close\r\n"),
        (true, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Statuses that never carry a body or `content-length` (RFC 9110 §6.4.1, §8.6).
fn bodyless(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Room for a chunk-size line: up to 8 hex digits and CRLF.
const CHUNK_ROOM: usize = 10;

/// Frames the bytes from `at` to the end of `out` as one chunk: its size line goes in before them (they move up by
/// its length, a copy within the buffer: cheaper than growing a buffer made before their length was known) and the
/// CRLF after them. An empty payload leaves no chunk, as an empty chunk would end the body.
pub fn frame_chunk(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at;
    if len == 0 {
        return;
    }
    let mut line = [0u8; CHUNK_ROOM];
    let mut cursor = std::io::Cursor::new(&mut line[..]);
    // At most 8 hex digits: a chunk is never 4 GiB.
    let _ = write!(cursor, "{len:x}\r\n");
    let n = usize::try_from(cursor.position()).unwrap_or(CHUNK_ROOM);
    out.splice(at..at, line[..n].iter().copied());
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends the current `date` value (formatted once a second per thread).
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(status: StatusCode) -> Parts {
        let mut response = http::Response::new(());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        response.into_parts().0
    }

    fn conn(http10: bool, keep_alive: bool) -> Conn {
        Conn { http10, keep_alive }
    }

    #[test]
    fn a_head_carries_date_framing_and_close() {
        let mut out = Vec::new();
        let close = conn(false, false);
        head(&mut out, &parts(StatusCode::OK), Framing::Length(12), close);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: "));
        assert!(text.ends_with("content-length: 12\r\nconnection: close\r\n\r\n"));
        let mut out = Vec::new();
        let kept = conn(false, true);
        head(
            &mut out,
            &parts(StatusCode::NO_CONTENT),
            Framing::Length(0),
            kept,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("content-length") && !text.contains("connection"));
    }

    #[test]
    fn an_http_1_0_head_names_its_version_and_a_kept_connection() {
        for (keep_alive, connection) in [(true, Some("keep-alive")), (false, None)] {
            let mut out = Vec::new();
            let ok = parts(StatusCode::OK);
            head(&mut out, &ok, Framing::Length(1), conn(true, keep_alive));
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
            let field = text.lines().find_map(|l| l.strip_prefix("connection: "));
            assert_eq!(field, connection, "{text}");
        }
    }

    #[test]
    fn chunks_are_framed_in_place() {
        let mut out = Vec::with_capacity(300 + 16);
        out.extend_from_slice(&[b'x'; 300]);
        frame_chunk(&mut out, 0);
        assert_eq!(&out[..5], b"12c\r\n");
        assert!(out.ends_with(b"x\r\n"));
        assert_eq!(out.len(), 5 + 300 + 2);
        assert_eq!(out.capacity(), 300 + 16, "framed in the room reserved");

        let mut out = b"HEAD".to_vec();
        out.extend_from_slice(b"abc");
        frame_chunk(&mut out, 4);
        assert_eq!(out, b"HEAD3\r\nabc\r\n");

        let mut out = b"HEAD".to_vec();
        frame_chunk(&mut out, 4);
        assert_eq!(out, b"HEAD");
    }
}
