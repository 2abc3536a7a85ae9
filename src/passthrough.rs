//! The pass-through reverse proxy: every request that matches no stream route goes to the one configured
//! `passthrough.upstream`, always as HTTP/1.1 over a pooled connection, with both bodies streamed.
//!
//! Hop-by-hop headers are dropped both ways and `X-Forwarded-*` set ([`headers`], RFC 9110 §7.6.1). It is not an
//! open proxy: plain `CONNECT` is 405 and an HTTP/1 absolute-form target (RFC 9112 §3.2.2) is 400, and the upstream
//! never depends on the request's host. Upstream failures are 502 (refused, unreachable, broken connection) or
//! 504 (connect timeout, no response headers within `response_timeout`).

mod headers;

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::PassthroughConfig;
use crate::{Body, BoxError, full_body};

/// The pass-through proxy; cheap to clone.
#[derive(Clone)]
pub struct Passthrough {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream's path without a trailing `/` (`""` for the root).
    prefix: String,
    response_timeout: Duration,
}

impl Passthrough {
    /// Builds the pooled upstream client; fails on a non-http(s) upstream or an unusable `ca_file`.
    pub fn new(cfg: &PassthroughConfig) -> Result<Passthrough, BoxError> {
        let upstream = &cfg.upstream;
        let scheme = match upstream.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => {
                return Err(format!(
                    "passthrough.upstream {upstream}: scheme must be http or https"
                )
                .into());
            }
        };
        let authority = upstream
            .authority()
            .cloned()
            .ok_or_else(|| format!("passthrough.upstream {upstream}: missing host"))?;
        let prefix = upstream.path().trim_end_matches('/').to_owned();

        let mut tls = crate::tls::client_config(cfg.ca_file.as_deref())?;
        // hyper-rustls sets ALPN itself (http/1.1 only here) and refuses a preset list.
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Passthrough {
            inner: Arc::new(Inner {
                client,
                scheme,
                authority,
                prefix,
                response_timeout: cfg.response_timeout,
            }),
        })
    }

    /// Proxies one request. `client`: peer address; `scheme`: `"http"` or `"https"` (what the client used to
    /// reach us). Never fails: problems become 4xx/5xx responses with a short `text/plain` body.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        scheme: &'static str,
    ) -> Response<Body> {
        if req.method() == Method::CONNECT {
            tracing::debug!(%client, uri = %crate::error::redact(req.uri()), "pass-through refused CONNECT");
            if req.extensions().get::<hyper::ext::Protocol>().is_some() {
                return plain(
                    StatusCode::NOT_IMPLEMENTED,
                    "not implemented: extended CONNECT is not proxied\n",
                );
            }
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: CONNECT\n",
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
        let Some(uri) = self.upstream_uri(req.uri()) else {
            tracing::debug!(%client, uri = %crate::error::redact(req.uri()), "pass-through refused request target");
            return plain(
                StatusCode::BAD_REQUEST,
                "bad request: unsupported request target\n",
            );
        };

        let (mut parts, body) = req.into_parts();
        // The client's Host; HTTP/2 requests carry it as `:authority` instead.
        let host = match parts.version {
            Version::HTTP_2 => parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| parts.headers.get(header::HOST).cloned()),
            _ => parts.headers.get(header::HOST).cloned(),
        };
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_forwarded(&mut parts.headers, client.ip(), scheme, host);
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        let upstream_req = Request::from_parts(parts, body);
        let target = upstream_req.uri().clone();

        let sent = self.inner.client.request(upstream_req);
        let resp = match tokio::time::timeout(self.inner.response_timeout, sent).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(error)) => {
                let (status, text) = classify(error.is_connect(), &error);
                tracing::warn!(error = %chain(&error), upstream = %target, %client, "pass-through upstream failed");
                return plain(status, text);
            }
            Err(_) => {
                tracing::warn!(
                    timeout = ?self.inner.response_timeout,
                    upstream = %target,
                    %client,
                    "pass-through upstream sent no response headers in time"
                );
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout: upstream did not respond in time\n",
                );
            }
        };

        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
    }

    /// The upstream URI for a request: upstream scheme and authority, the upstream's path prefix joined with the
    /// request path, and the request query. `None` for a target that is not an absolute path (`OPTIONS *`).
    fn upstream_uri(&self, uri: &Uri) -> Option<Uri> {
        let path = uri.path();
        if !path.starts_with('/') {
            return None;
        }
        let inner = &self.inner;
        let mut path_and_query = String::with_capacity(
            inner.prefix.len() + path.len() + 1 + uri.query().map_or(0, str::len),
        );
        path_and_query.push_str(&inner.prefix);
        path_and_query.push_str(path);
        if let Some(query) = uri.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
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

/// `error` and its sources, `: `-joined (the legacy client's own message is only "client error (Connect)").
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A short `text/plain` response.
fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(full_body(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
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
