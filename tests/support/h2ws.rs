//! An RFC 8441 WebSocket client over HTTP/2 for tests: the `h2` crate does the extended CONNECT (`:protocol
//! websocket`), and the tunnel's DATA frames are adapted to `AsyncRead + AsyncWrite` for tungstenite.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// An h2c (prior knowledge) connection able to open WebSocket tunnels.
pub struct H2Client {
    addr: SocketAddr,
    sender: h2::client::SendRequest<Bytes>,
}

impl H2Client {
    pub async fn connect(addr: SocketAddr) -> H2Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = H2Client { addr, sender };
        // The server's SETTINGS frame precedes any response: after one round trip the setting is known.
        let (status, _) = client
            .request(Method::GET, "/_h2ws/settings", None, &[])
            .await;
        assert_ne!(status, StatusCode::SWITCHING_PROTOCOLS);
        assert!(
            client.sender.is_extended_connect_protocol_enabled(),
            "server announces SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );
        client
    }

    /// Sends a request without a body; returns the status and, for a 2xx CONNECT, the tunnel.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<H2Io>) {
        let (status, _, io) = self
            .request_with_headers(method, path, protocol, headers)
            .await;
        (status, io)
    }

    /// [`request`](Self::request), also returning the response's header fields.
    async fn request_with_headers(
        &mut self,
        method: Method,
        path: &str,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, Option<H2Io>) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("sec-websocket-version", "13");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).expect("request");
        if let Some(protocol) = protocol {
            request
                .extensions_mut()
                .insert(h2::ext::Protocol::from(protocol));
        }
        self.sender = self.sender.clone().ready().await.expect("h2 ready");
        let (response, send) = self
            .sender
            .send_request(request, false)
            .expect("send request");
        let response = tokio::time::timeout(super::client::WAIT, response)
            .await
            .expect("response in time")
            .expect("response");
        let status = response.status();
        let fields = response.headers().clone();
        let io = status.is_success().then(|| H2Io {
            send,
            recv: response.into_body(),
            pending: Bytes::new(),
        });
        (status, fields, io)
    }

    /// An extended CONNECT to `path` with extra request fields: the status, the response's fields and the raw tunnel.
    pub async fn tunnel(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, Option<H2Io>) {
        self.request_with_headers(Method::CONNECT, path, Some("websocket"), headers)
            .await
    }

    /// Opens a WebSocket on `path` (with its query); returns the CONNECT status and the socket when it is 200.
    pub async fn websocket(&mut self, path: &str) -> (StatusCode, Option<WebSocketStream<H2Io>>) {
        self.websocket_with(path, &[]).await
    }

    /// [`websocket`](Self::websocket) with extra request fields (each pair one field line).
    pub async fn websocket_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<WebSocketStream<H2Io>>) {
        let (status, io) = self
            .request(Method::CONNECT, path, Some("websocket"), headers)
            .await;
        let ws = match io {
            Some(io) => Some(WebSocketStream::from_raw_socket(io, Role::Client, None).await),
            None => None,
        };
        (status, ws)
    }
}

/// One HTTP/2 stream as a byte pipe.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
}

fn h2_error(error: h2::Error) -> io::Error {
    io::Error::other(error)
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(error)) => return Poll::Ready(Err(h2_error(error))),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(error)) => return Poll::Ready(Err(h2_error(error))),
                Some(Ok(0)) => continue,
                Some(Ok(capacity)) => {
                    let n = capacity.min(buf.len());
                    self.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_error)?;
                    return Poll::Ready(Ok(n));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.send.send_data(Bytes::new(), true).map_err(h2_error))
    }
}
