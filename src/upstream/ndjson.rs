//! NDJSON upstream: one `GET` whose streamed body holds one JSON document per line (`application/x-ndjson`,
//! JSON Lines; e.g. a Kubernetes watch). Each line becomes an event through `map`; a line that is not JSON, or
//! longer than `limits.max_event_bytes`, is counted and skipped. The resume position (the newest id held) goes
//! upstream through `resume`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, HeaderValue};
use http_body_util::{BodyExt, Empty};

use super::map::{self, Feed, Skip};
use super::{HttpClient, SessionEnd, UpstreamSpec};
use crate::error::UpstreamError;
use crate::hub::Stream;
use crate::metrics::Metrics;

const ACCEPT_NDJSON: &str = "application/x-ndjson, application/jsonl, application/json;q=0.9";

pub(super) async fn session(
    spec: &UpstreamSpec,
    client: &HttpClient<Empty<Bytes>>,
    stream: &Arc<Stream>,
    feed: &mut Feed,
    metrics: &Metrics,
) -> Result<SessionEnd, UpstreamError> {
    let route = &*spec.route;
    let position = map::resume_position(spec, stream);
    let resumed_from = position.as_deref();
    let connected = connect(spec, client, resumed_from).await;
    super::count_attempt(metrics, route, &connected);
    let response = connected?;
    let _up = super::connected(spec, stream, metrics, resumed_from);

    let mut lines = Lines::new(spec.max_event_bytes);
    let mut body = response.into_body();
    let mut delivered = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UpstreamError::Body(e.to_string()))?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        lines.feed(chunk, |line| {
            let result = match line {
                Line::Text(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) if text.trim().is_empty() => return,
                    Ok(text) => map::from_text(spec.options.map.as_ref(), text, true),
                    Err(_) => Err(Skip::NotUtf8),
                },
                Line::Oversize(bytes) => Err(Skip::Oversize(bytes)),
            };
            delivered |= feed.offer(spec, stream, metrics, result);
        });
    }
    Ok(SessionEnd::Closed { delivered })
}

async fn connect(
    spec: &UpstreamSpec,
    client: &HttpClient<Empty<Bytes>>,
    position: Option<&str>,
) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
    let (url, header) = map::resume_target(&spec.url, spec.options.resume.as_ref(), position)?;
    let mut request = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| UpstreamError::Request(e.to_string()))?;
    let headers = request.headers_mut();
    headers.extend(spec.headers.clone());
    headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_NDJSON));
    if let Some((name, value)) = header {
        headers.insert(name, value);
    }
    let response = tokio::time::timeout(spec.connect_timeout, client.request(request))
        .await
        .map_err(|_| UpstreamError::Timeout(spec.connect_timeout))?
        .map_err(|e| UpstreamError::Connect(crate::error::chain(&e)))?;
    if response.status() != http::StatusCode::OK {
        return Err(UpstreamError::Status(response.status()));
    }
    Ok(response)
}

/// One complete line (without `\n` / `\r\n`), or the length of a line dropped for being over the limit.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Text(&'a [u8]),
    Oversize(usize),
}

/// Splits a byte stream into lines, holding at most `max` bytes of an unfinished line.
struct Lines {
    max: usize,
    partial: Vec<u8>,
    /// Bytes of the current line seen past the limit (the line is being dropped); 0 when not dropping.
    dropped: usize,
}

impl Lines {
    fn new(max: usize) -> Lines {
        Lines {
            max,
            partial: Vec::new(),
            dropped: 0,
        }
    }

    fn feed(&mut self, mut chunk: &[u8], mut out: impl FnMut(Line<'_>)) {
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = (&chunk[..end], &chunk[end + 1..]);
            chunk = rest;
            if self.dropped > 0 || self.partial.len() + head.len() > self.max {
                out(Line::Oversize(
                    self.dropped + self.partial.len() + head.len(),
                ));
                self.partial.clear();
                self.dropped = 0;
                continue;
            }
            if self.partial.is_empty() {
                out(Line::Text(trim_cr(head)));
            } else {
                self.partial.extend_from_slice(head);
                out(Line::Text(trim_cr(&self.partial)));
                self.partial.clear();
            }
        }
        if self.dropped > 0 {
            self.dropped += chunk.len();
        } else if self.partial.len() + chunk.len() > self.max {
            self.dropped = self.partial.len() + chunk.len();
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&str]) -> Vec<String> {
        let mut lines = Lines::new(max);
        let mut got = Vec::new();
        for chunk in chunks {
            lines.feed(chunk.as_bytes(), |line| {
                got.push(match line {
                    Line::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                    Line::Oversize(n) => format!("<{n}>"),
                })
            });
        }
        got
    }

    proptest::proptest! {
        /// Any chunking yields the lines of the whole input; nothing over `max` is ever held.
        #[test]
        fn chunking_does_not_change_lines(text in "[ab\\n]{0,64}", cuts in proptest::collection::vec(0usize..64, 0..6), max in 1usize..16) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.push(0);
            cuts.push(text.len());
            cuts.sort_unstable();
            let chunks: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            proptest::prop_assert_eq!(split(max, &chunks), split(max, &[&text]));
            let mut lines = Lines::new(max);
            for chunk in &chunks {
                lines.feed(chunk.as_bytes(), |_| {});
                proptest::prop_assert!(lines.partial.len() <= max);
            }
        }
    }

    #[test]
    fn lines_across_chunks_and_crlf() {
        assert_eq!(split(100, &["a\r\nb", "c\n", "\n", "d"]), ["a", "bc", ""]);
    }

    #[test]
    fn over_long_lines_are_dropped_whole_and_bounded() {
        assert_eq!(split(4, &["abcdef\nok\n"]), ["<6>", "ok"]);
        assert_eq!(split(4, &["abc", "def", "gh\nok\n"]), ["<8>", "ok"]);
        let mut lines = Lines::new(4);
        lines.feed(b"abc", |_| {});
        lines.feed(b"defghijk", |_| {});
        assert!(
            lines.partial.capacity() <= 8,
            "nothing held once over the limit"
        );
    }
}
