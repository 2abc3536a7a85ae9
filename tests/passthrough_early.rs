//! Responses that do not wait for the request: an application that answers 413 without reading a large body and
//! closes must have its 413 delivered (RFC 9112 §9.5), not a 502; and 1xx informational responses (103 Early
//! Hints) from the application leave the final response intact. hyper's server cannot send a 1xx other than
//! its own `100 Continue` (docs/protocol.md), so the 103 itself is not forwarded: these tests pin that down. The
//! real binary in front of raw applications.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use support::binary::{self, Started};
use support::client::{Proto, WAIT, connect, empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw HTTP/1.1 application: reads each connection's request head, writes `answer` and closes without reading
/// the body (the kernel resets the connection when body bytes are left unread).
async fn raw_app(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(answer).await;
            });
        }
    });
    addr
}

/// The real binary in front of `app`.
fn start(app: SocketAddr, protocol: &str) -> Started {
    binary::started(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{app}\"\n  protocol: {protocol}\n"
    ))
}

const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 10\r\nconnection: close\r\n\r\ntoo large\n";

/// POSTs a 3 MiB body over a fresh connection while reading; returns what arrived until the answer's body
/// (`too large`) was complete, the connection ended, or [`WAIT`] passed.
async fn upload(addr: SocketAddr) -> String {
    const SIZE: usize = 3 << 20;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: app.example\r\ncontent-length: {SIZE}\r\ncontent-type: application/octet-stream\r\n\r\n"
        );
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..SIZE / chunk.len() {
            // The proxy may stop reading once it answered; that is not this test's business.
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Not half-closed: hyper's server drops a connection whose client shut its sending side early.
        let _open = write;
        std::future::pending::<()>().await;
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(WAIT, async {
        while !response.windows(10).any(|w| w == b"too large\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    String::from_utf8_lossy(&response).into_owned()
}

/// The status code of `response` (0 without a status line) and whether its body arrived.
fn answer(response: &str) -> (u16, bool) {
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (code, response.contains("too large\n"))
}

#[tokio::test]
async fn an_early_413_reaches_the_client_every_time() {
    let app = raw_app(TOO_LARGE).await;
    let proxy = start(app, "http1");
    let mut answers = Vec::new();
    for _ in 0..15 {
        answers.push(answer(&upload(proxy.addr()).await));
    }
    assert_eq!(answers, [(413, true); 15]);
}

/// curl over HTTP/2 (prior knowledge), uploading 3 MiB: the status it reports (`000`: none).
fn curl_h2_upload(addr: SocketAddr, body: &std::path::Path) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--max-time", "10", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("http://{addr}/upload"))
        .output()
        .expect("curl (installed by .ci/diff-deps)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A real HTTP/2 client (curl) gets the early 413 of an HTTP/1.1 application every time. Without the rest of its
/// body read first, the stream reset that follows the answer raced it: curl 7.88 reported no status in about one
/// run in three (error 92). curl still ends some uploads with an `END_STREAM` short of its `content-length`,
/// which HTTP/2 makes a stream error (RFC 9113 §8.1.1), so its exit code is not asserted: the status is.
#[tokio::test]
async fn an_http2_client_gets_the_early_413() {
    let app = raw_app(TOO_LARGE).await;
    let proxy = start(app, "http1");
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'x'; 3 << 20]).unwrap();
    let addr = proxy.addr();
    let codes = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| curl_h2_upload(addr, &body))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(codes, ["413"; 20]);
}

/// A 103 with a `Link`, then the final 200 (`x-final`, a `Link` too, body `ok`), then the connection closes.
const HINTED: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-final: yes\r\nlink: </style.css>; rel=preload; as=style\r\nconnection: close\r\n\r\nok";

async fn assert_final(response: Response<hyper::body::Incoming>, what: &str) {
    assert_eq!(response.status(), StatusCode::OK, "{what}");
    assert_eq!(response.headers()["x-final"], "yes", "{what}");
    assert_eq!(
        response.headers()["link"],
        "</style.css>; rel=preload; as=style",
        "{what}"
    );
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    assert_eq!(body, Bytes::from_static(b"ok"), "{what}");
}

#[tokio::test]
async fn an_http1_apps_103_leaves_the_final_response_intact() {
    let app = raw_app(HINTED).await;
    let proxy = start(app, "http1");
    // HTTP/1.1 client, raw: exactly one response, the final one.
    let mut tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    tcp.write_all(b"GET /page HTTP/1.1\r\nhost: app.example\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "{raw}");
    assert!(raw.ends_with("\r\n\r\nok"), "{raw}");
    // HTTP/2 client.
    let mut sender = connect(proxy.addr(), Proto::H2).await;
    let req = Request::get(format!("http://{}/page", proxy.addr()))
        .version(Version::HTTP_2)
        .body(empty())
        .unwrap();
    assert_final(sender.send(req).await, "h2 client").await;
}

/// An h2c application (the `h2` crate's server) that sends a 103, then the final 200 with `body`.
async fn h2c_hinting_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let hint = http::Response::builder()
                        .status(103)
                        .header("link", "</style.css>; rel=preload; as=style")
                        .body(())
                        .unwrap();
                    let _ = respond.send_informational(hint);
                    let last = http::Response::builder()
                        .header("x-final", "yes")
                        .header("link", "</style.css>; rel=preload; as=style")
                        .body(())
                        .unwrap();
                    if let Ok(mut body) = respond.send_response(last, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_h2c_apps_103_leaves_the_final_response_intact() {
    let app = h2c_hinting_app().await;
    let proxy = start(app, "h2c");
    for proto in [Proto::H1, Proto::H2] {
        let mut sender = connect(proxy.addr(), proto).await;
        let req = match proto {
            Proto::H1 => Request::get("/page").header("host", "app.example"),
            Proto::H2 => {
                Request::get(format!("http://{}/page", proxy.addr())).version(Version::HTTP_2)
            }
        };
        assert_final(
            sender.send(req.body(empty()).unwrap()).await,
            &format!("{proto:?} client"),
        )
        .await;
    }
}
