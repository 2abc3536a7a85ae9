//! What a WebSocket handshake offers beyond the protocol itself: permessage-deflate (RFC 7692 §7.1) in
//! `Sec-WebSocket-Extensions`, and subprotocols (RFC 6455 §4.2.2) in `Sec-WebSocket-Protocol`. Pure functions; an
//! offer that cannot be honoured is declined (the next one is tried), never refused with the handshake.

use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};

use crate::config::{WsConfig, WsFormat};

/// The largest LZ77 window (bits) of raw deflate, what the compressor uses.
pub const MAX_WINDOW_BITS: u8 = 15;

/// A negotiated permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// `server_max_window_bits`: an event is sent compressed only when its payload fits the window (a message
    /// compressed from an empty window never reaches back further than its own length).
    pub window_bits: u8,
    /// `client_no_context_takeover` was agreed: each client message inflates from an empty window.
    pub client_no_context_takeover: bool,
}

impl Deflate {
    /// Whether a compressed payload of `len` uncompressed bytes honours `server_max_window_bits`: any payload at 15
    /// bits (the compressor's own window), else one no longer than the window.
    pub fn fits(&self, len: usize) -> bool {
        self.window_bits >= MAX_WINDOW_BITS || len <= 1usize << self.window_bits
    }
}

/// The first permessage-deflate offer that can be accepted, and the `Sec-WebSocket-Extensions` answer.
pub fn deflate(headers: &HeaderMap) -> Option<(Deflate, HeaderValue)> {
    let offers = headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| split_outside_quotes(v, ','));
    for offer in offers {
        let mut parts = split_outside_quotes(offer, ';');
        if !parts
            .next()
            .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
        {
            continue;
        }
        if let Some(deflate) = accept(parts) {
            let mut answer = String::from("permessage-deflate; server_no_context_takeover");
            if deflate.client_no_context_takeover {
                answer.push_str("; client_no_context_takeover");
            }
            if deflate.window_bits < MAX_WINDOW_BITS {
                answer.push_str(&format!("; server_max_window_bits={}", deflate.window_bits));
            }
            let answer = HeaderValue::from_str(&answer).ok()?;
            return Some((deflate, answer));
        }
    }
    None
}

/// The parameters of one offer (RFC 7692 §7.1), or `None` to decline it: an unknown or repeated parameter, a
/// value where none belongs, a window size outside 8..=15.
fn accept<'a>(params: impl Iterator<Item = &'a str>) -> Option<Deflate> {
    let mut deflate = Deflate {
        window_bits: MAX_WINDOW_BITS,
        client_no_context_takeover: false,
    };
    let mut seen = [false; 4];
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let i = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|n| name.eq_ignore_ascii_case(n))?;
        if std::mem::replace(&mut seen[i], true) {
            return None;
        }
        match (i, value) {
            (0, None) => {}
            (1, None) => deflate.client_no_context_takeover = true,
            (2, Some(v)) => deflate.window_bits = window_bits(v)?,
            // The client's window: any size up to 15 inflates with a 15-bit window, so it is not limited.
            (3, None) => {}
            (3, Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    Some(deflate)
}

/// `8`..=`15`, digits only, no leading zero (RFC 7692 §7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse()
        .ok()
        .filter(|bits| (8..=MAX_WINDOW_BITS).contains(bits))
}

/// A token, or a quoted string holding one (RFC 7692 §7.1: the value must be a token either way).
fn unquote(value: &str) -> Option<&str> {
    let value = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    (!value.is_empty() && !value.contains(['"', '\\'])).then_some(value)
}

/// Splits on `sep` outside double-quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

/// Largest `Sec-WebSocket-Protocol` offer passed to the application (`subprotocols_upstream: pass`), all of the
/// header's lines together.
pub const MAX_PASSED_OFFER: usize = 1024;

/// The client's subprotocol offer for the application (`subprotocols_upstream: pass`) as one `a, b` value; `Ok(None)`
/// without one; `Err(())` when a name is not an RFC 6455 token (§4.1) or the offer is over [`MAX_PASSED_OFFER`].
pub fn passed_offer(headers: &HeaderMap) -> Result<Option<HeaderValue>, ()> {
    let lines = headers.get_all(SEC_WEBSOCKET_PROTOCOL);
    if lines.iter().map(|v| v.len()).sum::<usize>() > MAX_PASSED_OFFER {
        return Err(());
    }
    let mut names = Vec::new();
    for line in lines {
        for name in line.as_bytes().split(|b| *b == b',') {
            let name = name.trim_ascii();
            if !is_token(name) {
                return Err(());
            }
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_bytes(&names.join(&b", "[..]))
        .map(Some)
        .map_err(drop)
}

/// An RFC 2616 token: visible ASCII without separators.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(b))
}

/// The first subprotocol the client offers that the route knows, with the payload format it selects.
pub fn subprotocol(headers: &HeaderMap, ws: &WsConfig) -> Option<(HeaderValue, WsFormat)> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|name| {
            let format = ws.subprotocol(name)?;
            Some((HeaderValue::from_str(name).ok()?, format))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&'static str]) -> Option<(Deflate, String)> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(v));
        }
        deflate(&headers).map(|(d, v)| (d, v.to_str().unwrap_or_default().to_owned()))
    }

    fn plain(client_no_context_takeover: bool) -> Deflate {
        Deflate {
            window_bits: 15,
            client_no_context_takeover,
        }
    }

    #[test]
    fn browsers_and_libraries() {
        // Chromium and Firefox.
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits"]),
            Some((
                plain(false),
                "permessage-deflate; server_no_context_takeover".into()
            ))
        );
        // Python websockets.
        assert_eq!(
            offer(&["permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"]),
            Some((
                Deflate {
                    window_bits: 12,
                    client_no_context_takeover: false
                },
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12".into()
            ))
        );
        // Node ws.
        assert_eq!(
            offer(&["permessage-deflate; client_no_context_takeover; client_max_window_bits"]),
            Some((
                plain(true),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover".into()
            ))
        );
    }

    #[test]
    fn declined_offers_fall_through() {
        // RFC 7692 §5.2's example: the first offer is declined here (bad value), the second accepted.
        assert_eq!(
            offer(&[
                "permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=\"10\""
            ])
            .map(|(d, _)| d.window_bits),
            Some(10)
        );
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
        assert_eq!(
            offer(&["foo; a=\"b,c\"", "PerMessage-Deflate"]).map(|(d, _)| d),
            Some(plain(false))
        );
    }

    #[test]
    fn window_fits() {
        let d = Deflate {
            window_bits: 8,
            client_no_context_takeover: true,
        };
        assert!(d.fits(256) && !d.fits(257));
        // Found by Autobahn 12.1.10: a 128 KiB event went uncompressed under the default 15-bit window.
        assert!(plain(false).fits(128 << 10));
    }

    #[test]
    fn subprotocol_selection() {
        let mut ws = WsConfig::default();
        ws.subprotocols.insert("app.v2".into(), WsFormat::Data);
        let pick = |offered: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(offered));
            subprotocol(&headers, &ws).map(|(v, f)| (v.to_str().unwrap_or_default().to_owned(), f))
        };
        assert_eq!(
            pick("chat, app.v2"),
            Some(("app.v2".into(), WsFormat::Data))
        );
        assert_eq!(
            pick("pushbridge.envelope.v1, app.v2"),
            Some(("pushbridge.envelope.v1".into(), WsFormat::Envelope))
        );
        assert_eq!(pick("chat, superchat"), None);
    }

    #[test]
    fn passed_offers() {
        let offer = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(line).unwrap());
            }
            passed_offer(&headers).map(|v| v.map(|v| v.to_str().unwrap_or_default().to_owned()))
        };
        assert_eq!(offer(&[]), Ok(None));
        assert_eq!(
            offer(&["chat ,  v2.app", "mqtt"]),
            Ok(Some("chat, v2.app, mqtt".into()))
        );
        for bad in ["chat,", "a b", "x/y", "\"a\"", ""] {
            assert_eq!(offer(&[bad]), Err(()), "{bad}");
        }
        let long = vec!["a".repeat(100); 11];
        assert_eq!(
            offer(&long.iter().map(String::as_str).collect::<Vec<_>>()),
            Err(())
        );
    }
}
