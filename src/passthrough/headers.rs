//! Header rewriting for the pass-through proxy: hop-by-hop removal (RFC 9110 §7.6.1) in both directions and the
//! `X-Forwarded-For` / `X-Forwarded-Proto` / `X-Forwarded-Host` fields added on the way to the upstream.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Always hop-by-hop, whatever `Connection` lists (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes `Connection`, every field it names, and the fixed hop-by-hop set.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Sets the forwarding fields for a request about to go upstream: appends `client` to `X-Forwarded-For` (joining
/// any values the client sent into one field), sets `X-Forwarded-Proto` to `scheme` and, when known,
/// `X-Forwarded-Host` and `Host` to `host` (the client's Host, or the HTTP/2 `:authority`).
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    scheme: &'static str,
    host: Option<HeaderValue>,
) {
    let client = client.to_canonical().to_string();
    let mut xff = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let value = value.as_bytes().trim_ascii();
        if !value.is_empty() {
            xff.extend_from_slice(value);
            xff.extend_from_slice(b", ");
        }
    }
    xff.extend_from_slice(client.as_bytes());
    // Existing values came from valid header values and the IP is ASCII, so this only fails on odd bytes.
    let xff = HeaderValue::from_bytes(&xff).or_else(|_| HeaderValue::from_str(&client));
    if let Ok(xff) = xff {
        headers.insert(X_FORWARDED_FOR, xff);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
            headers.insert(header::HOST, host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn strips_connection_listed_and_fixed_set() {
        let mut headers = map(&[
            ("connection", "x-a, X-B"),
            ("connection", "keep-alive"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-c"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("x-keep", "yes"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-keep", "content-type"]);
    }

    #[test]
    fn ignores_bad_connection_tokens() {
        let mut headers = map(&[
            ("connection", "bad token, ,x-a"),
            ("x-a", "1"),
            ("x-b", "2"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-b"));
    }

    #[test]
    fn forwarded_appends_and_sets() {
        let mut headers = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("x-forwarded-proto", "ftp"),
        ]);
        let host = HeaderValue::from_static("app.example:8443");
        set_forwarded(
            &mut headers,
            "10.0.0.9".parse().unwrap(),
            "https",
            Some(host),
        );
        assert_eq!(
            headers["x-forwarded-for"],
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"
        );
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example:8443");
        assert_eq!(headers["host"], "app.example:8443");
    }

    #[test]
    fn forwarded_fresh_and_mapped_v6() {
        let mut headers = map(&[("x-forwarded-host", "spoofed")]);
        set_forwarded(
            &mut headers,
            "::ffff:192.0.2.7".parse().unwrap(),
            "http",
            None,
        );
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!headers.contains_key("x-forwarded-host"));
    }
}
