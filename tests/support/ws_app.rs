//! An application with its own WebSocket endpoints (tokio-tungstenite) on 127.0.0.1:0, for pass-through tests:
//! it echoes text and binary messages, picks the `chat.v1` subprotocol when offered, answers `close-me` with a
//! close frame 4000 "bye", refuses paths under `/refuse` with 403, and reports each handshake's headers and
//! each close frame it receives.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What the application saw.
#[derive(Debug)]
pub enum Seen {
    /// A handshake: the request path and headers.
    Open { path: String, headers: HeaderMap },
    /// A close frame from the peer (`None`: the connection ended without one).
    Closed(Option<CloseCode>),
}

pub struct WsApp {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl WsApp {
    pub async fn start() -> WsApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(session(tcp, tx.clone()));
            }
        });
        WsApp { addr, seen }
    }

    /// The next thing seen, within the test wait.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(super::client::WAIT, self.seen.recv())
            .await
            .expect("the app saw something in time")
            .expect("app running")
    }

    /// The next handshake's path and headers.
    pub async fn opened(&mut self) -> (String, HeaderMap) {
        match self.next().await {
            Seen::Open { path, headers } => (path, headers),
            other => panic!("expected a handshake, got {other:?}"),
        }
    }

    /// The code of the next close the app received.
    pub async fn closed(&mut self) -> Option<CloseCode> {
        match self.next().await {
            Seen::Closed(code) => code,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

async fn session(tcp: tokio::net::TcpStream, tx: mpsc::UnboundedSender<Seen>) {
    let opened = tx.clone();
    // The callback's signature is tungstenite's (`ErrorResponse` is a whole `http::Response`).
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let path = req.uri().path().to_owned();
        if path.starts_with("/refuse") {
            let mut refusal = ErrorResponse::new(Some("no websocket here".to_owned()));
            *refusal.status_mut() = StatusCode::FORBIDDEN;
            return Err(refusal);
        }
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat.v1"));
        if offered {
            resp.headers_mut()
                .insert("sec-websocket-protocol", "chat.v1".parse().unwrap());
        }
        resp.headers_mut()
            .insert("x-app", "ws-echo".parse().unwrap());
        let _ = opened.send(Seen::Open {
            path,
            headers: req.headers().clone(),
        });
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    while let Some(message) = ws.next().await {
        let reply = match message {
            Ok(Message::Text(text)) if text.as_str() == "close-me" => {
                Message::Close(Some(CloseFrame {
                    code: CloseCode::Library(4000),
                    reason: "bye".into(),
                }))
            }
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            Ok(Message::Close(frame)) => {
                let _ = tx.send(Seen::Closed(frame.map(|f| f.code)));
                // tungstenite answers the close frame on the next flush.
                let _ = ws.flush().await;
                return;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
    let _ = tx.send(Seen::Closed(None));
}
