//! The demo's application: `GET /internal/events/{channel}` is an SSE stream of numbered ticks (ids are the tick
//! numbers; `Last-Event-ID` resumes after the given tick), `GET /` is the demo page. Also used by
//! `examples/ticker.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::{Body, BoxError, full_body};

const PAGE: &str = include_str!("page.html");

/// Binds `address` and serves the ticker app in the background; returns the bound address.
pub async fn start(address: SocketAddr, interval: Duration) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let epoch = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req| async move {
                    Ok::<_, Infallible>(respond(req, epoch, interval))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(bound)
}

fn respond(req: Request<Incoming>, epoch: Instant, interval: Duration) -> Response<Body> {
    let path = req.uri().path();
    if path == "/" || path == "/index.html" {
        let mut response = Response::new(full_body(PAGE));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return response;
    }
    let Some(channel) = path.strip_prefix("/internal/events/") else {
        let mut response = Response::new(full_body("not found\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let channel = channel.to_owned();
    // Tick n is due at epoch + n·interval; a resuming client gets every tick after its last one.
    let next = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or_else(|| due_ticks(epoch, interval), |last| last + 1);
    let ticks = stream::unfold(next, move |n| {
        let channel = channel.clone();
        async move {
            tokio::time::sleep_until(epoch + interval * (n as u32)).await;
            let data = serde_json::json!({ "tick": n, "channel": channel }).to_string();
            let frame = crate::sse::encode_event(Some(&n.to_string()), Some("tick"), &data);
            Some((Ok::<_, BoxError>(Frame::data(frame)), n + 1))
        }
    });
    let mut response = Response::new(StreamBody::new(ticks).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn due_ticks(epoch: Instant, interval: Duration) -> u64 {
    (epoch.elapsed().as_nanos() / interval.as_nanos().max(1)) as u64 + 1
}
