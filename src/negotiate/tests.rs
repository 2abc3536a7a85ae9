//! Table-driven negotiation cases (DESIGN §4): request shapes (h1/h2, curl, EventSource, old XHR, WebSocket over
//! HTTP/1.1 Upgrade and HTTP/2 extended CONNECT, explicit `?transport=`) against route policies, through
//! [`Facts::of`] and [`decide`].

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::{Decision, Facts, decide};
use crate::config::TransportKind::{self, LongPoll, Sse, Ws};

const ALL: &[TransportKind] = &[Ws, Sse, LongPoll];
const SSE_LP: &[TransportKind] = &[Sse, LongPoll];

/// A request head.
struct Shape {
    method: Method,
    version: Version,
    headers: &'static [(&'static str, &'static str)],
    query: Option<&'static str>,
    /// HTTP/2 `:protocol` (RFC 8441).
    protocol: Option<&'static str>,
}

const EVENTSOURCE: &[(&str, &str)] = &[
    ("accept", "text/event-stream"),
    ("cache-control", "no-cache"),
];
const CURL: &[(&str, &str)] = &[("accept", "*/*"), ("user-agent", "curl/8.5.0")];
const XHR: &[(&str, &str)] = &[("accept", "application/json, text/javascript, */*; q=0.01")];
const WS_H1: &[(&str, &str)] = &[
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("sec-websocket-version", "13"),
];

fn h1(headers: &'static [(&'static str, &'static str)], query: Option<&'static str>) -> Shape {
    Shape {
        method: Method::GET,
        version: Version::HTTP_11,
        headers,
        query,
        protocol: None,
    }
}

fn h2(headers: &'static [(&'static str, &'static str)], query: Option<&'static str>) -> Shape {
    Shape {
        method: Method::GET,
        version: Version::HTTP_2,
        headers,
        query,
        protocol: None,
    }
}

/// HTTP/2 extended CONNECT with `:protocol`.
fn connect(protocol: &'static str, query: Option<&'static str>) -> Shape {
    let headers = &[("sec-websocket-version", "13")];
    Shape {
        method: Method::CONNECT,
        version: Version::HTTP_2,
        headers,
        query,
        protocol: Some(protocol),
    }
}

enum Want {
    Serve(TransportKind),
    Downgrade {
        to: TransportKind,
        from: TransportKind,
    },
    /// 406 whose JSON body lists exactly the route's transports.
    NotAcceptable,
    BadRequest,
}

fn cases() -> Vec<(&'static str, Shape, &'static [TransportKind], Want)> {
    use Want::*;
    vec![
        (
            "curl h1 gets long-poll",
            h1(CURL, None),
            ALL,
            Serve(LongPoll),
        ),
        (
            "curl h2 gets long-poll",
            h2(CURL, None),
            ALL,
            Serve(LongPoll),
        ),
        (
            "no Accept at all gets long-poll",
            h1(&[], None),
            ALL,
            Serve(LongPoll),
        ),
        (
            "EventSource h1 gets SSE",
            h1(EVENTSOURCE, None),
            ALL,
            Serve(Sse),
        ),
        (
            "EventSource h2 gets SSE",
            h2(EVENTSOURCE, None),
            ALL,
            Serve(Sse),
        ),
        (
            "SSE among several media ranges, with parameters and odd case",
            h1(
                &[("accept", "text/html;q=0.9, Text/Event-Stream ;q=0.5")],
                None,
            ),
            ALL,
            Serve(Sse),
        ),
        (
            "text/event-stream;q=0 is not acceptable: long-poll",
            h1(&[("accept", "text/event-stream;q=0")], None),
            ALL,
            Serve(LongPoll),
        ),
        (
            "q=0.000 with spaces and case, among other ranges: long-poll",
            h2(
                &[("accept", "application/json, text/event-stream ; Q = 0.000")],
                None,
            ),
            ALL,
            Serve(LongPoll),
        ),
        (
            "q=0.001 is still acceptable",
            h1(&[("accept", "text/event-stream;q=0.001")], None),
            ALL,
            Serve(Sse),
        ),
        (
            "route [sse]: q=0 fits nothing",
            h1(&[("accept", "text/event-stream;q=0")], None),
            &[Sse],
            NotAcceptable,
        ),
        (
            "old XHR (application/json) gets long-poll",
            h1(XHR, None),
            ALL,
            Serve(LongPoll),
        ),
        (
            "WebSocket handshake over h1",
            h1(WS_H1, None),
            ALL,
            Serve(Ws),
        ),
        (
            "WebSocket handshake, mixed case and a Connection list",
            h1(
                &[
                    ("Upgrade", "WebSocket"),
                    ("Connection", "keep-alive, Upgrade"),
                ],
                None,
            ),
            ALL,
            Serve(Ws),
        ),
        (
            "Upgrade without Connection: upgrade is no handshake",
            h1(
                &[("upgrade", "websocket"), ("connection", "keep-alive")],
                None,
            ),
            ALL,
            Serve(LongPoll),
        ),
        (
            "an h2c upgrade is no WebSocket handshake",
            h1(
                &[
                    ("upgrade", "h2c"),
                    ("connection", "Upgrade, HTTP2-Settings"),
                ],
                None,
            ),
            ALL,
            Serve(LongPoll),
        ),
        (
            "Upgrade headers on an h2 GET are no handshake (RFC 9113 §8.2.2)",
            h2(
                &[
                    ("upgrade", "websocket"),
                    ("connection", "upgrade"),
                    ("accept", "text/event-stream"),
                ],
                None,
            ),
            ALL,
            Serve(Sse),
        ),
        (
            "h2 extended CONNECT :protocol websocket",
            connect("websocket", None),
            ALL,
            Serve(Ws),
        ),
        (
            "h2 extended CONNECT, :protocol in odd case",
            connect("WebSocket", None),
            ALL,
            Serve(Ws),
        ),
        (
            "h2 CONNECT with another :protocol fits nothing",
            connect("connect-udp", None),
            ALL,
            NotAcceptable,
        ),
        (
            "explicit sse beats Accept */*",
            h1(CURL, Some("transport=sse")),
            ALL,
            Serve(Sse),
        ),
        (
            "explicit long-poll beats an EventSource Accept",
            h2(EVENTSOURCE, Some("transport=long-poll")),
            ALL,
            Serve(LongPoll),
        ),
        (
            "explicit, percent-encoded",
            h1(CURL, Some("last_event_id=7&transport=long%2Dpoll")),
            ALL,
            Serve(LongPoll),
        ),
        (
            "explicit ws with an h1 handshake",
            h1(WS_H1, Some("transport=ws")),
            ALL,
            Serve(Ws),
        ),
        (
            "explicit ws with an h2 extended CONNECT",
            connect("websocket", Some("transport=ws")),
            ALL,
            Serve(Ws),
        ),
        (
            "explicit ws without a handshake is a bad request",
            h1(CURL, Some("transport=ws")),
            ALL,
            BadRequest,
        ),
        (
            "unknown explicit transport",
            h1(CURL, Some("transport=carrier-pigeon")),
            ALL,
            NotAcceptable,
        ),
        (
            "empty explicit transport",
            h1(CURL, Some("transport=")),
            ALL,
            NotAcceptable,
        ),
        (
            "explicit ws not allowed",
            h1(WS_H1, Some("transport=ws")),
            SSE_LP,
            NotAcceptable,
        ),
        (
            "explicit sse not allowed",
            h1(EVENTSOURCE, Some("transport=sse")),
            &[LongPoll],
            NotAcceptable,
        ),
        (
            "explicit sse on an extended CONNECT would open a tunnel",
            connect("websocket", Some("transport=sse")),
            ALL,
            BadRequest,
        ),
        (
            "route [long-poll]: EventSource downgraded",
            h1(EVENTSOURCE, None),
            &[LongPoll],
            Downgrade {
                to: LongPoll,
                from: Sse,
            },
        ),
        (
            "route [long-poll]: WebSocket downgraded",
            h1(WS_H1, None),
            &[LongPoll],
            Downgrade {
                to: LongPoll,
                from: Ws,
            },
        ),
        (
            "route [long-poll]: curl",
            h2(CURL, None),
            &[LongPoll],
            Serve(LongPoll),
        ),
        (
            "route [sse]: EventSource",
            h1(EVENTSOURCE, None),
            &[Sse],
            Serve(Sse),
        ),
        (
            "route [sse]: curl cannot take SSE",
            h1(CURL, None),
            &[Sse],
            NotAcceptable,
        ),
        (
            "route [sse, long-poll]: EventSource",
            h2(EVENTSOURCE, None),
            SSE_LP,
            Serve(Sse),
        ),
        (
            "route [sse, long-poll]: old XHR",
            h1(XHR, None),
            SSE_LP,
            Serve(LongPoll),
        ),
        (
            "route [sse, long-poll]: WebSocket that also accepts SSE downgraded to SSE",
            h1(
                &[
                    ("upgrade", "websocket"),
                    ("connection", "upgrade"),
                    ("accept", "text/event-stream"),
                ],
                None,
            ),
            SSE_LP,
            Downgrade { to: Sse, from: Ws },
        ),
        (
            "route [sse, long-poll]: WebSocket downgraded to long-poll",
            h1(WS_H1, None),
            SSE_LP,
            Downgrade {
                to: LongPoll,
                from: Ws,
            },
        ),
        (
            "route [ws]: an SSE request is refused",
            h1(EVENTSOURCE, None),
            &[Ws],
            NotAcceptable,
        ),
        ("route [ws]: WebSocket", h1(WS_H1, None), &[Ws], Serve(Ws)),
        (
            "route [ws, sse]: curl fits nothing",
            h2(CURL, None),
            &[Ws, Sse],
            NotAcceptable,
        ),
        (
            "route [sse, long-poll]: an extended CONNECT cannot be downgraded (a 2xx opens a tunnel)",
            connect("websocket", None),
            SSE_LP,
            NotAcceptable,
        ),
    ]
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn request_shapes_against_route_policies() {
    let cases = cases();
    assert!(cases.len() >= 20);
    for (name, shape, allowed, want) in cases {
        let facts = Facts::of(
            &shape.method,
            shape.version,
            &headers(shape.headers),
            shape.query,
            shape.protocol,
        );
        let decision = decide(&facts, allowed);
        match (want, &decision) {
            (
                Want::Serve(t),
                Decision::Serve {
                    transport,
                    downgraded_from: None,
                },
            ) if *transport == t => {}
            (
                Want::Downgrade { to, from },
                Decision::Serve {
                    transport,
                    downgraded_from: Some(f),
                },
            ) if *transport == to && *f == from => {}
            (
                Want::NotAcceptable,
                Decision::Refuse {
                    status: StatusCode::NOT_ACCEPTABLE,
                    reason,
                },
            ) => {
                let body: serde_json::Value =
                    serde_json::from_str(reason).unwrap_or_else(|e| panic!("{name}: {e}"));
                let listed: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
                assert_eq!(body["allowed"], serde_json::json!(listed), "{name}");
                assert!(body["error"].is_string(), "{name}");
            }
            (
                Want::BadRequest,
                Decision::Refuse {
                    status: StatusCode::BAD_REQUEST,
                    ..
                },
            ) => {}
            (_, decision) => panic!("{name}: got {decision:?}"),
        }
    }
}

#[test]
fn the_explicit_transport_is_read_verbatim() {
    let facts = Facts::of(
        &Method::GET,
        Version::HTTP_11,
        &HeaderMap::new(),
        Some("a=1&transport=sse&transport=ws"),
        None,
    );
    assert_eq!(
        facts.explicit.as_deref(),
        Some("sse"),
        "the first value wins"
    );
    let facts = Facts::of(
        &Method::GET,
        Version::HTTP_11,
        &HeaderMap::new(),
        Some("transports=sse"),
        None,
    );
    assert_eq!(facts.explicit, None);
}
