//! The client side of a WebSocket opening handshake (RFC 6455 §4.1) for `ws.subprotocols_upstream: pass`, where
//! the application may select none of the offered subprotocols: tungstenite's client fails such a 101, which the
//! RFC allows the server to send. The request is tungstenite's (`into_client_request`: `Host`, the key, the
//! version); the answer's head is read within [`MAX_HEAD`] bytes and checked as §4.1 says (101, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Accept`, no extension since none was offered). Whether the selected name was offered
//! is the caller's check.

use http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use http::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::error::UpstreamError;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most response header fields parsed.
const MAX_HEADERS: usize = 64;

/// Sends `request` on `io` and completes the handshake: the WebSocket, and the subprotocol the answer selected.
pub async fn open<IO>(
    mut io: IO,
    request: &Request<()>,
    config: WebSocketConfig,
) -> Result<(WebSocketStream<IO>, Option<HeaderValue>), UpstreamError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let connect_error = |e: std::io::Error| UpstreamError::Connect(e.to_string());
    io.write_all(&head(request)).await.map_err(connect_error)?;
    io.flush().await.map_err(connect_error)?;
    let key = request
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .ok_or_else(|| UpstreamError::Request("no Sec-WebSocket-Key".into()))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = io.read(&mut chunk).await.map_err(connect_error)?;
        if n == 0 {
            return Err(failed("the application closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((used, protocol)) = answer(&buf, &derive_accept_key(key))? {
            let rest = buf.split_off(used);
            let ws =
                WebSocketStream::from_partially_read(io, rest, Role::Client, Some(config)).await;
            return Ok((ws, protocol));
        }
        if buf.len() > MAX_HEAD {
            return Err(failed("response head too large"));
        }
    }
}

fn failed(why: &str) -> UpstreamError {
    UpstreamError::Connect(format!("WebSocket handshake: {why}"))
}

/// The request line and header fields.
fn head(request: &Request<()>) -> Vec<u8> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut out = format!("GET {target} HTTP/1.1\r\n").into_bytes();
    for (name, value) in request.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses the response head in `buf`: `None` while incomplete, else the bytes it took and the selected subprotocol.
fn answer(buf: &[u8], accept: &str) -> Result<Option<(usize, Option<HeaderValue>)>, UpstreamError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(failed(&format!("malformed response: {e}"))),
    };
    let status = response.code.unwrap_or_default();
    if status != 101 {
        return Err(StatusCode::from_u16(status)
            .map(UpstreamError::Status)
            .unwrap_or_else(|_| failed("invalid status")));
    }
    let values = |name: &'static str| {
        response
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &'static str, token: &str| {
        values(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(failed(
            "101 without Upgrade: websocket and Connection: upgrade",
        ));
    }
    if !values("sec-websocket-accept").any(|v| v.trim_ascii() == accept.as_bytes()) {
        return Err(failed("wrong Sec-WebSocket-Accept"));
    }
    if values("sec-websocket-extensions").next().is_some() {
        return Err(failed("an extension that was not offered"));
    }
    let mut protocols = values(SEC_WEBSOCKET_PROTOCOL.as_str());
    let protocol = match (protocols.next(), protocols.next()) {
        (None, _) => None,
        (Some(one), None) => Some(
            HeaderValue::from_bytes(one.trim_ascii())
                .map_err(|_| failed("invalid Sec-WebSocket-Protocol"))?,
        ),
        (Some(_), Some(_)) => return Err(failed("more than one Sec-WebSocket-Protocol")),
    };
    Ok(Some((used, protocol)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn parse(text: &str) -> Result<Option<(usize, Option<HeaderValue>)>, String> {
        answer(text.as_bytes(), ACCEPT).map_err(|e| e.to_string())
    }

    #[test]
    fn answers() {
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        assert_eq!(parse(ok), Ok(None), "incomplete");
        let none = format!("{ok}\r\nframe");
        assert_eq!(parse(&none), Ok(Some((none.len() - 5, None))));
        let chat = format!("{ok}Sec-WebSocket-Protocol: chat\r\n\r\n");
        assert_eq!(
            parse(&chat),
            Ok(Some((chat.len(), Some(HeaderValue::from_static("chat")))))
        );
        for (bad, why) in [
            (
                format!("{ok}Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n\r\n"),
                "more than one",
            ),
            (
                format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
                "extension",
            ),
            (ok.replace("s3pP", "x3pP") + "\r\n", "Accept"),
            (ok.replace("Upgrade: websocket\r\n", "") + "\r\n", "Upgrade"),
            ("HTTP/1.1 403 Forbidden\r\n\r\n".into(), "403"),
        ] {
            let got = parse(&bad).unwrap_err();
            assert!(got.contains(why), "{got}");
        }
    }

    #[test]
    fn request_head_is_tungstenites_request() {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = "ws://127.0.0.1:9/feed?x=1".into_client_request().unwrap();
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("a, b"));
        let text = String::from_utf8(head(&request)).unwrap();
        assert!(text.starts_with("GET /feed?x=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("\r\nhost: 127.0.0.1:9\r\n"), "{text}");
        assert!(
            text.contains("\r\nsec-websocket-protocol: a, b\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }
}
