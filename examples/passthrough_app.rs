//! A tiny application for the pass-through example (examples/passthrough.yaml): plain HTTP at `/hello` (it
//! reports the forwarding headers it got) and its own WebSocket endpoint at `/ws` (echo, subprotocol
//! `echo.v1` when offered), on HTTP/1.1. pushbridge in front of it passes both through.
//!
//! cargo run --example passthrough_app -- 127.0.0.1:8081

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pushbridge::{Body, full_body};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

#[tokio::main]
async fn main() -> Result<(), pushbridge::BoxError> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8081")
        .parse()?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!(
        "app on http://{}/hello and ws://{0}/ws; Ctrl-C stops",
        listener.local_addr()?
    );
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|req| async { Ok::<_, Infallible>(handle(req)) });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

fn handle(mut req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/ws" {
        let forwarded: Vec<String> = req
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().contains("forward") || name.as_str() == "x-real-ip")
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
            .collect();
        return Response::new(full_body(format!(
            "hello from the app\n{}\n",
            forwarded.join("\n")
        )));
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        let mut refusal = Response::new(full_body("WebSocket only\n"));
        *refusal.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return refusal;
    };
    let echo_v1 = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "echo.v1"));
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, "upgrade".parse().unwrap());
    headers.insert(UPGRADE, "websocket".parse().unwrap());
    if let Ok(accept) = derive_accept_key(key.as_bytes()).parse() {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if echo_v1 {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, "echo.v1".parse().unwrap());
    }
    response
}
