//! A chat application behind pushbridge, using client → application messages: clients POST (or send WebSocket
//! frames) to the stream path; pushbridge forwards them to `POST /internal/messages` here with the room in
//! `x-pushbridge-params`; the app publishes every message on the room's SSE stream `/internal/events/{room}`,
//! which pushbridge fans out. `/` is the chat page.
//!
//! cargo run --example chat            # app on 127.0.0.1:8090
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
    let address: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8090")
        .parse()?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!(
        "chat app on http://{address}/ — put pushbridge in front: cargo run -- run -c examples/chat.yaml"
    );
    let rooms = Arc::new(Rooms::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let rooms = rooms.clone();
                async move { Ok::<_, Infallible>(respond(req, &rooms).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn respond(req: Request<Incoming>, rooms: &Rooms) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/" {
        let mut response = Response::new(full_body(PAGE));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return response;
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
