//! Browser-facing access rules of a stream route: the Origin rule — same-origin unless `origins` lists others or
//! `"*"`, refused before any upgrade or auth check (cross-site WebSocket hijacking) — CORS for SSE and long-poll (on
//! refusals too, so a page can read why), and which client headers are forwarded to the application ([`fields`]:
//! the fields pushbridge owns).

mod fields;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::StreamConfig;

pub use crate::config::DEFAULT_FORWARD_HEADERS;
pub use fields::{PARAMS_HEADER, STREAM_HEADER, is_pushbridge_owned, join_cookies};

/// An `origins` entry that admits every origin.
pub const ANY_ORIGIN: &str = "*";

/// Whether the request's Origin is on this route's `origins` list (or the list holds `"*"`). A request without an
/// Origin header (not a browser page) is allowed; with an empty list no cross-origin page is (see [`same_origin`]).
pub fn origin_allowed(route: &StreamConfig, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => route
            .origins
            .iter()
            .any(|o| o == ANY_ORIGIN || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
    }
}

/// Whether the page that sent this request came from pushbridge's own site: its Origin names the request's host
/// (`Host`, or HTTP/2 `:authority`) and port. `scheme` is the client connection's: when pushbridge terminates TLS
/// the Origin must be `https`; on a plaintext listener (perhaps behind a TLS proxy) `http` and `https` both match,
/// with the port compared against the Origin scheme's default.
pub fn same_origin<B>(req: &http::Request<B>, scheme: &str) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let Some((origin_scheme, origin_host)) = origin.split_once("://") else {
        return false;
    };
    let origin_scheme = origin_scheme.to_ascii_lowercase();
    let default_port = match origin_scheme.as_str() {
        "https" => 443,
        "http" if scheme != "https" => 80,
        _ => return false,
    };
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let (Ok(origin), Some(Ok(host))) = (
        origin_host.parse::<http::uri::Authority>(),
        host.map(str::parse::<http::uri::Authority>),
    ) else {
        return false;
    };
    origin.host().eq_ignore_ascii_case(host.host())
        && origin.port_u16().unwrap_or(default_port) == host.port_u16().unwrap_or(default_port)
        && !origin.as_str().contains('@')
}

/// Whether the client headers this route forwards include cookies, and something receives them (the auth check,
/// per-client upstreams or client messages).
pub fn forwards_cookies(route: &StreamConfig) -> bool {
    let names: Vec<&str> = match &route.auth {
        Some(auth) => auth.forward_headers.iter().map(String::as_str).collect(),
        None => DEFAULT_FORWARD_HEADERS.to_vec(),
    };
    names.contains(&"cookie")
        && (route.auth.as_ref().is_some_and(|a| a.check.is_some())
            || route.mode == crate::config::Mode::PerClient
            || route.client_messages.is_some())
}

/// The risky cross-origin settings of a route, for a start-up warning each.
pub fn cross_origin_risks(route: &StreamConfig) -> Vec<&'static str> {
    let mut risks = Vec::new();
    if forwards_cookies(route) {
        if route.origins.iter().any(|o| o == ANY_ORIGIN) {
            risks.push(
                "origins: [\"*\"] with cookies forwarded: any site's page can use a visitor's session on this route",
            );
        }
        if route.long_poll.jsonp {
            risks.push(
                "long_poll.jsonp with cookies forwarded: any site's <script> can read this route with a visitor's session",
            );
        }
    }
    risks
}

/// Adds CORS response headers for an allowed Origin (echoed, with `Vary: Origin`).
pub fn add_cors(route: &StreamConfig, request: &HeaderMap, response: &mut HeaderMap) {
    let Some(origin) = request.get(header::ORIGIN) else {
        return;
    };
    if !origin_allowed(route, request) {
        return;
    }
    response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    response.append(header::VARY, HeaderValue::from_static("origin"));
    if !route.origins.iter().any(|o| o == ANY_ORIGIN) {
        // Only an explicit allow-list may receive credentials (cookies) cross-site.
        response.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-pushbridge-transport"),
    );
}

/// Headers for a CORS preflight (`OPTIONS`) on a stream route: the request headers a page may send are the
/// route's `cors.allow_headers`.
pub fn add_preflight(route: &StreamConfig, response: &mut HeaderMap) {
    response.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Ok(allowed) = HeaderValue::from_str(&route.cors.allow_headers.join(", ")) {
        response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
    }
    response.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

/// The client headers of `request` that this route forwards to the application (HTTP/2 cookie crumbs joined into
/// one `Cookie`: every receiver is spoken to over HTTP/1.1). A field pushbridge sets itself (`X-Pushbridge-*`,
/// `X-Original-URI`, `X-Original-Method`) is never forwarded, even when listed.
pub fn forwarded_headers(route: &StreamConfig, request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut copy = |name: &str| {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes())
            && !is_pushbridge_owned(&name)
        {
            for value in request.get_all(&name) {
                out.append(name.clone(), value.clone());
            }
        }
    };
    match &route.auth {
        Some(auth) => auth.forward_headers.iter().for_each(|n| copy(n)),
        None => DEFAULT_FORWARD_HEADERS.iter().for_each(|n| copy(n)),
    }
    join_cookies(&mut out);
    out
}

/// How long the authorization service may take.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The optional authorization sub-request (`auth.check`): before a client is served (any transport, and client
/// messages), pushbridge sends `GET <check>` with the client's forwarded headers, the stream identity and the
/// original request target. A 2xx admits the client; 401 and 403 are passed to the client; anything else, or no
/// answer, is 502.
pub struct AuthCheck {
    url: http::Uri,
    client: crate::upstream::HttpClient<http_body_util::Empty<bytes::Bytes>>,
}

/// Why a client was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The authorization service said 401 (with its `WWW-Authenticate`, if any) or 403.
    Refused {
        status: http::StatusCode,
        www_authenticate: Option<HeaderValue>,
    },
    /// The authorization service failed or did not answer.
    Unavailable(String),
}

impl AuthCheck {
    /// A check of `url` whose idle connections follow `auth.pool_idle_timeout` and `auth.pool_max_idle`.
    pub fn new(
        url: http::Uri,
        config: Option<&crate::config::AuthConfig>,
    ) -> Result<AuthCheck, crate::tls::TlsError> {
        let defaults = crate::config::AuthConfig::default();
        let config = config.unwrap_or(&defaults);
        let pool = crate::upstream::PoolLimits {
            idle_timeout: config.pool_idle_timeout,
            max_idle_per_host: config.pool_max_idle,
        };
        Ok(AuthCheck {
            url,
            client: crate::upstream::http_client_with(None, CHECK_TIMEOUT, pool)?,
        })
    }

    /// Asks the authorization service about one request.
    pub async fn check(
        &self,
        key: &crate::hub::StreamKey,
        forwarded: HeaderMap,
        method: &http::Method,
        target: &str,
    ) -> Result<(), Denied> {
        let mut request = http::Request::get(self.url.clone())
            .body(http_body_util::Empty::new())
            .map_err(|e| Denied::Unavailable(e.to_string()))?;
        let headers = request.headers_mut();
        headers.extend(forwarded);
        if let Ok(route) = HeaderValue::from_str(&key.route) {
            headers.insert(STREAM_HEADER, route);
        }
        let params = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&key.params)
            .finish();
        if let Ok(params) = HeaderValue::from_str(&params) {
            headers.insert(PARAMS_HEADER, params);
        }
        if let Ok(method) = HeaderValue::from_str(method.as_str()) {
            headers.insert("x-original-method", method);
        }
        if let Ok(target) = HeaderValue::from_str(target) {
            headers.insert("x-original-uri", target);
        }
        let response = tokio::time::timeout(CHECK_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| Denied::Unavailable(format!("no answer within {CHECK_TIMEOUT:?}")))?
            .map_err(|e| Denied::Unavailable(crate::error::chain(&e)))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(Denied::Refused {
                status,
                www_authenticate: response.headers().get(header::WWW_AUTHENTICATE).cloned(),
            }),
            _ => Err(Denied::Unavailable(format!(
                "authorization service answered {status}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
