//! Raw HTTP/1.x for tests that must see the bytes on the wire: read until the server closes or until a needle
//! arrives, and split what arrived into responses (status line, headers, de-chunked body).

use tokio::io::{AsyncRead, AsyncReadExt};

use super::client::WAIT;

/// How a read ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection (or reset it).
    Closed,
    /// The bytes looked for arrived.
    Found,
    /// Neither within the time limit.
    TimedOut,
}

/// Reads until the server closes the connection or, with a `needle`, until it has arrived; at most `limit`.
pub async fn read_for<IO: AsyncRead + Unpin>(
    io: &mut IO,
    needle: Option<&[u8]>,
    limit: std::time::Duration,
) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if needle.is_some_and(|needle| find(&got, needle).is_some()) {
                return End::Found;
            }
            match io.read(&mut buf).await {
                Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
                _ => return End::Closed,
            }
        }
    };
    let end = tokio::time::timeout(limit, read)
        .await
        .unwrap_or(End::TimedOut);
    (got, end)
}

/// Everything the server sends until it closes the connection (a reset counts as the close).
pub async fn read_to_close<IO: AsyncRead + Unpin>(io: &mut IO) -> Vec<u8> {
    let (got, end) = read_for(io, None, WAIT).await;
    assert_eq!(end, End::Closed, "no close after {}", text(&got));
    got
}

/// Reads until `needle` has arrived; everything read so far.
pub async fn read_until<IO: AsyncRead + Unpin>(io: &mut IO, needle: &[u8]) -> Vec<u8> {
    let (got, end) = read_for(io, Some(needle), WAIT).await;
    assert_eq!(end, End::Found, "no {:?} in {}", text(needle), text(&got));
    got
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One response as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: &'static str,
    pub status: u16,
    pub reason: String,
    /// Lower-case names, in the order they arrived.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body arrived whole (chunked: its last chunk; a length: all of it).
    pub complete: bool,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `bytes` into the responses to requests whose methods are `methods` (interim 1xx responses included, each
/// as its own entry). Stops after a `101` (what follows is another protocol) and at the first head that has not
/// arrived whole; a body without framing runs to the end of `bytes`.
pub fn responses(mut bytes: &[u8], methods: &[&str]) -> Vec<Raw> {
    let mut out = Vec::new();
    let mut methods = methods.iter();
    let mut method = methods.next().copied();
    while !bytes.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = parsed.parse(bytes) else {
            break;
        };
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), text(h.value)))
            .collect();
        let mut raw = Raw {
            version: if parsed.version == Some(0) {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            status,
            reason: parsed.reason.unwrap_or("").to_owned(),
            headers,
            body: Vec::new(),
            complete: true,
        };
        bytes = &bytes[len..];
        let has = |name: &str, token: &str| {
            raw.headers
                .iter()
                .any(|(n, v)| n == name && v.to_ascii_lowercase().contains(token))
        };
        let interim = (100..200).contains(&status);
        let bodiless = interim || status == 204 || status == 304 || method == Some("HEAD");
        if bodiless {
            // No body, whatever the head says.
        } else if has("transfer-encoding", "chunked") {
            let (body, used, complete) = dechunk(bytes);
            (raw.body, raw.complete) = (body, complete);
            bytes = &bytes[used..];
        } else if let Some(n) = raw
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            let n_now = n.min(bytes.len());
            raw.body = bytes[..n_now].to_vec();
            raw.complete = n_now == n;
            bytes = &bytes[n_now..];
        } else {
            raw.body = bytes.to_vec();
            bytes = &[];
        }
        out.push(raw);
        if status == 101 {
            break;
        }
        if !interim {
            method = methods.next().copied();
        }
    }
    out
}

/// A chunked body: the payload, the bytes it took, and whether its last chunk (and trailer section) arrived.
fn dechunk(bytes: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&bytes[at..], b"\r\n") else {
            return (body, bytes.len(), false);
        };
        let line = text(&bytes[at..at + eol]);
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return (body, bytes.len(), false);
        };
        at += eol + 2;
        if size == 0 {
            // No trailer fields, or some, then the empty line.
            if bytes[at..].starts_with(b"\r\n") {
                return (body, at + 2, true);
            }
            return match find(&bytes[at..], b"\r\n\r\n") {
                Some(end) => (body, at + end + 4, true),
                None => (body, bytes.len(), false),
            };
        }
        let end = (at + size).min(bytes.len());
        body.extend_from_slice(&bytes[at..end]);
        if end < at + size || bytes.len() < end + 2 {
            return (body, bytes.len(), false);
        }
        at = end + 2;
    }
}

/// Reads until `n` final responses (to requests `methods`) have arrived whole, each delimited by its length or
/// chunking; the responses and everything read.
pub async fn read_responses<IO: AsyncRead + Unpin>(
    io: &mut IO,
    methods: &[&str],
    n: usize,
) -> (Vec<Raw>, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let whole = |got: &[u8]| {
        let all = responses(got, methods);
        let done = all
            .iter()
            .filter(|r| r.status >= 200 && r.complete)
            .filter(|r| {
                r.header("content-length").is_some() || r.header("transfer-encoding").is_some()
            })
            .count();
        (done >= n).then_some(all)
    };
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(all) = whole(&got) {
                return all;
            }
            let n = io.read(&mut buf).await.unwrap_or(0);
            assert!(n > 0, "closed after {}", text(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map(|all| (all, got.clone()))
    .unwrap_or_else(|_| panic!("no {n} responses in {}", text(&got)))
}

/// What the server does next: `None` when it closes the connection (a reset included), else the bytes it sends.
pub async fn next_bytes<IO: AsyncRead + Unpin>(io: &mut IO) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(WAIT, io.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => None,
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Err(_) => panic!("neither bytes nor a close"),
    }
}
