//! Real HTTP clients for tests: HTTP/1.1 or HTTP/2, plaintext or TLS, and an SSE reader on top.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushbridge::sse::{Decoder, Item, SseEvent};
use tokio::net::TcpStream;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(15);

pub type ReqBody = BoxBody<Bytes, std::convert::Infallible>;

pub enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    H1,
    H2,
}

/// Opens a plaintext connection (h2 = prior knowledge).
pub async fn connect(addr: SocketAddr, proto: Proto) -> Sender {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    handshake(TokioIo::new(tcp), proto).await
}

/// Opens a TLS connection with `config` (whose ALPN decides the protocol).
pub async fn connect_tls(addr: SocketAddr, config: rustls::ClientConfig, proto: Proto) -> Sender {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let expected: &[u8] = if proto == Proto::H2 {
        b"h2"
    } else {
        b"http/1.1"
    };
    assert_eq!(alpn.as_deref(), Some(expected), "ALPN");
    handshake(TokioIo::new(tls), proto).await
}

async fn handshake<IO>(io: TokioIo<IO>, proto: Proto) -> Sender
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match proto {
        Proto::H1 => {
            let (sender, conn) = http1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(conn.with_upgrades());
            Sender::H1(sender)
        }
        Proto::H2 => {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Sender::H2(sender)
        }
    }
}

impl Sender {
    pub async fn send(&mut self, req: Request<ReqBody>) -> Response<Incoming> {
        let fut = async {
            match self {
                Sender::H1(s) => {
                    s.ready().await.expect("ready");
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.expect("ready");
                    s.send_request(req).await
                }
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("response in time")
            .expect("response")
    }

    /// GET `path` as an SSE client.
    pub async fn sse(
        &mut self,
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> SseClient {
        let response = self
            .send(sse_request(addr, path, last_event_id, self.is_h2()))
            .await;
        assert_eq!(response.status(), 200, "SSE status");
        SseClient::new(response)
    }

    fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }
}

pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

/// An SSE GET (absolute URI for h2, origin-form + Host for h1).
pub fn sse_request(
    addr: SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
    h2: bool,
) -> Request<ReqBody> {
    let uri = if h2 {
        format!("http://{addr}{path}")
    } else {
        path.to_owned()
    };
    let mut builder = Request::get(uri).header("accept", "text/event-stream");
    if !h2 {
        builder = builder.header("host", addr.to_string());
    }
    if let Some(id) = last_event_id {
        builder = builder.header("last-event-id", id);
    }
    builder.body(empty()).expect("request")
}

/// Reads events off an SSE response body.
pub struct SseClient {
    pub response_headers: http::HeaderMap,
    body: Incoming,
    decoder: Decoder,
    items: VecDeque<Item>,
    scratch: Vec<Item>,
    pub raw: Vec<u8>,
    pub keep_raw: bool,
}

impl SseClient {
    pub fn new(response: Response<Incoming>) -> SseClient {
        let (parts, body) = response.into_parts();
        SseClient {
            response_headers: parts.headers,
            body,
            decoder: Decoder::new(1 << 20),
            items: VecDeque::new(),
            scratch: Vec::new(),
            raw: Vec::new(),
            keep_raw: false,
        }
    }

    /// The next event, or None when the stream ended. Panics after [`WAIT`].
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.next_event_inner())
            .await
            .expect("SSE event in time")
    }

    async fn next_event_inner(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = item {
                    return Some(event);
                }
            }
            match self.body.frame().await {
                None | Some(Err(_)) => return None,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if self.keep_raw {
                            self.raw.extend_from_slice(data);
                        }
                        self.decoder.feed(data, &mut self.scratch);
                        self.items.extend(self.scratch.drain(..));
                    }
                }
            }
        }
    }

    /// The next raw chunk (for checking the first flush and heartbeats).
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        let frame = tokio::time::timeout(WAIT, self.body.frame())
            .await
            .expect("chunk in time")?;
        frame.ok()?.into_data().ok()
    }

    /// The next `n` events; panics if the stream ends first.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let event = self
                .next_event()
                .await
                .unwrap_or_else(|| panic!("stream ended after {i} of {n} events"));
            out.push(event);
        }
        out
    }
}

/// `GET path` over a fresh HTTP/1.1 connection; the status and the whole body as text.
pub async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut sender = connect(addr, Proto::H1).await;
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(empty())
        .expect("request");
    let response = sender.send(req).await;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `check` every 10 ms until it holds, for state the proxy exposes only by being asked (metrics, readiness);
/// panics naming `what` after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
