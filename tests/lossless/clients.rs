//! Helpers of the loss-free tests: the real binary started from a `streams:` block, a WebSocket client, and reads
//! from the admin `/metrics`.

use std::net::SocketAddr;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::binary::{self, Binary};
use crate::support::client::{WAIT, get_text};

/// The real `pushbridge` binary with one plaintext listener, the admin listener and JSON logs.
pub struct Proxy {
    pub binary: Binary,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts the binary with `streams` (a YAML `streams:` block).
    pub fn start(streams: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "listen:\n  - address: \"127.0.0.1:0\"\nadmin: {{ address: \"127.0.0.1:0\" }}\nlog: {{ format: json }}\n{streams}"
        );
        let binary = binary::start(dir.path(), &yaml, 1, true);
        Proxy { binary, _dir: dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.binary.listen[0]
    }

    /// The sum of the `/metrics` samples of `name` whose labels contain `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let admin = self.binary.admin.expect("admin listener");
        let (status, text) = get_text(admin, "/metrics").await;
        assert_eq!(status, 200);
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']) && rest.contains(labels))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A plaintext HTTP/1.1 WebSocket to `path`.
pub async fn ws(addr: SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("WebSocket opens");
    ws
}

/// The next `n` text frames as JSON envelopes (pings skipped).
pub async fn next_envelopes(ws: &mut WebSocketStream<TcpStream>, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time");
        match message {
            Some(Ok(Message::Text(text))) => out.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
    out
}
