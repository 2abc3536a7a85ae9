//! Malformed upstream input is logged, counted and skipped; the proxy and the other streams carry on.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use support::client::{Proto, connect};
use support::proxy;

type Body = BoxBody<Bytes, Infallible>;

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

/// Stays open after its bytes.
fn open_stream(first: &'static [u8]) -> Response<Body> {
    use futures_util::StreamExt;
    let chunks = futures_util::stream::once(async move {
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(first)))
    })
    .chain(futures_util::stream::pending());
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap()
}

fn respond(req: Request<Incoming>) -> Response<Body> {
    let resumed = req.headers().contains_key("last-event-id");
    let sse = "text/event-stream";
    match req.uri().path() {
        // No blank line after the last event, then the connection closes.
        "/up/noblank" if !resumed => reply(
            200,
            sse,
            b"id: 1\ndata: complete\n\nid: 2\ndata: incomplete".to_vec(),
        ),
        // The reconnect replays id 1 (a duplicate) and then a new event.
        "/up/noblank" => reply(
            200,
            sse,
            b"id: 1\ndata: complete\n\nid: 3\ndata: next\n\n".to_vec(),
        ),
        "/up/oversize" => {
            let mut body = b"id: 1\ndata: ".to_vec();
            body.extend(std::iter::repeat_n(b'x', 2 << 20));
            body.extend_from_slice(b"\n\nid: 2\ndata: after\n\n");
            reply(200, sse, body)
        }
        "/up/utf8" => reply(200, sse, b"id: 1\ndata: caf\xff\n\n".to_vec()),
        "/up/ctype" => reply(200, "text/plain", b"data: not sse\n\n".to_vec()),
        "/up/fail" => reply(500, "text/plain", b"boom".to_vec()),
        "/up/ok" => open_stream(b"id: 1\ndata: fine\n\n"),
        _ => reply(404, "text/plain", Vec::new()),
    }
}

async fn start_upstream() -> std::net::SocketAddr {
    support::app::serve(|req| async move { respond(req) }).await
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no series {series}"))
}

#[tokio::test]
async fn malformed_upstreams_are_skipped_and_other_streams_are_unaffected() {
    let upstream = start_upstream().await;
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
streams:
  - name: events
    path: /events/{{channel}}
    heartbeat: 100ms
    upstream:
      url: "http://{upstream}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 50ms }}
limits: {{ max_event_bytes: 64KiB }}
"#
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let mut ok = connect(addr, Proto::H2)
        .await
        .sse(addr, "/events/ok", None)
        .await;
    assert_eq!(ok.next_event().await.unwrap().data, "fine");

    let mut noblank = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/noblank", None)
        .await;
    let got: Vec<String> = noblank.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(
        got,
        ["complete", "next"],
        "the unterminated event is dropped, the replayed one not repeated"
    );

    let mut oversize = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/oversize", None)
        .await;
    assert_eq!(oversize.next_event().await.unwrap().data, "after");

    let mut utf8 = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/utf8", None)
        .await;
    assert_eq!(utf8.next_event().await.unwrap().data, "caf\u{FFFD}");

    // Wrong content type and a 500: clients stay connected (heartbeats keep coming) and nothing is delivered.
    for channel in ["ctype", "fail"] {
        let mut client = connect(addr, Proto::H1)
            .await
            .sse(addr, &format!("/events/{channel}"), None)
            .await;
        client.keep_raw = true;
        for _ in 0..3 {
            let chunk = client.next_chunk().await.expect("still connected");
            assert!(chunk.starts_with(b":"), "only comments: {chunk:?}");
        }
    }
    let text = String::from_utf8(proxy.running().metrics().render()).unwrap();
    assert!(
        metric(
            &text,
            "pushbridge_upstream_malformed_total{route=\"events\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "pushbridge_upstream_connects_total{result=\"error\",route=\"events\"}"
        ) >= 2.0
    );
    assert!(metric(&text, "pushbridge_upstream_duplicates_total") >= 1.0);

    // The healthy stream and the proxy itself carry on.
    let mut again = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/ok", Some("0"))
        .await;
    let first = again.next_event().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("pushbridge-gap"));
    assert_eq!(again.next_event().await.unwrap().data, "fine");
    drop(ok);
}
