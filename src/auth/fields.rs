//! The request fields pushbridge owns on its requests to the application: the names it sets itself (never taken
//! from a client) and the one `Cookie` line every forwarded request carries.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Header naming the route of a forwarded message or auth check.
pub const STREAM_HEADER: &str = "x-pushbridge-stream";
/// Header carrying the stream's path parameters, form-encoded (`channel=news`).
pub const PARAMS_HEADER: &str = "x-pushbridge-params";

/// Whether pushbridge sets this field itself on its requests to the application (`X-Pushbridge-*` on client
/// messages and auth checks, `X-Original-URI` and `X-Original-Method` on auth checks): never taken from a client.
pub fn is_pushbridge_owned(name: &HeaderName) -> bool {
    // `_` as `-` too: CGI-style servers (WSGI, Rack) read `X-Pushbridge_Stream` as `HTTP_X_PUSHBRIDGE_STREAM`.
    let name = name.as_str().replace('_', "-");
    name.starts_with("x-pushbridge-") || name == "x-original-uri" || name == "x-original-method"
}

/// Joins every `Cookie` field line into one, separated by `"; "`. An HTTP/2 client may send each cookie as its
/// own field (RFC 9113 §8.2.3), which an HTTP/1.1 hop must not see as several lines (RFC 6265 §5.4); done on every
/// request pushbridge forwards, whatever the next hop's version.
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let value = value.as_bytes().trim_ascii();
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value);
    }
    // Made of valid field values joined by "; ", so always valid itself.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}
