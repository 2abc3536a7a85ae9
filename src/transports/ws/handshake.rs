//! Validation of a WebSocket opening handshake: HTTP/1.1 `GET` with `Upgrade: websocket`, `Connection: upgrade`,
//! `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` of 16 base64-encoded bytes (RFC 6455 §4.2.1), or HTTP/2
//! `CONNECT` with `:protocol websocket` and `sec-websocket-version: 13` (RFC 8441 §5). Pure functions.

use http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, Version};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::negotiate::header_has_token as has_token;

/// A valid handshake, and what the answer needs.
#[derive(Debug, PartialEq)]
pub enum Accepted {
    /// Answer 101 with this `Sec-WebSocket-Accept`.
    Http1 { accept_key: HeaderValue },
    /// Answer 200.
    Http2,
}

/// Why a handshake was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotWebSocket,
    Version,
    Key,
    /// `subprotocols_upstream: pass`: an offer that cannot be passed on.
    Subprotocols,
}

impl Refusal {
    /// The short text of the 400 response.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::NotWebSocket => "a WebSocket handshake is required\n",
            Refusal::Version => "Sec-WebSocket-Version must be 13\n",
            Refusal::Key => "Sec-WebSocket-Key must be 16 base64-encoded bytes\n",
            Refusal::Subprotocols => {
                "Sec-WebSocket-Protocol must list tokens (RFC 6455 4.1), 1024 bytes at most\n"
            }
        }
    }
}

/// Checks a handshake; `protocol` is the HTTP/2 `:protocol` pseudo-header.
pub fn check(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    protocol: Option<&str>,
) -> Result<Accepted, Refusal> {
    if version == Version::HTTP_2 {
        if method != Method::CONNECT
            || !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket"))
        {
            return Err(Refusal::NotWebSocket);
        }
        check_version(headers)?;
        return Ok(Accepted::Http2);
    }
    let upgrade =
        has_token(headers, &UPGRADE, "websocket") && has_token(headers, &CONNECTION, "upgrade");
    if method != Method::GET || version < Version::HTTP_11 || !upgrade {
        return Err(Refusal::NotWebSocket);
    }
    check_version(headers)?;
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|k| valid_key(k))
        .ok_or(Refusal::Key)?;
    let accept_key = HeaderValue::from_str(&derive_accept_key(key)).map_err(|_| Refusal::Key)?;
    Ok(Accepted::Http1 { accept_key })
}

fn check_version(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get(SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes().trim_ascii() == b"13" => Ok(()),
        _ => Err(Refusal::Version),
    }
}

/// 16 bytes in base64: 22 alphabet characters and `==` (the last character carries 2 bits, so it is one of `AQgw`).
fn valid_key(key: &[u8]) -> bool {
    let key = key.trim_ascii();
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..22].iter().all(alphabet)
        && b"AQgw".contains(&key[21])
        && key.ends_with(b"==")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::header::HeaderName::from_static(n),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn rfc6455_sample_key() {
        let got = check(&Method::GET, Version::HTTP_11, &headers(&GOOD), None);
        // RFC 6455 §1.3's example.
        let want = HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(got, Ok(Accepted::Http1 { accept_key: want }));
    }

    #[test]
    fn refusals() {
        let with = |i: usize, value: &'static str| {
            let mut pairs = GOOD.to_vec();
            pairs[i].1 = value;
            headers(&pairs)
        };
        let cases = [
            (Method::GET, with(0, "h2c"), Refusal::NotWebSocket),
            (Method::GET, with(1, "close"), Refusal::NotWebSocket),
            (Method::POST, headers(&GOOD), Refusal::NotWebSocket),
            (Method::GET, with(2, "8"), Refusal::Version),
            (Method::GET, with(3, "short=="), Refusal::Key),
            (
                Method::GET,
                with(3, "dGhlIHNhbXBsZSBub25jZR=="),
                Refusal::Key,
            ),
            (
                Method::GET,
                with(3, "dGhlIHNhbXBsZSBub25j*Q=="),
                Refusal::Key,
            ),
            (Method::GET, headers(&GOOD[..3]), Refusal::Key),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                check(&method, Version::HTTP_11, &headers, None),
                Err(want),
                "{headers:?}"
            );
        }
        assert_eq!(
            check(&Method::GET, Version::HTTP_10, &headers(&GOOD), None),
            Err(Refusal::NotWebSocket)
        );
    }

    #[test]
    fn http2_extended_connect() {
        let version = headers(&[("sec-websocket-version", "13")]);
        assert_eq!(
            check(
                &Method::CONNECT,
                Version::HTTP_2,
                &version,
                Some("websocket")
            ),
            Ok(Accepted::Http2)
        );
        let refused = [
            (
                Method::CONNECT,
                version.clone(),
                None,
                Refusal::NotWebSocket,
            ),
            (
                Method::CONNECT,
                version.clone(),
                Some("webtransport"),
                Refusal::NotWebSocket,
            ),
            (
                Method::GET,
                version,
                Some("websocket"),
                Refusal::NotWebSocket,
            ),
            (
                Method::CONNECT,
                HeaderMap::new(),
                Some("websocket"),
                Refusal::Version,
            ),
        ];
        for (method, headers, protocol, want) in refused {
            assert_eq!(
                check(&method, Version::HTTP_2, &headers, protocol),
                Err(want)
            );
        }
    }
}
