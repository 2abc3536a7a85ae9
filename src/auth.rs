//! Browser-facing access rules of a stream route: the Origin allow-list (refused before any upgrade: cross-site
//! WebSocket hijacking), CORS for SSE and long-poll, and which client headers are forwarded to the application.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::StreamConfig;

/// Client headers forwarded to the application when `auth.forward_headers` is not set.
pub const DEFAULT_FORWARD_HEADERS: [&str; 2] = ["authorization", "cookie"];

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

/// Headers for a CORS preflight (`OPTIONS`) on a stream route.
pub fn add_preflight(response: &mut HeaderMap) {
    response.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    response.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("last-event-id, content-type, authorization"),
    );
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
