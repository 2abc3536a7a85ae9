//! The pass-through reverse proxy: every request that matches no stream route goes to the application — the
//! `passthrough.upstream`, or the `passthrough.routes` entry with the longest matching path prefix — over
//! HTTP/1.1, h2c or ALPN-chosen HTTP/2 (`protocol`), with both bodies streamed and trailers passed through (so
//! gRPC works). A WebSocket handshake (HTTP/1.1 `Upgrade`, or RFC 8441 extended CONNECT) is relayed to the
//! application as an HTTP/1.1 Upgrade and the session proxied frame by frame ([`websocket`]).
//!
//! Hop-by-hop headers are dropped both ways (RFC 9110 §7.6.1) except `TE: trailers`, a client's own
//! `X-Pushbridge-*`, `X-Original-URI` and `X-Original-Method` dropped, and forwarding headers set ([`headers`]). A
//! request for one of the application's internal URLs (a stream upstream, `client_messages.forward` or
//! `auth.check` on the upstream's origin) is 404 unless `expose_internal` ([`internal`]). It is not an open
//! proxy: plain `CONNECT` and `TRACE` are 405, an HTTP/1 absolute-form target (RFC 9112 §3.2.2) is 400, so is an
//! HTTP/1.1 request without `Host` or any with two (§3.2), and the upstream never depends on the request's host.
//! Upstream failures are 502
//! (refused, unreachable, broken connection) or 504 (connect timeout, no response headers within
//! `response_timeout`). A request body still arriving `body_timeout` after the response ended is cut ([`body`]).

mod body;
mod headers;
mod internal;
mod upstream;
mod websocket;

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::config::{InternalUrl, PassthroughConfig, PassthroughWebSocket};
use crate::metrics::Metrics;
use crate::route::{ConnInfo, plain};
use crate::{Body, BoxError};

use body::ResponseBody;
use upstream::{Failure, HttpClient, Table};

pub use websocket::CLOSE_REASONS;

/// The pass-through proxy; cheap to clone.
#[derive(Clone)]
pub struct Passthrough {
    inner: Arc<Inner>,
}

struct Inner {
    table: Table,
    /// The HTTP/1.1 pool: HTTP/1.1 upstreams, every WebSocket upgrade, `auto` upstreams that chose HTTP/1.1.
    http1: HttpClient,
    forwarding: headers::Forwarding,
    response_timeout: Duration,
    body_timeout: Duration,
    websocket: PassthroughWebSocket,
    /// One permit per open WebSocket session (`websocket.max_sessions`).
    ws_sessions: Arc<tokio::sync::Semaphore>,
    metrics: Arc<Metrics>,
    /// Cancelled when the server drains: WebSocket sessions close with 1001.
    drain: CancellationToken,
}

impl Passthrough {
    /// Builds the route table (with each HTTP/2 upstream's connection slot and the `internal` URLs it refuses)
    /// and the HTTP/1.1 pool; fails on a non-http(s) upstream or an unusable `ca_file`.
    pub fn new(
        cfg: &PassthroughConfig,
        internal: &[InternalUrl],
        metrics: Arc<Metrics>,
        drain: CancellationToken,
    ) -> Result<Passthrough, BoxError> {
        let table = Table::new(cfg, internal)?;
        let http1 = upstream::http1_client(cfg)?;
        Ok(Passthrough {
            inner: Arc::new(Inner {
                table,
                http1,
                forwarding: headers::Forwarding {
                    mode: cfg.forwarded,
                    trusted: cfg.trusted_proxies.clone(),
                },
                response_timeout: cfg.response_timeout,
                body_timeout: cfg.body_timeout,
                websocket: cfg.websocket.clone(),
                ws_sessions: Arc::new(tokio::sync::Semaphore::new(cfg.websocket.max_sessions)),
                metrics,
                drain,
            }),
        })
    }

    /// Proxies one request arriving on `conn`. Never fails: problems become 4xx/5xx responses with a short
    /// `text/plain` body.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let client = conn.peer;
        if let Some(refusal) = self.refuse_internal(&req, conn) {
            return refusal;
        }
        if req.method() == Method::CONNECT || req.method() == Method::TRACE {
            let protocol = req.extensions().get::<hyper::ext::Protocol>();
            if protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")) {
                return websocket::serve(self, req, conn).await;
            }
            tracing::debug!(%client, method = %req.method(), uri = %crate::error::redact(req.uri()), "pass-through refused method");
            if protocol.is_some() {
                return plain(
                    StatusCode::NOT_IMPLEMENTED,
                    "not implemented: extended CONNECT is only proxied for websocket\n",
                );
            }
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                if req.method() == Method::TRACE {
                    "method not allowed: TRACE\n"
                } else {
                    "method not allowed: CONNECT\n"
                },
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return resp;
        }
        // HTTP/1 targets are origin-form; absolute- or authority-form would make us an open proxy.
        if req.version() != Version::HTTP_2 && req.uri().authority().is_some() {
            tracing::debug!(%client, uri = %crate::error::redact(req.uri()), "pass-through refused absolute-form target");
            return plain(
                StatusCode::BAD_REQUEST,
                "bad request: absolute-form request target\n",
            );
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with more than one, is 400 (HTTP/1.0
        // may omit it; HTTP/2 carries `:authority`).
        let hosts = req.headers().get_all(header::HOST).iter().count();
        if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
            tracing::debug!(%client, hosts, "pass-through refused a request without exactly one Host");
            return plain(
                StatusCode::BAD_REQUEST,
                "bad request: exactly one Host field is required\n",
            );
        }
        if websocket::is_upgrade(&req) {
            return websocket::serve(self, req, conn).await;
        }
        let upstream = self.inner.table.select(req.uri().path());
        let Some(uri) = upstream.uri(req.uri()) else {
            tracing::debug!(%client, uri = %crate::error::redact(req.uri()), "pass-through refused request target");
            return plain(
                StatusCode::BAD_REQUEST,
                "bad request: unsupported request target\n",
            );
        };

        let (mut parts, body) = req.into_parts();
        self.upstream_head(&mut parts, conn);
        parts.uri = uri;
        let (body, done) = body::timed(body, self.inner.body_timeout, self.inner.metrics.clone());
        let mut upstream_req = Request::from_parts(parts, body);
        crate::upstream::client::move_userinfo(&mut upstream_req);
        let target = crate::error::redact(upstream_req.uri());
        let sending = upstream.send(upstream_req, &self.inner.http1);
        match self.send(sending, &target, conn).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                parts.version = Version::HTTP_11;
                // The application's reason phrase is kept for an HTTP/1.x client (HTTP/2 has none).
                let reason = parts.extensions.remove::<hyper::ext::ReasonPhrase>();
                parts.extensions = http::Extensions::new();
                if let Some(reason) = reason {
                    parts.extensions.insert(reason);
                }
                let body = ResponseBody::new(body, done);
                Response::from_parts(parts, body.boxed_unsync())
            }
            Err(resp) => resp,
        }
    }

    /// The 404 for a request naming one of the application's internal URLs ([`internal`]); plain `CONNECT` and
    /// `TRACE` are left to their 405.
    fn refuse_internal(&self, req: &Request<Incoming>, conn: &ConnInfo) -> Option<Response<Body>> {
        let tunnel = req.method() == Method::CONNECT
            && req.extensions().get::<hyper::ext::Protocol>().is_none();
        let path = req.uri().path();
        if tunnel || req.method() == Method::TRACE || !self.inner.table.select(path).refuses(path) {
            return None;
        }
        self.inner.metrics.passthrough.internal_refused.inc();
        crate::log_limited!(
            self.inner.metrics.logs,
            crate::logs::LogKind::Passthrough,
            conn.peer.ip(),
            warn!(client = %conn.peer, uri = %crate::error::redact(req.uri()), "pass-through refused an internal URL of the application")
        );
        Some(plain(StatusCode::NOT_FOUND, "not found\n"))
    }

    /// Rewrites a client request head for the application: hop-by-hop fields out (`TE: trailers` kept), the
    /// fields pushbridge sets itself out (`X-Pushbridge-*`, `X-Original-URI`, `X-Original-Method`), cookie
    /// crumbs joined, forwarding fields set, `Host` the client's (an HTTP/2 upstream gets it as `:authority`),
    /// HTTP/1.1 framing (the client's version is hyper's business on each side).
    fn upstream_head(&self, parts: &mut http::request::Parts, conn: &ConnInfo) {
        // The client's Host; HTTP/2 requests carry it as `:authority` instead.
        let host = match parts.version {
            Version::HTTP_2 => parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| parts.headers.get(header::HOST).cloned()),
            _ => parts.headers.get(header::HOST).cloned(),
        };
        let trailers = headers::wants_trailers(&parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::strip_pushbridge_owned(&mut parts.headers);
        headers::join_cookies(&mut parts.headers);
        if trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        self.inner
            .forwarding
            .apply(&mut parts.headers, conn.peer.ip(), conn.scheme, host);
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
    }

    /// Awaits the application's response head within `response_timeout`; a failure is already the response to
    /// give. `target` names the request in logs.
    async fn send(
        &self,
        sending: impl Future<Output = Result<Response<Incoming>, Failure>>,
        target: &str,
        conn: &ConnInfo,
    ) -> Result<Response<Incoming>, Response<Body>> {
        let peer = conn.peer;
        let timeout = self.inner.response_timeout;
        match tokio::time::timeout(timeout, sending).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(Failure::BadHost)) => {
                tracing::debug!(client = %peer, upstream = %target, "pass-through refused a Host that is no authority");
                Err(plain(
                    StatusCode::BAD_REQUEST,
                    "bad request: invalid Host\n",
                ))
            }
            Ok(Err(Failure::Upstream { connect, error })) => {
                let (status, text) = classify(connect, error.as_ref());
                crate::log_limited!(
                    self.inner.metrics.logs,
                    crate::logs::LogKind::Passthrough,
                    peer.ip(),
                    warn!(error = %crate::error::chain(error.as_ref()), upstream = %target, client = %peer, "pass-through upstream failed")
                );
                Err(plain(status, text))
            }
            Err(_) => {
                crate::log_limited!(
                    self.inner.metrics.logs,
                    crate::logs::LogKind::Passthrough,
                    peer.ip(),
                    warn!(?timeout, upstream = %target, client = %peer, "pass-through upstream sent no response headers in time")
                );
                Err(plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout: upstream did not respond in time\n",
                ))
            }
        }
    }
}

/// Methods named in the `Allow` of a 405 (RFC 9110 §15.5.6 requires the field); all but CONNECT and TRACE.
const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Status and body for an upstream request failure. `connect`: the failure happened while connecting.
fn classify(connect: bool, error: &(dyn StdError + 'static)) -> (StatusCode, &'static str) {
    let mut io_kind = None;
    let mut tls = false;
    let mut source = Some(error);
    while let Some(e) = source {
        tls |= e.is::<rustls::Error>();
        source = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                if io_kind.is_none_or(|kind| kind == io::ErrorKind::Other) {
                    io_kind = Some(io.kind());
                }
                // io::Error::source skips the error it wraps (hyper-rustls wraps tokio-rustls's io::Error).
                io.get_ref().map(|inner| inner as &(dyn StdError + 'static))
            }
            None => e.source(),
        };
    }
    match (connect, io_kind) {
        (true, Some(io::ErrorKind::TimedOut)) => (
            StatusCode::GATEWAY_TIMEOUT,
            "gateway timeout: upstream connect timed out\n",
        ),
        (true, Some(io::ErrorKind::ConnectionRefused)) => (
            StatusCode::BAD_GATEWAY,
            "bad gateway: upstream refused connection\n",
        ),
        (true, _) if tls => (
            StatusCode::BAD_GATEWAY,
            "bad gateway: upstream TLS handshake failed\n",
        ),
        (true, _) => (
            StatusCode::BAD_GATEWAY,
            "bad gateway: upstream unreachable\n",
        ),
        (false, _) => (
            StatusCode::BAD_GATEWAY,
            "bad gateway: upstream connection error\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_connect_failures() {
        let cases = [
            (
                true,
                io::ErrorKind::ConnectionRefused,
                StatusCode::BAD_GATEWAY,
                "refused",
            ),
            (
                true,
                io::ErrorKind::TimedOut,
                StatusCode::GATEWAY_TIMEOUT,
                "connect timed out",
            ),
            (
                true,
                io::ErrorKind::HostUnreachable,
                StatusCode::BAD_GATEWAY,
                "unreachable",
            ),
            (
                false,
                io::ErrorKind::ConnectionReset,
                StatusCode::BAD_GATEWAY,
                "connection error",
            ),
        ];
        for (connect, kind, status, word) in cases {
            // Wrapped once, as hyper-util wraps the connector's io::Error.
            let error: BoxError = Box::new(Wrapper(io::Error::new(kind, "connect")));
            let (got, text) = classify(connect, error.as_ref());
            assert_eq!(got, status, "{kind:?}");
            assert!(text.contains(word), "{kind:?}: {text}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn classifies_tls_failure() {
        // As hyper-rustls reports it: io::Error::other(tokio-rustls's io::Error(InvalidData, rustls::Error)).
        let error = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let (status, text) = classify(true, &Wrapper(io::Error::other(error)));
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(text.contains("TLS"));
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
}
