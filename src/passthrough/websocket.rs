//! WebSocket pass-through: a client handshake on a pass-through path — HTTP/1.1 `Upgrade: websocket` (RFC 6455
//! §4.1) or HTTP/2 extended CONNECT with `:protocol websocket` (RFC 8441 §4) — is sent to the application as an
//! HTTP/1.1 Upgrade over the HTTP/1.1 client, whatever the route's protocol. The application's answer decides:
//! a 101 opens the session (101 to an HTTP/1.1 client, 200 to an HTTP/2 one), anything else is passed on as it
//! is (a 2xx to an HTTP/2 client becomes 502, since it would open the tunnel). Then [`relay`] copies frames.
//!
//! `Sec-WebSocket-Protocol` passes through both ways; `Sec-WebSocket-Extensions` is removed both ways, so no
//! extension (permessage-deflate) is negotiated that the relay would have to carry. An HTTP/1.1 client's key goes
//! to the application and its `Sec-WebSocket-Accept` comes back; for an HTTP/2 client (which has no key)
//! pushbridge makes one and checks the answer. The session task holds the connection permit and drain tracker,
//! and one of `websocket.max_sessions` slots (over it: 503 with `Retry-After`, before the application is asked).

mod relay;

pub use relay::CLOSE_REASONS;

use http::header::{
    self, CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::body::RequestBody;
use super::{Passthrough, headers};
use crate::negotiate::header_has_token;
use crate::route::{ConnInfo, plain};
use crate::{Body, BoxError};

/// An HTTP/1.1 WebSocket opening handshake (`GET` with `Upgrade: websocket` and `Connection: upgrade`).
pub(super) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && header_has_token(req.headers(), &UPGRADE, "websocket")
        && header_has_token(req.headers(), &CONNECTION, "upgrade")
}

/// Relays the handshake to the application and, when it upgrades, spawns the session.
pub(super) async fn serve(
    pt: &Passthrough,
    mut req: Request<Incoming>,
    conn: &ConnInfo,
) -> Response<Body> {
    let inner = &pt.inner;
    let http2 = req.method() == Method::CONNECT;
    let upstream = inner.table.select(req.uri().path());
    let Some(uri) = upstream.uri(req.uri()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "bad request: unsupported request target\n",
        );
    };
    let key = if http2 {
        HeaderValue::from_str(&generate_key()).ok()
    } else {
        req.headers().get(SEC_WEBSOCKET_KEY).cloned()
    };
    let Some(key) = key else {
        return plain(
            StatusCode::BAD_REQUEST,
            "bad request: missing Sec-WebSocket-Key\n",
        );
    };
    let Ok(slot) = inner.ws_sessions.clone().try_acquire_owned() else {
        inner.metrics.passthrough.ws_refused.inc();
        tracing::debug!(
            max = inner.websocket.max_sessions,
            "Pass-through WebSocket refused: too many sessions"
        );
        let mut refusal = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable: too many WebSocket sessions\n",
        );
        refusal
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return refusal;
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    // An HTTP/1.1 handshake has no body; an HTTP/2 one's body is the tunnel, taken by the upgrade.
    let (mut parts, _body) = req.into_parts();
    pt.upstream_head(&mut parts, conn);
    parts.method = Method::GET;
    parts.uri = uri;
    let headers = &mut parts.headers;
    headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    headers.remove(header::TE);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_KEY, key.clone());
    let mut upstream_req = Request::from_parts(parts, RequestBody::empty());
    crate::upstream::client::move_userinfo(&mut upstream_req);
    let target = crate::error::redact(upstream_req.uri());
    let sending = async { Ok(inner.http1.request(upstream_req).await?) };
    let mut resp = match pt.send(sending, &target, conn).await {
        Ok(resp) => resp,
        Err(resp) => return resp,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        tracing::debug!(status = %resp.status(), "Application did not upgrade a pass-through WebSocket");
        if http2 && resp.status().is_success() {
            return plain(
                StatusCode::BAD_GATEWAY,
                "bad gateway: application did not upgrade to WebSocket\n",
            );
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        return Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    }
    let expected = derive_accept_key(key.as_bytes());
    let accepted = resp
        .headers()
        .get(SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !accepted || !header_has_token(resp.headers(), &UPGRADE, "websocket") {
        tracing::warn!(
            "Application answered a pass-through WebSocket upgrade with a bad handshake"
        );
        return plain(
            StatusCode::BAD_GATEWAY,
            "bad gateway: application sent an invalid WebSocket handshake\n",
        );
    }
    let app_upgrade = hyper::upgrade::on(&mut resp);

    let mut response = Response::new(crate::full_body(""));
    let mut app_headers = std::mem::take(resp.headers_mut());
    headers::strip_hop_by_hop(&mut app_headers);
    app_headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    if http2 {
        // RFC 8441 §5: a 2xx answer opens the tunnel; there is no accept key.
        app_headers.remove(SEC_WEBSOCKET_ACCEPT);
        *response.status_mut() = StatusCode::OK;
    } else {
        app_headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        app_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    *response.headers_mut() = app_headers;

    let session = relay::Session {
        slot,
        settings: inner.websocket.clone(),
        drain: inner.drain.clone(),
        metrics: inner.metrics.clone(),
        http_version: if http2 { "http2" } else { "http1" },
    };
    conn.guard.spawn(async move {
        match tokio::try_join!(client_upgrade, app_upgrade) {
            Ok((client, app)) => session.run(client, app).await,
            Err(error) => tracing::debug!(%error, "Pass-through WebSocket upgrade failed"),
        }
    });
    response
}
