//! A polling JSON API for `kind: poll` (examples/poll-upstream.yaml): `GET /poll/{channel}?cursor=N` answers
//! `{"events":[{"id":"K","text":"tick K on …"}…],"cursor":"M"}` with the ticks after N (one per second since
//! start, at most 100), an `ETag`, and `304` when `If-None-Match` shows nothing changed. Without a cursor it
//! answers no events and the current cursor.
//!
//! cargo run --example poll_app -- 127.0.0.1:8093

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), pushbridge::BoxError> {
    let address = std::env::args().nth(1).unwrap_or("127.0.0.1:8093".into());
    let listener = TcpListener::bind(&address).await?;
    println!(
        "polling app on http://{}/poll/{{channel}}; Ctrl-C stops",
        listener.local_addr()?
    );
    let start = Instant::now();
    loop {
        let (tcp, _) = listener.accept().await?;
        let service = service_fn(move |req| async move { Ok::<_, Infallible>(poll(&req, start)) });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn poll(req: &Request<Incoming>, start: Instant) -> Response<Full<Bytes>> {
    let channel = req.uri().path().rsplit('/').next().unwrap_or("");
    let now = start.elapsed().as_secs();
    let cursor: u64 = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "cursor")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(now)
        .max(now.saturating_sub(100));
    let etag = format!("\"{cursor}-{now}\"");
    let mut response = if req
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v == etag.as_str())
    {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let events: Vec<_> = (cursor + 1..=now)
            .map(|k| serde_json::json!({"id": k.to_string(), "text": format!("tick {k} on {channel}")}))
            .collect();
        let body = serde_json::json!({"events": events, "cursor": now.max(cursor).to_string()});
        Response::new(Full::new(Bytes::from(body.to_string())))
    };
    response
        .headers_mut()
        .insert("etag", etag.parse().expect("digits"));
    response
}
