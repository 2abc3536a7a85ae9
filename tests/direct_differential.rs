//! The direct HTTP/1.1 path against hyper's (issue 15 item 10), on the real binary: each request of a table is sent
//! once as it is (the direct path reads it) and once with a header that pads its head past the direct path's 8 KiB
//! bound (so hyper serves the whole connection), and what comes back is compared: status line, headers (without
//! `date`), body (de-chunked), and whether the connection closed. The padding is the only difference between the
//! two sends, and the count of heads handed to hyper shows that every padded send went to hyper. Every difference
//! is listed at once; `SHOW_ROWS=1` prints every row's answers.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::feeds::metric;
use support::raw::{self, End, Raw};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How one row's answer is read.
#[derive(Clone, Copy)]
enum Read {
    /// Until the server closes the connection.
    Close,
    /// Until these bytes arrived (a stream that stays open); the last body is compared up to them.
    Until(&'static str),
}

struct Row {
    name: &'static str,
    /// The bytes sent at once (`{ws}`: a WebSocket key and version; `{big}`: 12 KiB).
    requests: &'static [u8],
    /// The method of each request, in order (a `HEAD` answer has no body).
    methods: &'static [&'static str],
    read: Read,
}

const fn row(
    name: &'static str,
    requests: &'static [u8],
    methods: &'static [&'static str],
    read: Read,
) -> Row {
    Row {
        name,
        requests,
        methods,
        read,
    }
}

/// Heads handed to hyper for their size.
const HANDED: &str = r#"pushbridge_direct_path_bounds_total{bound="head"}"#;
const GET: &[&str] = &["GET"];
const GET2: &[&str] = &["GET", "GET"];
const GET3: &[&str] = &["GET", "GET", "GET"];
const WS_KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";

/// The table. Routes: `/events/{channel}` (the ring holds events 1 and 2 of channel `a`), `/{tenant}/{channel}`;
/// anything else goes to the application.
fn table() -> Vec<Row> {
    use Read::*;
    vec![
        row("long-poll wait=0", b"GET /events/a?transport=long-poll&wait=0&last_event_id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("two pipelined polls", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\nGET /events/a?transport=long-poll&wait=0&last_event_id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET2, Close),
        row("poll, pass-through, poll", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\nGET /app/v1/echo?x=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET3, Close),
        row("client script (catch-all route)", b"GET /_pushbridge/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("poll, then client script", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\nGET /_pushbridge/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET2, Close),
        row("HEAD client script", b"HEAD /_pushbridge/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &["HEAD"], Close),
        row("catch-all route", b"GET /t/c?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("poll, then HTTP/2 preface", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", GET, Close),
        row("HTTP/1.0", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.0\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.0\r\n\r\n", GET, Close),
        row("HTTP/1.0 keep-alive, pipelined", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /events/a?transport=long-poll&wait=0&last_event_id=1 HTTP/1.0\r\n\r\n", GET2, Close),
        row("HTTP/1.0 keep-alive, then close", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", GET2, Close),
        row("HEAD on a stream route", b"HEAD /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &["HEAD"], Close),
        row("OPTIONS on a stream route", b"OPTIONS /events/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &["OPTIONS"], Close),
        row("GET with a body", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", GET, Close),
        row("GET with Content-Length: 0", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", GET, Close),
        row("GET with Transfer-Encoding", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n", GET, Close),
        row("Expect: 100-continue, no body", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", GET, Close),
        row("Expect: 100-continue, a body", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", GET, Close),
        row("absolute-form target", b"GET http://x/events/a?transport=long-poll&wait=0&last_event_id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("escaped channel", b"GET /events/a%20b%C3%A9?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("escaped slash in a channel", b"GET /events/a%2Fb?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("dot-dot channel", b"GET /events/..?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("escaped dot-dot channel", b"GET /events/%2e%2E?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("dot-dot path", b"GET /events/../events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("odd query bytes", b"GET /events/a?transport=long-poll&wait=0&q=%ff%00%%!$'()*+,;:@/?~{}|^`&last_event_id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("query bytes a URI refuses", b"GET /events/a?transport=long-poll&wait=0&q=\"<> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("raw non-ASCII query byte", b"GET /events/a?transport=long-poll&wait=0&q=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("empty and repeated query", b"GET /events/a?&transport=long-poll&transport=sse&wait=0&wait=5& HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("unknown transport", b"GET /events/a?transport=bogus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("transport=ws without a handshake", b"GET /events/a?transport=ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("cross-origin", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n", GET, Close),
        row("same origin", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nOrigin: http://x\r\nConnection: close\r\n\r\n", GET, Close),
        row("no Host", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nConnection: close\r\n\r\n", GET, Close),
        row("oversized head", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n", GET, Close),
        row("pass-through", b"GET /app/v1/echo?x=%41&y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("pass-through dot-dot", b"GET /app/../v1/%2e%2e/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET, Close),
        row("SSE", b"GET /events/a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n", GET, Until("data: two\n\n")),
        row("SSE, Connection: close", b"GET /events/a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 1\r\nConnection: close\r\n\r\n", GET, Until("data: two\n\n")),
        row("SSE over HTTP/1.0", b"GET /events/a HTTP/1.0\r\nAccept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n", GET, Until("data: two\n\n")),
        row("SSE over HTTP/1.0 keep-alive", b"GET /events/a HTTP/1.0\r\nAccept: text/event-stream\r\nLast-Event-ID: 1\r\nConnection: keep-alive\r\n\r\n", GET, Until("data: two\n\n")),
        row("WebSocket handshake", b"GET /events/a?last_event_id=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{ws}\r\n\r\n", GET, Until("\r\n\r\n")),
        row("WebSocket handshake over HTTP/1.0", b"GET /events/a?last_event_id=1 HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{ws}\r\n\r\n", GET, Close),
        row("WebSocket handshake, bad version, then a poll", b"GET /events/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET2, Close),
        row("held poll (wait=1), then a poll", b"GET /events/a?transport=long-poll&wait=1&last_event_id=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET2, Close),
        row("refusal, then a poll", b"GET /events/..?transport=long-poll HTTP/1.1\r\nHost: x\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET2, Close),
        row("two Connection fields", b"GET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close\r\n\r\nGET /events/a?transport=long-poll&wait=0 HTTP/1.1\r\nHost: x\r\n\r\n", GET, Close),
    ]
}

/// What one send got: its responses (headers without `date`, sorted by name) and how the read ended.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    responses: Vec<Raw>,
    end: End,
}

/// The row's bytes for one send, padded past the direct path's head bound for hyper (`variant` `h`).
fn request(row: &Row, variant: &str) -> Vec<u8> {
    let text = raw::text(row.requests);
    let mut bytes = row.requests.to_vec();
    for (from, to) in [
        ("{ws}", WS_KEY.to_owned()),
        ("{big}", "b".repeat(12 * 1024)),
    ] {
        if text.contains(from) {
            bytes = replace(&bytes, from.as_bytes(), to.as_bytes());
        }
    }
    if variant == "h" {
        let line = raw::find(&bytes, b"\r\n").expect("a request line") + 2;
        let pad = format!("X-Pad: {}\r\n", "p".repeat(9 * 1024));
        bytes.splice(line..line, pad.into_bytes());
    }
    bytes
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(at) = raw::find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Sends one row's bytes on a fresh connection and reads the answer.
async fn send(addr: std::net::SocketAddr, row: &Row, variant: &str) -> Seen {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&request(row, variant)).await.unwrap();
    let needle = match row.read {
        Read::Close => None,
        Read::Until(needle) => Some(needle.as_bytes()),
    };
    // Short: a row that hangs on one path is a difference to report with the others, not a failure on its own.
    let (got, end) = raw::read_for(&mut tcp, needle, Duration::from_secs(3)).await;
    let mut responses = raw::responses(&got, row.methods);
    for response in &mut responses {
        response.headers.retain(|(name, _)| name != "date");
        response.headers.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if let (Read::Until(needle), Some(last)) = (row.read, responses.last_mut())
        && let Some(at) = raw::find(&last.body, needle.as_bytes())
    {
        last.body.truncate(at + needle.len());
        last.complete = false;
    }
    Seen { responses, end }
}

/// One send's answers, one line each: status line, headers, body (as text, cut), then how the read ended.
fn describe(seen: &Seen) -> String {
    let mut out = String::new();
    for r in &seen.responses {
        let body: String = raw::text(&r.body).chars().take(100).collect();
        out.push_str(&format!(
            "\n    {} {} {:?} {body:?}",
            r.version, r.status, r.headers
        ));
    }
    out.push_str(&format!("\n    ({:?})", seen.end));
    out
}

/// The application: echoes the request line and the body's length.
async fn app(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let line = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
    Response::new(Full::new(Bytes::from(format!("{line}{body:?}\n"))))
}

#[tokio::test]
async fn every_request_gets_the_same_answer_on_both_paths() {
    let upstream = support::upstream::SseUpstream::start(true).await;
    let app = support::app::serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
passthrough: {{ upstream: "http://{app}" }}
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{sse}/up/{{channel}}" }}
  - path: /{{tenant}}/{{channel}}
    upstream: {{ url: "http://{sse}/up/{{tenant}}/{{channel}}" }}
"#,
        sse = upstream.addr
    );
    let binary = support::binary::start(dir.path(), &yaml, 1, true);
    let (addr, admin) = (binary.listen[0], binary.admin.expect("admin listener"));

    // Events 1 and 2 in channel a's ring: a held poll opens the stream, the application publishes, the poll gets
    // them.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let poll = "GET /events/a?transport=long-poll HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tcp.write_all(poll.as_bytes()).await.unwrap();
    upstream.wait_connections(1).await;
    upstream.publish("one");
    upstream.publish("two");
    let got = raw::read_to_close(&mut tcp).await;
    if !raw::text(&got).contains("\"two\"") {
        // The poll was answered with "one" alone: "two" is in the ring once a poll from 1 sees it.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let next = "GET /events/a?transport=long-poll&last_event_id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        tcp.write_all(next.as_bytes()).await.unwrap();
        let got = raw::read_to_close(&mut tcp).await;
        assert!(raw::text(&got).contains("\"two\""), "{}", raw::text(&got));
    }

    let rows = table();
    let (mut differences, mut unsound) = (Vec::new(), Vec::new());
    for row in &rows {
        let direct = send(addr, row, "d").await;
        let before = metric(admin, HANDED).await;
        let hyper = send(addr, row, "h").await;
        // The padded head went to hyper for its size (or, one httparse refuses, as the plain one did).
        let handed = metric(admin, HANDED).await - before;
        let mut fields = [httparse::EMPTY_HEADER; 80];
        let refused = httparse::Request::new(&mut fields)
            .parse(&request(row, "h"))
            .is_err();
        if handed != f64::from(u8::from(!refused)) || hyper.responses.is_empty() {
            unsound.push(format!("{}: {handed} handed to hyper, {hyper:?}", row.name));
        }
        let report = format!(
            "{}:\n  direct: {}\n  hyper:  {}",
            row.name,
            describe(&direct),
            describe(&hyper)
        );
        if std::env::var_os("SHOW_ROWS").is_some() {
            eprintln!("{report}");
        }
        if direct != hyper {
            differences.push(report);
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} rows differ:\n{}",
        differences.len(),
        rows.len(),
        differences.join("\n")
    );
    assert!(unsound.is_empty(), "rows not sent as meant: {unsound:#?}");
}
