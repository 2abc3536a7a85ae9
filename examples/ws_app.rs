//! A WebSocket push app for `kind: ws` (examples/ws-upstream.yaml): `ws://127.0.0.1:8091/feed/{channel}` sends
//! `{"seq":N,"type":"tick","payload":{"channel":"…","n":N}}` every second (N = seconds since start), agrees to
//! the `v1.feed` subprotocol, and after `?since=N` first resends the ticks after N (at most 100).
//!
//! cargo run --example ws_app -- 127.0.0.1:8091

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

#[tokio::main]
async fn main() -> Result<(), pushbridge::BoxError> {
    let address = std::env::args().nth(1).unwrap_or("127.0.0.1:8091".into());
    let listener = TcpListener::bind(&address).await?;
    println!(
        "WebSocket app on ws://{}/feed/{{channel}}; Ctrl-C stops",
        listener.local_addr()?
    );
    let start = Instant::now();
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(error) = serve(tcp, start).await {
                eprintln!("connection ended: {error}");
            }
        });
    }
}

// tungstenite's handshake callback returns its large `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, start: Instant) -> Result<(), pushbridge::BoxError> {
    let mut target = String::new();
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, mut res: Response| {
        target = req.uri().to_string();
        let offered = req.headers().get("sec-websocket-protocol");
        if offered.is_some_and(|p| {
            p.to_str()
                .is_ok_and(|p| p.split(',').any(|p| p.trim() == "v1.feed"))
        }) {
            res.headers_mut()
                .insert("sec-websocket-protocol", "v1.feed".parse().expect("static"));
        }
        Ok(res)
    })
    .await?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let channel = path.rsplit('/').next().unwrap_or("").to_owned();
    let since: Option<u64> = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "since")
        .and_then(|(_, v)| v.parse().ok());
    let now = start.elapsed().as_secs();
    let mut next = since.map_or(now + 1, |s| (s + 1).max(now.saturating_sub(99)));
    println!("client for {channel:?}, since {since:?}");
    loop {
        while next <= start.elapsed().as_secs() {
            let tick = serde_json::json!({"seq": next, "type": "tick", "payload": {"channel": channel, "n": next}});
            ws.send(Message::text(tick.to_string())).await?;
            next += 1;
        }
        let due = start + Duration::from_secs(next);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            // Read, so pings are answered and a close is seen.
            message = ws.next() => if !matches!(message, Some(Ok(_))) { return Ok(()) },
        }
    }
}
