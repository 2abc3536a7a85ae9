//! A chat application behind pushbridge, using client → application messages: clients POST (or send WebSocket
//! frames) to the stream path; pushbridge forwards them to `POST /internal/messages` here with the room in
//! `x-pushbridge-params`; the app publishes every message on the room's SSE stream `/internal/events/{room}`,
//! which pushbridge fans out. `/` is the chat page.
//!
//! The app trusts `x-pushbridge-params` only because of where it listens: `/internal/*` is served on a second,
//! internal port bound to a loopback address, which is not the pass-through upstream, so only pushbridge (on the
//! same host, the sidecar layout) reaches it. The public port serves the page and nothing under `/internal/`.
//!
//! cargo run --example chat            # page on 127.0.0.1:8090, internal endpoints on 127.0.0.1:8091
//! cargo run -- run -c examples/chat.yaml   # pushbridge in front, then open http://127.0.0.1:8080/

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushbridge::{Body, BoxError, full_body};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

const PAGE: &str = include_str!("chat.html");

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, (u64, broadcast::Sender<Bytes>)>>,
}

impl Rooms {
    fn sender(&self, room: &str) -> broadcast::Sender<Bytes> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| (0, broadcast::channel(256).0))
            .1
            .clone()
    }

    fn publish(&self, room: &str, text: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, sender) = rooms
            .entry(room.to_owned())
            .or_insert_with(|| (0, broadcast::channel(256).0));
        *seq += 1;
        let data = serde_json::json!({ "room": room, "text": text }).to_string();
        let _ = sender.send(pushbridge::sse::encode_event(
            Some(&seq.to_string()),
            Some("message"),
            &data,
        ));
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let public: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8090").parse()?;
    let internal: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8091").parse()?;
    if !internal.ip().is_loopback() {
        return Err(format!(
            "the internal port must be bound to a loopback address, not {internal}"
        )
        .into());
    }
    let public = tokio::net::TcpListener::bind(public).await?;
    let internal = tokio::net::TcpListener::bind(internal).await?;
    println!(
        "chat app on http://{}/ (internal endpoints on {}) — put pushbridge in front: cargo run -- run -c examples/chat.yaml",
        public.local_addr()?,
        internal.local_addr()?
    );
    serve(public, internal).await
}

/// Serves the page on `public` and the internal endpoints on `internal`, sharing the rooms.
pub async fn serve(
    public: tokio::net::TcpListener,
    internal: tokio::net::TcpListener,
) -> Result<(), BoxError> {
    let rooms = Arc::new(Rooms::default());
    let page = tokio::spawn(accept(public, rooms.clone(), Port::Public));
    let result = accept(internal, rooms, Port::Internal).await;
    page.abort();
    result
}

/// Which of the two listeners a request came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    /// The page: the pass-through upstream, reachable by any client through pushbridge.
    Public,
    /// `/internal/*`: only pushbridge's stream routes and client messages use it.
    Internal,
}

async fn accept(
    listener: tokio::net::TcpListener,
    rooms: Arc<Rooms>,
    port: Port,
) -> Result<(), BoxError> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let rooms = rooms.clone();
                async move { Ok::<_, Infallible>(respond(req, &rooms, port).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn respond(req: Request<Incoming>, rooms: &Rooms, port: Port) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if port == Port::Public && path == "/" {
        let mut response = Response::new(full_body(PAGE));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return response;
    }
    if port == Port::Public {
        return status(StatusCode::NOT_FOUND);
    }
    if path == "/internal/messages" && req.method() == http::Method::POST {
        let params = req
            .headers()
            .get("x-pushbridge-params")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let room = form_urlencoded::parse(params.as_bytes())
            .find(|(k, _)| k == "room")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| "lobby".into());
        let Ok(body) = Limited::new(req.into_body(), 4096).collect().await else {
            return status(StatusCode::PAYLOAD_TOO_LARGE);
        };
        let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        rooms.publish(&room, text.trim());
        return status(StatusCode::NO_CONTENT);
    }
    if let Some(room) = path.strip_prefix("/internal/events/") {
        let events =
            BroadcastStream::new(rooms.sender(room).subscribe()).filter_map(|item| async move {
                item.ok().map(|bytes| Ok(http_body::Frame::data(bytes)))
            });
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(events)));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("text/event-stream"),
        );
        return response;
    }
    status(StatusCode::NOT_FOUND)
}

fn status(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}
