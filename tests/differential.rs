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
//! [`THIRD_PARTY`] lists the cases that differ because of a defect in a peer or library pushbridge does not own,
//! each naming it (docs/protocol.md says the same); they are printed as `KNOWN` and do not fail the tests.
//! `nothing_forgiven` (ignored) runs everything with none of them forgiven:
//! `cargo test --test differential -- --ignored` shows whether a new peer or library version fixed one.

mod support;

#[path = "differential/cases.rs"]
mod cases;
#[path = "differential/clients.rs"]
mod clients;
#[path = "differential/normalise.rs"]
mod normalise;
#[path = "differential/peers.rs"]
mod peers;
#[path = "differential/scenarios.rs"]
mod scenarios;

use std::time::Duration;

use cases::{App, Can, Known, Scenario};
use clients::Drivers;
use peers::{Route, nginx_app, node_apps, pushbridge, python_app};
use scenarios::{GRPC, HTTP, WEBSOCKET};

/// Cases that differ because of a third-party defect (a client's or a library's), each naming it.
const THIRD_PARTY: &[Known] = &[
    Known {
        pattern: "*/curl-h2-tls/early-413-unread-3mib",
        why: "curl 7.88 over HTTP/2 gets the 413, then ends its upload with an END_STREAM short of its content-length, a stream error (RFC 9113 §8.1.1): exit 92 in some repeats (tests/passthrough_early.rs pins the status)",
    },
    Known {
        pattern: "hypercorn-h2c/curl-h1/early-413-unread-3mib",
        why: "hypercorn over h2c answers and closes the connection with the body unread; when the connection's end is read before hyper reads the answer's last DATA, h2 0.4.20 (`State::recv_eof`) turns the half-closed stream into a broken-pipe error and the END_STREAM it had is lost (about 1 in 20; docs/protocol.md)",
    },
];

/// Differences this suite found that issue 15 does not list (reported to the lead; not failures until decided).
const FINDINGS: &[Known] = &[
    Known {
        pattern: "*/curl-h1/early-413-unread-3mib",
        why: "in pushbridge's favour: an app that answers 413 and closes with the body unread resets the connection; directly, the reset sometimes overtakes the 413 (seen with node http and gunicorn: curl gets status 100, no body); through pushbridge, which reads the rest of the body, the 413 arrives every time (pinned by tests/passthrough_early.rs, 15 of 15 with the body)",
    },
    Known {
        pattern: "nginx-h2c/*/post-body-256k",
        why: "new, in pushbridge's favour: nginx over h2c answers without reading the 256 KiB body and resets the stream (curl 92 directly); through pushbridge the client gets the 200",
    },
];

/// Bound on one test (start-up included).
const WHOLE: Duration = Duration::from_secs(240);

const PY_CAN: &[Can] = &[Can::Echo, Can::Reject, Can::Status, Can::Bytes, Can::Reason];
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
    Can::Reason,
    Can::Bytes,
    Can::Trailers,
    Can::Hints,
    Can::Refusals,
];
const NGINX_CAN: &[Can] = &[Can::Echo, Can::Reject, Can::Status];
const NGINX_H1_CAN: &[Can] = &[Can::Echo, Can::Reject, Can::Status, Can::Reason];

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
    if let Err(failures) = cases::report(group, &outcomes, THIRD_PARTY, FINDINGS, strict) {
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
            can: NGINX_H1_CAN,
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

/// Every group with no difference forgiven: fails on the [`THIRD_PARTY`] cases until their peers are fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails on the THIRD_PARTY cases (curl 7.88, h2 0.4.20): run with --ignored after upgrading them"]
async fn nothing_forgiven() {
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
