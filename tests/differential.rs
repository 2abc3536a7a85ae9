//! Differential suite, pass-through side (issue 15): real third-party applications and clients, each scenario run
//! once against the application directly and once through pushbridge (the real binary), comparing what the
//! application received (method, target bytes, fields, body digest, trailers, its own cookie parse) and what the
//! client received (status, 1xx, fields, body, trailers, WebSocket messages and close codes) after removing exactly
//! the deliberate changes of docs/protocol.md "What pushbridge changes" (tests/differential/normalise.rs).
//!
//! Applications: hypercorn (HTTP/1.1 and h2c), uvicorn, gunicorn + Flask, aiohttp, Python `websockets`
//! (tests/differential/py_apps.py), node `http`, `http2` and `ws` (node_apps.mjs), nginx over HTTP/1.1 and h2c
//! (nginx_app.conf.in), grpcio (grpc_peer.py). Clients: curl (HTTP/1.1, HTTP/2 over TLS, h2c), httpx (HTTP/1.1,
//! HTTP/2 over TLS), a raw HTTP/1.1 client, Python `websockets`, Chromium (cookies; WebSocket over HTTP/1.1 and
//! HTTP/2) and grpcio. Each test prints every case (`same`, `KNOWN`, `DIFFERS` with a diff).
//!
//! Needs `bash .ci/diff-deps` (a virtualenv in .ci/.venv, node `ws`; Chromium, nginx and playwright-core from
//! .ci/browser-deps); without them it fails, unless `PUSHBRIDGE_SKIP_DIFFERENTIAL=1`.
//!
//! [`KNOWN_UNTIL_MERGE`] lists the cases that differ on main because of defects other branches fix (issue 15);
//! they are printed as `KNOWN` and do not fail the tests. `known_until_merge` (ignored) runs everything with none
//! of them forgiven: after merging those fixes, run `cargo test --test differential -- --ignored` and trim the list.

mod support;

#[path = "differential/cases.rs"]
mod cases;
#[path = "differential/clients.rs"]
mod clients;
#[path = "differential/normalise.rs"]
mod normalise;
#[path = "differential/peers.rs"]
mod peers;

use std::time::Duration;

use serde_json::json;

use cases::{App, Can, Known, Scenario};
use clients::{Client, Drivers, Request};
use peers::{Route, nginx_app, node_apps, pushbridge, python_app};

/// Cases that differ on main because of issue 15 items fixed on other branches; each names the item.
const KNOWN_UNTIL_MERGE: &[Known] = &[
    Known {
        pattern: "hypercorn-h2c/*/*",
        why: "issue 15 item 1: `:authority` = upstream + `host` field; hypercorn GOAWAY, 502",
    },
    Known {
        pattern: "nginx-h2c/*/*",
        why: "issue 15 item 1: nginx 400 \"duplicate host header\"",
    },
    Known {
        pattern: "node-http2/*/*",
        why: "issue 15 item 1: node http2 sees `:authority` = the upstream address and `host`",
    },
    Known {
        pattern: "grpcio/*/*",
        why: "issue 15 item 1: the gRPC server sees a `host` metadata entry",
    },
    Known {
        pattern: "*/chromium-h2/cookies",
        why: "issue 15 item 2: HTTP/2 cookie crumbs sent as several Cookie lines to an HTTP/1.1 app",
    },
    Known {
        pattern: "*/chromium-h2/ws-echo-app-closes-4001",
        why: "issue 15 item 2: cookie crumbs of an RFC 8441 WebSocket handshake",
    },
    Known {
        pattern: "*/chromium-h2/ws-echo-client-closes-4002",
        why: "issue 15 item 2: cookie crumbs of an RFC 8441 WebSocket handshake",
    },
    Known {
        pattern: "*/*/early-413-unread-3mib",
        why: "issue 15 item 7: an early 413 becomes 502, a bare 100, or an HTTP/2 stream reset (varies per run)",
    },
    Known {
        pattern: "*/*/early-hints-103",
        why: "issue 15 item 8: 103 Early Hints dropped",
    },
    Known {
        pattern: "*/*/early-hints-103-h2",
        why: "issue 15 item 8: 103 Early Hints dropped",
    },
    Known {
        pattern: "websockets/*/ws-message-over-limit-1009",
        why: "issue 15 item 9: 1006 instead of 1009 now and then (reset after the close)",
    },
];

/// Differences this suite found that issue 15 does not list (reported to the lead; not failures until decided).
const FINDINGS: &[Known] = &[
    Known {
        pattern: "*/raw-h1/http10-no-host",
        why: "new: a request without Host (HTTP/1.0) reaches the app with Host = the upstream's address",
    },
    Known {
        pattern: "*/curl-h1/status-line-reason",
        why: "new: the app's HTTP/1.1 reason phrase is replaced by the standard one",
    },
    Known {
        pattern: "aiohttp/*/ws-echo-client-closes-4002",
        why: "new: the reply to a client's close is pushbridge's echo of its code, not the app's (1000)",
    },
    Known {
        pattern: "nginx-h1/curl-h1/status-304",
        why: "new: `Content-Length: 0` of a 304 is dropped for an HTTP/1.1 client",
    },
    Known {
        pattern: "aiohttp/raw-h1/next-client-after-request-trailers",
        why: "new: request trailers go on to an HTTP/1.1 app over a pooled connection; aiohttp hands them to the next request, another client's",
    },
];

/// Bound on one test (start-up included).
const WHOLE: Duration = Duration::from_secs(240);

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
const HTTP: &[Scenario] = &[
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
        needs: Can::Status,
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

const WEBSOCKET: &[Scenario] = &[
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

const GRPC: &[Scenario] = &[Scenario {
    name: "grpc-unary-streaming-status-trailers",
    clients: &[GrpcTls, GrpcH2c],
    needs: Can::Grpc,
    repeat: 1,
    refused: None,
    request: |_| Request::default(),
}];

const PY_CAN: &[Can] = &[Can::Echo, Can::Reject, Can::Status, Can::Bytes];
const HYPERCORN_H2C_CAN: &[Can] = &[
    Can::Echo,
    Can::Reject,
    Can::Status,
    Can::Bytes,
    Can::TrailersH2,
    Can::HintsH2,
];
const NODE_CAN: &[Can] = &[
    Can::Echo,
    Can::Reject,
    Can::Status,
    Can::Bytes,
    Can::Trailers,
    Can::Hints,
    Can::Refusals,
];
const NGINX_CAN: &[Can] = &[Can::Echo, Can::Reject, Can::Status];

fn routes(apps: &[App]) -> Vec<Route> {
    apps.iter()
        .map(|app| Route {
            prefix: app.prefix.to_owned(),
            port: app.upstream.0,
            h2c: app.upstream.1,
        })
        .collect()
}

fn strict() -> bool {
    std::env::var("PUSHBRIDGE_DIFF_STRICT").is_ok_and(|v| v == "1")
}

/// Runs `scenarios` against `apps` behind one pushbridge; fails on an unexpected difference.
async fn check(group: &str, apps: &[App], scenarios: &[Scenario], strict: bool) {
    let pb = pushbridge(&routes(apps));
    let mut drivers = Drivers::new();
    let started = std::time::Instant::now();
    let outcomes = cases::run(apps, scenarios, &pb, &mut drivers).await;
    println!("differential {group}: ran in {:?}", started.elapsed());
    if let Err(failures) = cases::report(group, &outcomes, KNOWN_UNTIL_MERGE, FINDINGS, strict) {
        panic!("{failures}");
    }
}

async fn python_http(strict: bool) {
    let ((_hypercorn, hypercorn), (_uvicorn, uvicorn), (_gunicorn, gunicorn), (_aiohttp, aiohttp)) = tokio::join!(
        python_app("hypercorn"),
        python_app("uvicorn"),
        python_app("gunicorn"),
        python_app("aiohttp"),
    );
    let apps = [
        App {
            name: "hypercorn-h1",
            prefix: "/hypercorn-h1".into(),
            h1: Some(hypercorn),
            h2c: Some(hypercorn),
            upstream: (hypercorn, false),
            can: PY_CAN,
        },
        App {
            name: "hypercorn-h2c",
            prefix: "/hypercorn-h2c".into(),
            h1: Some(hypercorn),
            h2c: Some(hypercorn),
            upstream: (hypercorn, true),
            can: HYPERCORN_H2C_CAN,
        },
        App {
            name: "uvicorn",
            prefix: "/uvicorn".into(),
            h1: Some(uvicorn),
            h2c: None,
            upstream: (uvicorn, false),
            can: PY_CAN,
        },
        App {
            name: "gunicorn-flask",
            prefix: "/gunicorn-flask".into(),
            h1: Some(gunicorn),
            h2c: None,
            upstream: (gunicorn, false),
            can: PY_CAN,
        },
        App {
            name: "aiohttp",
            prefix: "/aiohttp".into(),
            h1: Some(aiohttp),
            h2c: None,
            upstream: (aiohttp, false),
            can: PY_CAN,
        },
    ];
    check("python-http", &apps, HTTP, strict).await;
}

async fn node_nginx_http(strict: bool) {
    let ((_node, node_h1, node_h2c), nginx) = tokio::join!(node_apps(), nginx_app());
    let apps = [
        App {
            name: "node-http",
            prefix: "/node-http".into(),
            h1: Some(node_h1),
            h2c: None,
            upstream: (node_h1, false),
            can: NODE_CAN,
        },
        App {
            name: "node-http2",
            prefix: "/node-http2".into(),
            h1: Some(node_h1),
            h2c: Some(node_h2c),
            upstream: (node_h2c, true),
            can: &[
                Can::Echo,
                Can::Reject,
                Can::Status,
                Can::Bytes,
                Can::Trailers,
                Can::Hints,
            ],
        },
        App {
            name: "nginx-h1",
            prefix: "/nginx-h1".into(),
            h1: Some(nginx.h1),
            h2c: Some(nginx.h2c),
            upstream: (nginx.h1, false),
            can: NGINX_CAN,
        },
        App {
            name: "nginx-h2c",
            prefix: "/nginx-h2c".into(),
            h1: Some(nginx.h1),
            h2c: Some(nginx.h2c),
            upstream: (nginx.h2c, true),
            can: NGINX_CAN,
        },
    ];
    check("node-nginx-http", &apps, HTTP, strict).await;
}

async fn websocket_and_browser(strict: bool) {
    let (
        (_hypercorn, hypercorn),
        (_uvicorn, uvicorn),
        (_gunicorn, gunicorn),
        (_aiohttp, aiohttp),
        (_websockets, websockets),
        (_node, node_h1, node_h2c),
        nginx,
    ) = tokio::join!(
        python_app("hypercorn"),
        python_app("uvicorn"),
        python_app("gunicorn"),
        python_app("aiohttp"),
        python_app("websockets"),
        node_apps(),
        nginx_app(),
    );
    let ws: &[Can] = &[Can::Echo, Can::Ws];
    let app = |name: &'static str, h1, h2c: Option<u16>, upstream, can| App {
        name,
        prefix: format!("/{name}"),
        h1: Some(h1),
        h2c,
        upstream,
        can,
    };
    let apps = [
        app(
            "hypercorn-h1",
            hypercorn,
            Some(hypercorn),
            (hypercorn, false),
            ws,
        ),
        app(
            "hypercorn-h2c",
            hypercorn,
            Some(hypercorn),
            (hypercorn, true),
            &[Can::Echo],
        ),
        app("uvicorn", uvicorn, None, (uvicorn, false), ws),
        app(
            "gunicorn-flask",
            gunicorn,
            None,
            (gunicorn, false),
            &[Can::Echo],
        ),
        app("aiohttp", aiohttp, None, (aiohttp, false), ws),
        app(
            "websockets",
            websockets,
            None,
            (websockets, false),
            &[Can::Ws, Can::WsLimit],
        ),
        app("node-http", node_h1, None, (node_h1, false), ws),
        app(
            "node-http2",
            node_h1,
            Some(node_h2c),
            (node_h2c, true),
            &[Can::Echo],
        ),
        app(
            "nginx-h1",
            nginx.h1,
            Some(nginx.h2c),
            (nginx.h1, false),
            &[Can::Echo],
        ),
        app(
            "nginx-h2c",
            nginx.h1,
            Some(nginx.h2c),
            (nginx.h2c, true),
            &[Can::Echo],
        ),
    ];
    check("websocket-and-chromium", &apps, WEBSOCKET, strict).await;
}

async fn grpc(strict: bool) {
    let (_grpc, port) = peers::grpc_app().await;
    let apps = [App {
        name: "grpcio",
        prefix: "/test.Diff".into(),
        h1: None,
        h2c: Some(port),
        upstream: (port, true),
        can: &[Can::Grpc],
    }];
    check("grpc", &apps, GRPC, strict).await;
}

macro_rules! group_test {
    ($name:ident, $run:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if !peers::available() {
                return;
            }
            tokio::time::timeout(WHOLE, $run(strict()))
                .await
                .expect("the group finished in time");
        }
    };
}

group_test!(python_http_apps, python_http);
group_test!(node_and_nginx_http_apps, node_nginx_http);
group_test!(websockets_and_chromium, websocket_and_browser);
group_test!(grpcio, grpc);

/// Every group with no difference forgiven: run after merging the issue 15 fixes, then trim [`KNOWN_UNTIL_MERGE`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "issue 15 items 1, 2, 7, 8, 9 are fixed on other branches: run with --ignored after merging them"]
async fn known_until_merge() {
    if !peers::available() {
        return;
    }
    let all = async {
        python_http(true).await;
        node_nginx_http(true).await;
        websocket_and_browser(true).await;
        grpc(true).await;
    };
    tokio::time::timeout(WHOLE * 4, all)
        .await
        .expect("all groups finished in time");
}
