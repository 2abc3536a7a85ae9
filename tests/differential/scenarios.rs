//! The differential suite's scenarios: the requests, which clients send them and what the application must be
//! able to do. HTTP scenarios run against every application that can take them; the raw ones send what curl and
//! httpx would not (request trailers, `Connection`-listed fields, HTTP/1.0, requests pushbridge refuses).

use serde_json::json;

use crate::cases::{Can, Scenario};
use crate::clients::{Client, Request};

use Client::*;

const ALL_HTTP: &[Client] = &[CurlH1, CurlH2Tls, CurlH2c, HttpxH1, HttpxH2Tls];
const CURL_BOTH: &[Client] = &[CurlH1, CurlH2Tls];
const CURL_ALL: &[Client] = &[CurlH1, CurlH2Tls, CurlH2c];
const RAW: &[Client] = &[Raw];
const WS_CLIENTS: &[Client] = &[PyWs, ChromiumH1, ChromiumH2];

fn get(target: String, headers: Vec<(&'static str, &'static str)>) -> Request {
    Request {
        method: "GET",
        target,
        headers,
        ..Request::default()
    }
}

fn raw(text: String) -> Request {
    Request {
        method: "RAW",
        raw: Some(text),
        ..Request::default()
    }
}

/// The HTTP scenarios (every application that can take them).
pub const HTTP: &[Scenario] = &[
    Scenario {
        name: "odd-target-and-fields",
        clients: ALL_HTTP,
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| {
            get(
                format!(
                    "{p}/odd/a%2Fb/%2e%2E/;p=1/%7E~!$&'()*+,;=:@/echo?q=1&q=2&sp=%20+&u=%C3%A9&e=&flag&sl=/?x"
                ),
                vec![
                    ("X-Dup", "1"),
                    ("X-Other", "o"),
                    ("X-Dup", "2"),
                    ("X-Case", "MiXeD"),
                    ("Cookie", "a=1; b=2"),
                    ("X-Empty", ""),
                    ("Accept", "application/json, */*;q=0.5"),
                ],
            )
        },
    },
    Scenario {
        name: "post-body-256k",
        clients: &[CurlH1, CurlH2Tls, HttpxH2Tls],
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| Request {
            method: "POST",
            target: format!("{p}/post/echo?x=1"),
            headers: vec![("Content-Type", "application/octet-stream")],
            body_len: 256 * 1024,
            ..Request::default()
        },
    },
    Scenario {
        name: "expect-100-continue",
        clients: &[CurlH1],
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| Request {
            method: "PUT",
            target: format!("{p}/put/echo"),
            headers: vec![("Expect", "100-continue")],
            body_len: 4096,
            ..Request::default()
        },
    },
    Scenario {
        name: "head",
        clients: CURL_BOTH,
        needs: Can::Bytes,
        repeat: 1,
        refused: None,
        request: |p| Request {
            method: "HEAD",
            target: format!("{p}/head/bytes/1000"),
            ..Request::default()
        },
    },
    Scenario {
        name: "bytes-1mib",
        clients: CURL_BOTH,
        needs: Can::Bytes,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/big/bytes/1048576"), vec![]),
    },
    Scenario {
        name: "status-204",
        clients: CURL_BOTH,
        needs: Can::Status,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/status/204"), vec![]),
    },
    Scenario {
        name: "status-304",
        clients: CURL_BOTH,
        needs: Can::Status,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/status/304"), vec![("If-None-Match", "\"v1\"")]),
    },
    Scenario {
        name: "status-404",
        clients: CURL_BOTH,
        needs: Can::Status,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/status/404"), vec![]),
    },
    Scenario {
        name: "status-line-reason",
        clients: &[CurlH1],
        needs: Can::Reason,
        repeat: 1,
        refused: None,
        request: |p| Request {
            reason: true,
            ..get(format!("{p}/reason/status/404"), vec![])
        },
    },
    Scenario {
        name: "early-413-unread-3mib",
        clients: CURL_BOTH,
        needs: Can::Reject,
        repeat: 5,
        refused: None,
        request: |p| Request {
            method: "POST",
            target: format!("{p}/upload/reject"),
            headers: vec![("Content-Type", "application/octet-stream")],
            body_len: 3 * 1024 * 1024,
            ..Request::default()
        },
    },
    Scenario {
        name: "early-hints-103",
        clients: CURL_ALL,
        needs: Can::Hints,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/page/hints"), vec![]),
    },
    Scenario {
        name: "early-hints-103-h2",
        clients: &[CurlH2Tls, CurlH2c],
        needs: Can::HintsH2,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/page/hints"), vec![]),
    },
    Scenario {
        name: "response-trailers-h2",
        clients: &[CurlH2Tls, CurlH2c],
        needs: Can::TrailersH2,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/t/trailers"), vec![("TE", "trailers")]),
    },
    Scenario {
        name: "response-trailers",
        clients: CURL_ALL,
        needs: Can::Trailers,
        repeat: 1,
        refused: None,
        request: |p| get(format!("{p}/t/trailers"), vec![("TE", "trailers")]),
    },
    Scenario {
        name: "connection-listed-fields",
        clients: RAW,
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| {
            raw(format!(
                "GET {p}/hop/echo HTTP/1.1\r\nHost: {{host}}\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\n\
                 Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nX-Keep: 2\r\n\r\n"
            ))
        },
    },
    Scenario {
        name: "field-values-obs-text-tab-empty",
        clients: RAW,
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| {
            raw(format!(
                "GET {p}/values/echo HTTP/1.1\r\nHost: {{host}}\r\nX-Utf8: caf\u{e9}\r\nX-Tab: a\tb\r\n\
                 X-Empty:\r\nX-Spaces:   padded   \r\nConnection: close\r\n\r\n"
            ))
        },
    },
    Scenario {
        name: "http10-no-host",
        clients: RAW,
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| raw(format!("GET {p}/old/echo HTTP/1.0\r\nX-A: 1\r\n\r\n")),
    },
    Scenario {
        name: "chunked-request-with-trailers",
        clients: RAW,
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| {
            raw(format!(
                "POST {p}/chunked/echo HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\
                 Trailer: X-Sum\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
                 5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
            ))
        },
    },
    // Right after the trailers: the next request, from another client connection, must carry only its own fields
    // (through pushbridge it may reuse the upstream connection the trailers went over).
    Scenario {
        name: "next-client-after-request-trailers",
        clients: RAW,
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| Request {
            raw_then: Some(format!(
                "GET {p}/next/echo HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\n\r\n"
            )),
            ..raw(format!(
                "POST {p}/chunked/echo HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: chunked\r\n\
                 Trailer: X-Injected\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\
                 X-Injected: from-another-client\r\n\r\n"
            ))
        },
    },
    Scenario {
        name: "trace-refused",
        clients: RAW,
        needs: Can::Refusals,
        repeat: 1,
        refused: Some(405),
        request: |p| {
            raw(format!(
                "TRACE {p}/echo HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\n\r\n"
            ))
        },
    },
    Scenario {
        name: "connect-refused",
        clients: RAW,
        needs: Can::Refusals,
        repeat: 1,
        refused: Some(405),
        request: |_| {
            raw("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".into())
        },
    },
    Scenario {
        name: "absolute-form-refused",
        clients: RAW,
        needs: Can::Refusals,
        repeat: 1,
        refused: Some(400),
        request: |p| {
            raw(format!(
                "GET http://{{host}}{p}/echo HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\n\r\n"
            ))
        },
    },
];

/// WebSocket steps: the handshake account, text, binary, a 20 000-byte text, then `close`.
fn ws_steps(close: serde_json::Value) -> serde_json::Value {
    json!([
        {"recv": true},
        {"send": "hello"}, {"recv": true},
        {"send_hex": "000102ff"}, {"recv": true},
        {"send_len": 20000}, {"recv": true},
        close,
        {"wait_close": true},
    ])
}

pub const WEBSOCKET: &[Scenario] = &[
    Scenario {
        name: "ws-echo-app-closes-4001",
        clients: WS_CLIENTS,
        needs: Can::Ws,
        repeat: 1,
        refused: None,
        request: |p| Request {
            method: "GET",
            target: format!("{p}/ws?x=1"),
            headers: vec![("X-Ws", "1")],
            ws_steps: Some(ws_steps(json!({"send": "close:4001:bye"}))),
            ..Request::default()
        },
    },
    Scenario {
        name: "ws-echo-client-closes-4002",
        clients: WS_CLIENTS,
        needs: Can::Ws,
        repeat: 1,
        refused: None,
        request: |p| Request {
            method: "GET",
            target: format!("{p}/ws"),
            ws_steps: Some(ws_steps(json!({"close": [4002, "client-bye"]}))),
            ..Request::default()
        },
    },
    Scenario {
        name: "ws-message-over-limit-1009",
        clients: WS_CLIENTS,
        needs: Can::WsLimit,
        repeat: 3,
        refused: None,
        request: |p| Request {
            method: "GET",
            target: format!("{p}/ws"),
            ws_steps: Some(
                json!([{"recv": true}, {"send_len": 2 * 1024 * 1024}, {"wait_close": true}]),
            ),
            ..Request::default()
        },
    },
    Scenario {
        name: "cookies",
        clients: &[ChromiumH1, ChromiumH2],
        needs: Can::Echo,
        repeat: 1,
        refused: None,
        request: |p| Request {
            method: "GET",
            target: format!("{p}/cookies/echo"),
            cookies: &[("a", "1"), ("b", "2"), ("c", "3")],
            ..Request::default()
        },
    },
];

pub const GRPC: &[Scenario] = &[Scenario {
    name: "grpc-unary-streaming-status-trailers",
    clients: &[GrpcTls, GrpcH2c],
    needs: Can::Grpc,
    repeat: 1,
    refused: None,
    request: |_| Request::default(),
}];
