//! An NDJSON streaming app for `kind: ndjson` (examples/ndjson-upstream.yaml), in the shape of a Kubernetes
//! watch: `GET /watch/{channel}` streams one line per second,
//! `{"type":"ADDED"|"MODIFIED","object":{"kind":"Tick","metadata":{"name":"…","resourceVersion":"N"}}}`
//! (N = seconds since start); with `X-Resume-After: N` it first resends the lines after N (at most 100).
//!
//! cargo run --example ndjson_app -- 127.0.0.1:8092

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Lines = StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

#[tokio::main]
async fn main() -> Result<(), pushbridge::BoxError> {
    let address = std::env::args().nth(1).unwrap_or("127.0.0.1:8092".into());
    let listener = TcpListener::bind(&address).await?;
    println!(
        "NDJSON app on http://{}/watch/{{channel}}; Ctrl-C stops",
        listener.local_addr()?
    );
    let start = Instant::now();
    loop {
        let (tcp, _) = listener.accept().await?;
        let service = service_fn(move |req| async move { Ok::<_, Infallible>(watch(req, start)) });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn watch(req: Request<Incoming>, start: Instant) -> Response<Lines> {
    let channel = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    let after: Option<u64> = req
        .headers()
        .get("x-resume-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let now = start.elapsed().as_secs();
    let first = after.map_or(now + 1, |a| (a + 1).max(now.saturating_sub(99)));
    println!("watch {channel:?}, after {after:?}");
    let lines = futures_util::stream::unfold(first, move |next| {
        let channel = channel.clone();
        async move {
            tokio::time::sleep_until((start + Duration::from_secs(next)).into()).await;
            let kind = if next % 5 == 1 { "ADDED" } else { "MODIFIED" };
            let line = serde_json::json!({
                "type": kind,
                "object": {"kind": "Tick", "metadata": {"name": channel, "resourceVersion": next.to_string()}},
            });
            Some((Ok(Frame::data(Bytes::from(format!("{line}\n")))), next + 1))
        }
    });
    let mut response = Response::new(StreamBody::new(Box::pin(lines) as _));
    response.headers_mut().insert(
        "content-type",
        "application/x-ndjson".parse().expect("static"),
    );
    response
}
