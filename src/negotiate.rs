//! Transport negotiation (DESIGN §4), as pure functions: request facts + the route's `transports` list → the
//! transport to serve, a server-side downgrade, or a refusal.
//!
//! Order: an explicit `?transport=` names one; a WebSocket handshake (HTTP/1.1 `Upgrade: websocket`, or HTTP/2
//! extended CONNECT with `:protocol websocket`, RFC 8441) wants WebSocket; `Accept: text/event-stream` wants SSE;
//! anything else gets long-poll. A wanted transport the route does not allow falls to the next one the request can
//! still take.

use http::header::{ACCEPT, CONNECTION, UPGRADE};
use http::{Method, Version};

use crate::config::TransportKind;

/// What a request can take, read off its head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The `transport` query parameter, verbatim.
    pub explicit: Option<String>,
    /// An HTTP/1.1 Upgrade or HTTP/2 extended CONNECT WebSocket handshake.
    pub websocket: bool,
    /// `Accept` lists `text/event-stream` with a weight above zero.
    pub accepts_sse: bool,
    /// An HTTP/2 extended CONNECT: only a WebSocket may answer it, since any 2xx opens a tunnel (RFC 8441 §4).
    pub tunnel: bool,
}

/// The outcome of negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Serve {
        transport: TransportKind,
        /// The transport the request preferred, when the route did not allow it.
        downgraded_from: Option<TransportKind>,
    },
    /// 406 with the allowed list as JSON (unknown or disallowed explicit transport, or nothing fits), or 400 for an
    /// explicit transport the request cannot take (`ws` without a handshake, anything else on a CONNECT).
    Refuse {
        status: http::StatusCode,
        reason: String,
    },
}

impl Facts {
    /// Reads the facts off a request head.
    pub fn of(
        method: &Method,
        version: Version,
        headers: &http::HeaderMap,
        query: Option<&str>,
        protocol: Option<&str>,
    ) -> Facts {
        let explicit = query.and_then(|q| query_param(q, "transport"));
        let tunnel = version == Version::HTTP_2 && method == Method::CONNECT;
        let websocket = if version == Version::HTTP_2 {
            tunnel && protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket"))
        } else {
            method == Method::GET
                && header_has_token(headers, &UPGRADE, "websocket")
                && header_has_token(headers, &CONNECTION, "upgrade")
        };
        let accepts_sse = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(accepts_event_stream);
        Facts {
            explicit,
            websocket,
            accepts_sse,
            tunnel,
        }
    }
}

/// Whether one `Accept` media range (RFC 9110 §12.5.1) takes `text/event-stream`: it names it, with a weight above
/// zero (`q=0` means "not acceptable"; an unreadable weight counts as 1).
fn accepts_event_stream(range: &str) -> bool {
    let mut parts = range.split(';');
    let named = parts
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"));
    let weight = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
        .and_then(|(_, value)| value.trim().parse::<f32>().ok())
        .unwrap_or(1.0);
    named && weight > 0.0
}

/// Chooses the transport for a request on a route allowing `allowed`.
pub fn decide(facts: &Facts, allowed: &[TransportKind]) -> Decision {
    if let Some(name) = &facts.explicit {
        let Some(wanted) = transport_named(name) else {
            return refuse_not_acceptable(&format!("unknown transport {name:?}"), allowed);
        };
        if !allowed.contains(&wanted) {
            return refuse_not_acceptable(
                &format!("transport {name} is not allowed on this route"),
                allowed,
            );
        }
        if wanted == TransportKind::Ws && !facts.websocket {
            return Decision::Refuse {
                status: http::StatusCode::BAD_REQUEST,
                reason: "transport=ws needs a WebSocket handshake".into(),
            };
        }
        if wanted != TransportKind::Ws && facts.tunnel {
            return Decision::Refuse {
                status: http::StatusCode::BAD_REQUEST,
                reason: format!("transport={name} cannot answer an HTTP/2 CONNECT"),
            };
        }
        return Decision::Serve {
            transport: wanted,
            downgraded_from: None,
        };
    }
    let preferred = if facts.websocket {
        TransportKind::Ws
    } else if facts.accepts_sse {
        TransportKind::Sse
    } else {
        TransportKind::LongPoll
    };
    // What the request can take, best first. Long-poll is plain GET + JSON: every client can take it.
    let candidates: &[TransportKind] = match (facts.websocket, facts.accepts_sse) {
        (true, _) if facts.tunnel => &[TransportKind::Ws],
        (false, _) if facts.tunnel => &[],
        (true, true) => &[
            TransportKind::Ws,
            TransportKind::Sse,
            TransportKind::LongPoll,
        ],
        (true, false) => &[TransportKind::Ws, TransportKind::LongPoll],
        (false, true) => &[TransportKind::Sse, TransportKind::LongPoll],
        (false, false) => &[TransportKind::LongPoll],
    };
    match candidates.iter().find(|t| allowed.contains(t)) {
        Some(&transport) => Decision::Serve {
            transport,
            downgraded_from: (transport != preferred).then_some(preferred),
        },
        None => refuse_not_acceptable("no allowed transport fits this request", allowed),
    }
}

fn refuse_not_acceptable(reason: &str, allowed: &[TransportKind]) -> Decision {
    let allowed: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    let body = serde_json::json!({ "error": reason, "allowed": allowed });
    Decision::Refuse {
        status: http::StatusCode::NOT_ACCEPTABLE,
        reason: body.to_string(),
    }
}

/// Whether a comma-separated header lists `token` (case-insensitive).
pub fn header_has_token(headers: &http::HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The transport with this wire name (`ws`, `sse`, `long-poll`).
pub fn transport_named(name: &str) -> Option<TransportKind> {
    [
        TransportKind::Ws,
        TransportKind::Sse,
        TransportKind::LongPoll,
    ]
    .into_iter()
    .find(|t| t.as_str() == name)
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find_map(|(key, value)| (key == name).then(|| value.into_owned()))
}

#[cfg(test)]
mod tests;
