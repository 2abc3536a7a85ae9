//! Browser-facing access rules of a stream route: the Origin allow-list (refused before any upgrade: cross-site
//! WebSocket hijacking), CORS for SSE and long-poll (on refusals too, so a page can read why), and which client
//! headers are forwarded to the application.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::StreamConfig;

pub use crate::config::DEFAULT_FORWARD_HEADERS;

/// Whether the request's Origin may use this route. No `origins` list allows any; a request without an Origin
/// header (not a browser page) is allowed.
pub fn origin_allowed(route: &StreamConfig, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            route.origins.is_empty()
                || route
                    .origins
                    .iter()
                    .any(|o| o.as_bytes() == origin.as_bytes())
        }
    }
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
    if !route.origins.is_empty() {
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

/// The client headers of `request` that this route forwards to the application.
pub fn forwarded_headers(route: &StreamConfig, request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut copy = |name: &str| {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            for value in request.get_all(&name) {
                out.append(name.clone(), value.clone());
            }
        }
    };
    match &route.auth {
        Some(auth) => auth.forward_headers.iter().for_each(|n| copy(n)),
        None => DEFAULT_FORWARD_HEADERS.iter().for_each(|n| copy(n)),
    }
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
    pub fn new(url: http::Uri) -> Result<AuthCheck, crate::tls::TlsError> {
        Ok(AuthCheck {
            url,
            client: crate::upstream::http_client(None, CHECK_TIMEOUT)?,
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
            headers.insert(crate::transports::messages::STREAM_HEADER, route);
        }
        let params = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&key.params)
            .finish();
        if let Ok(params) = HeaderValue::from_str(&params) {
            headers.insert(crate::transports::messages::PARAMS_HEADER, params);
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
