//! A WebSocket client that sends a message over the limit gets close 1009 and then a lingering close: pushbridge
//! shuts its sending side and reads (and discards) what the client is still sending, for a bounded time, before it
//! closes the socket. Closing with unread bytes would reset the connection, and a proxy in front (nginx) would then
//! tell the browser 1006 instead of 1009. Both WebSocket sessions: the pass-through relay and a stream route. A raw
//! TCP client declares a 4 MiB message, writes all of it while reading, and must see the close frame, a clean end
//! of stream, and every write accepted (no reset). The real binary.

mod support;

use std::net::SocketAddr;

use support::binary;
use support::client::WAIT;
use support::nginx::Nginx;
use support::upstream::SseUpstream;
use support::ws_app::WsApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// The over-size message's declared payload: more than socket buffers take, so writing it needs a reading peer.
const PAYLOAD: usize = 4 << 20;

/// Opens a WebSocket on `path` by hand; returns the socket positioned after the 101 head.
async fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("101 in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "handshake answer cut: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// Sends one text frame declaring [`PAYLOAD`] bytes and writes them all while reading what the server sends;
/// returns the close code received, after asserting a clean end of stream and no failed write.
async fn oversize_message(tcp: TcpStream) -> u16 {
    let (mut read, write) = tcp.into_split();
    let writer = tokio::spawn(write_oversize(write));
    let mut received = Vec::new();
    let ended = tokio::time::timeout(WAIT, read.read_to_end(&mut received))
        .await
        .expect("the server ends the stream in time");
    assert!(
        ended.is_ok(),
        "clean end of stream after {} bytes, got {ended:?}",
        received.len()
    );
    let written = tokio::time::timeout(WAIT, writer)
        .await
        .expect("the message is taken in time")
        .unwrap();
    assert!(
        written.is_ok(),
        "every byte of the message accepted, got {:?}",
        written.err()
    );
    let close = close_frame(&received);
    u16::from_be_bytes([close[0], close[1]])
}

/// Writes one masked text frame declaring [`PAYLOAD`] bytes, all of them; returns the writer.
async fn write_oversize(mut write: OwnedWriteHalf) -> std::io::Result<OwnedWriteHalf> {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(PAYLOAD as u64).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    write.write_all(&header).await?;
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..PAYLOAD / chunk.len() {
        write.write_all(&chunk).await?;
    }
    Ok(write)
}

/// The payload of the close frame among server frames (unmasked), skipping pings.
fn close_frame(mut bytes: &[u8]) -> Vec<u8> {
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => panic!("unexpected large server frame"),
            n => (usize::from(n), 2),
        };
        let payload = &bytes[header..header + len];
        if opcode == 0x8 {
            assert_eq!(bytes.len(), header + len, "nothing after the close frame");
            return payload.to_vec();
        }
        assert_eq!(opcode, 0x9, "only pings before the close frame");
        bytes = &bytes[header + len..];
    }
    panic!("no close frame in {bytes:?}");
}

async fn repeat(addr: SocketAddr, path: &str) {
    for attempt in 0..4 {
        let tcp = upgrade(addr, path).await;
        assert_eq!(oversize_message(tcp).await, 1009, "attempt {attempt}");
    }
}

#[tokio::test]
async fn the_passthrough_relay_lingers_after_1009() {
    let app = WsApp::start().await;
    let proxy = binary::started(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{}\"\n  websocket: {{ max_message: 1KiB }}\n",
        app.addr
    ));
    repeat(proxy.addr(), "/chat").await;
}

#[tokio::test]
async fn a_stream_route_session_lingers_after_1009() {
    let upstream = SseUpstream::start(true).await;
    let proxy = binary::started(&format!(
        r#"listen:
  - address: "127.0.0.1:0"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{up}/up/{{channel}}" }}
    client_messages: {{ forward: "http://{up}/messages", max_bytes: 1KiB }}
"#,
        up = upstream.addr
    ));
    repeat(proxy.addr(), "/events/news").await;
}

/// nginx set up for WebSocket in front of the pass-through relay: its client must get the 1009 too. nginx tunnels
/// the upgraded connection; a reset from pushbridge would make it drop the close frame (1006 in a browser). How
/// nginx then ends its own side is nginx's business: only the close code is asserted.
#[tokio::test]
async fn behind_nginx_the_client_gets_1009() {
    let Some(nginx) = support::nginx::path() else {
        assert!(
            std::env::var("PUSHBRIDGE_SKIP_BROWSER").is_ok_and(|v| v == "1"),
            "nginx missing: run `bash .ci/browser-deps`"
        );
        return;
    };
    let app = WsApp::start().await;
    let proxy = binary::started(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{}\"\n  websocket: {{ max_message: 1KiB }}\n",
        app.addr
    ));
    let nginx = Nginx::start(&nginx, proxy.addr(), PROXY_UPGRADE, None).await;
    for attempt in 0..8 {
        let tcp = upgrade(nginx.addr(), "/chat").await;
        assert_eq!(close_code(tcp).await, 1009, "attempt {attempt}");
    }
}

/// Forwards `Upgrade`, as nginx set up for WebSocket does.
const PROXY_UPGRADE: &str = "proxy_http_version 1.1;\n\
    proxy_set_header Upgrade $http_upgrade;\n\
    proxy_set_header Connection \"upgrade\";\n\
    proxy_buffering off;";

/// Sends the over-size message (as [`oversize_message`]) and returns the close code received, however the stream
/// ends after it.
async fn close_code(tcp: TcpStream) -> u16 {
    let (mut read, write) = tcp.into_split();
    let writer = tokio::spawn(write_oversize(write));
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(WAIT, async {
        while !has_close(&received) {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(has_close(&received), "no close frame in {received:?}");
    let close = close_frame(&received);
    u16::from_be_bytes([close[0], close[1]])
}

/// Whether `bytes` (server frames, unmasked) hold a whole close frame.
fn has_close(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 2 {
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            126 | 127 => return false,
            n => (usize::from(n), 2),
        };
        if bytes.len() < header + len {
            return false;
        }
        if bytes[0] & 0x0f == 0x8 {
            return true;
        }
        bytes = &bytes[header + len..];
    }
    false
}
