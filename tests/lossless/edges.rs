//! Issue 7 item 5, the smaller edges: the application's `retry:` reaches SSE clients (bounded), `q=0` is honoured,
//! refusals carry CORS and the preflight allows what EventSource polyfills send, and resume replays stay out of the
//! delivery-latency histogram.

use http::StatusCode;
use http_body_util::Full;

use crate::app::{Script, ScriptApp};
use crate::clients::Proxy;
use crate::polls;
use crate::support::client::{Proto, SseClient, connect, eventually};
use crate::support::upstream::SseUpstream;

/// Reads raw bytes until the text contains `needle`; returns everything read.
async fn read_until(client: &mut SseClient, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        let chunk = client.next_chunk().await.expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

/// The values of the `retry:` lines in `text`, in order.
fn retries(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("retry: ")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_retry_reaches_sse_clients_within_bounds() {
    let app = ScriptApp::start(vec![
        (
            "/up/high",
            vec![Script {
                bytes: "retry: 3000\n\nid: 1\ndata: a\n\nretry: 999999\n\nid: 2\ndata: b\n\n",
                hold: true,
            }],
        ),
        (
            "/up/low",
            vec![Script {
                bytes: "retry: 0\n\nid: 1\ndata: x\n\n",
                hold: true,
            }],
        ),
    ])
    .await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 300ms, max: 1s }} }}
    sse: {{ retry: 2s, retry_max: 5s }}
"#,
        app.addr
    ));
    let addr = proxy.addr();
    let mut high = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/high", None)
        .await;
    let mut low = connect(addr, Proto::H2)
        .await
        .sse(addr, "/events/low", None)
        .await;
    // Before the application said anything: sse.retry.
    assert_eq!(retries(&read_until(&mut high, "retry:").await), [2000]);
    app.release();
    // The application's 999999 is clamped to sse.retry_max, its 0 to upstream.reconnect.initial; each comes
    // before the events that followed it upstream.
    let text = read_until(&mut high, "data: b").await;
    let before_b = &text[..text.find("data: b").unwrap()];
    assert_eq!(retries(before_b).last(), Some(&5000), "{text}");
    assert!(
        retries(&text)
            .iter()
            .all(|r| [2000, 3000, 5000].contains(r)),
        "{text}"
    );
    let text = read_until(&mut low, "data: x").await;
    assert_eq!(retries(&text).last(), Some(&300), "{text}");
    // A new client gets the application's value in its first flush.
    let mut late = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/high", None)
        .await;
    assert_eq!(retries(&read_until(&mut late, "retry:").await), [5000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_event_stream_with_q_0_is_not_served_sse() {
    let upstream = SseUpstream::start(true).await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
    long_poll: {{ timeout: 100ms }}
"#,
        upstream.addr
    ));
    let addr = proxy.addr();
    for (accept, want) in [
        ("text/event-stream;q=0", "long-poll"),
        ("application/json, text/event-stream; q=0.0", "long-poll"),
        ("text/event-stream;q=0.5", "sse"),
    ] {
        let mut sender = connect(addr, Proto::H1).await;
        let response = sender
            .send(polls::get(
                addr,
                "/events/x",
                Proto::H1,
                &[("accept", accept)],
            ))
            .await;
        assert_eq!(
            response.headers()["x-pushbridge-transport"],
            want,
            "{accept}"
        );
    }
}

/// An authorization service refusing everyone with 403.
async fn refusing_check() -> std::net::SocketAddr {
    crate::support::app::serve(|_req| async {
        let mut response = http::Response::new(Full::new(bytes::Bytes::new()));
        *response.status_mut() = StatusCode::FORBIDDEN;
        response
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_cors_and_the_preflight_allows_polyfill_headers() {
    let upstream = SseUpstream::start(true).await;
    let check = refusing_check().await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{up}/up/{{channel}}" }}
    transports: [sse, long-poll]
    origins: ["https://app.example"]
  - path: /private
    upstream: {{ url: "http://{up}/up/private" }}
    origins: ["https://app.example"]
    auth: {{ check: "http://{check}/check" }}
  - path: /custom
    upstream: {{ url: "http://{up}/up/custom" }}
    origins: ["https://app.example"]
    cors: {{ allow_headers: [X-Custom] }}
"#,
        up = upstream.addr
    ));
    let addr = proxy.addr();
    let origin = ("origin", "https://app.example");
    let refused = [
        ("GET", "/events/x?transport=ws", 406),
        ("GET", "/events/x?transport=carrier-pigeon", 406),
        ("GET", "/events/x?transport=long-poll&wait=soon", 400),
        ("GET", "/custom?transport=ws", 400),
        ("PUT", "/events/x", 405),
        ("GET", "/private", 403),
    ];
    for (method, path, status) in refused {
        let mut sender = connect(addr, Proto::H1).await;
        let req = polls::request(method.parse().unwrap(), addr, path, Proto::H1, &[origin]);
        let response = sender.send(req).await;
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example",
            "{method} {path}"
        );
    }
    // The authorization refusal over HTTP/2 too.
    let mut sender = connect(addr, Proto::H2).await;
    let response = sender
        .send(polls::get(
            addr,
            "/private?transport=sse",
            Proto::H2,
            &[origin],
        ))
        .await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let preflight = |path: &'static str| async move {
        let mut sender = connect(addr, Proto::H1).await;
        let req = polls::request(
            http::Method::OPTIONS,
            addr,
            path,
            Proto::H1,
            &[
                origin,
                ("access-control-request-method", "GET"),
                (
                    "access-control-request-headers",
                    "cache-control, x-requested-with",
                ),
            ],
        );
        let response = sender.send(req).await;
        assert_eq!(response.status(), 204);
        response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let allowed = preflight("/events/x").await;
    for header in [
        "last-event-id",
        "content-type",
        "authorization",
        "cache-control",
        "x-requested-with",
    ] {
        assert!(
            allowed.split(", ").any(|h| h == header),
            "{header} in {allowed}"
        );
    }
    assert_eq!(preflight("/custom").await, "x-custom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_stay_out_of_the_delivery_latency_histogram() {
    let upstream = SseUpstream::start(true).await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
"#,
        upstream.addr
    ));
    let addr = proxy.addr();
    let mut live = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", None)
        .await;
    upstream.wait_connections(1).await;
    polls::publish(&upstream, &mut live, 1, 3).await;
    // Resumes: SSE and WebSocket after 1, long-poll after 1 (events published before they arrived).
    let mut resumed = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", Some("1"))
        .await;
    assert_eq!(resumed.take(2).await.len(), 2);
    let mut ws = crate::clients::ws(addr, "/events/x?last_event_id=1").await;
    assert_eq!(crate::clients::next_envelopes(&mut ws, 2).await.len(), 2);
    let poll = polls::poll(addr, Proto::H1, "/events/x?last_event_id=1", &[]).await;
    assert_eq!(poll.events(), polls::expected(2, 3));

    let count = |transport: &'static str| {
        let proxy = &proxy;
        async move {
            let label = format!("transport=\"{transport}\"");
            (
                proxy
                    .metric("pushbridge_events_delivered_total", &label)
                    .await,
                proxy
                    .metric("pushbridge_delivery_latency_seconds_count", &label)
                    .await,
            )
        }
    };
    eventually("deliveries counted", || async {
        count("sse").await.0 == 5.0
    })
    .await;
    assert_eq!(count("sse").await, (5.0, 3.0), "3 live, 2 replayed");
    assert_eq!(count("ws").await, (2.0, 0.0));
    assert_eq!(count("long-poll").await, (2.0, 0.0));
}
