//! Header rewriting for the pass-through proxy: hop-by-hop removal (RFC 9110 §7.6.1) in both directions, and the
//! forwarding fields added on the way to the upstream — `Forwarded` (RFC 7239) and/or `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP` — replacing whatever an untrusted client sent.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(crate) use crate::auth::{is_pushbridge_owned, join_cookies};
use crate::config::{ForwardedHeaders, IpNet};

/// Always hop-by-hop, whatever `Connection` lists (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`, and the proxy credentials fields meant for a proxy, RFC 9110 §11.7). `Trailer` is not
/// hop-by-hop in RFC 9110: it is kept, as an HTTP/1.1 client only gets the trailer fields it announces.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
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

/// Removes every field [`is_pushbridge_owned`].
pub(crate) fn strip_pushbridge_owned(headers: &mut HeaderMap) {
    let owned: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_pushbridge_owned(name))
        .cloned()
        .collect();
    for name in owned {
        headers.remove(name);
    }
}

/// Whether the client asked for trailers (`TE: trailers`, RFC 9110 §10.1.4). `TE` is hop-by-hop, but this one
/// token is what gRPC needs the application to see, so it is sent again after [`strip_hop_by_hop`].
pub(crate) fn wants_trailers(headers: &HeaderMap) -> bool {
    crate::negotiate::header_has_token(headers, &header::TE, "trailers")
}

/// Which forwarding headers go to the application, and which peers may have set them before us.
pub(crate) struct Forwarding {
    pub mode: ForwardedHeaders,
    pub trusted: Vec<IpNet>,
}

impl Forwarding {
    /// Sets the forwarding fields for a request about to go upstream. From a trusted proxy, its `Forwarded` /
    /// `X-Forwarded-For` are extended with `client` and its `X-Forwarded-Proto`, `X-Forwarded-Host` and
    /// `X-Real-IP` kept (without an `X-Real-IP`, it becomes the last untrusted `X-Forwarded-For` hop); from anyone
    /// else all of these are replaced. `Host` (and `X-Forwarded-Host`, `host=`)
    /// become `host`, the client's Host or HTTP/2 `:authority`. The family `mode` does not produce is removed.
    pub(crate) fn apply(
        &self,
        headers: &mut HeaderMap,
        client: IpAddr,
        scheme: &'static str,
        host: Option<HeaderValue>,
    ) {
        let client = client.to_canonical();
        let trusted = self.trusted.iter().any(|net| net.contains(client));
        if !trusted {
            for name in [
                &FORWARDED,
                &X_FORWARDED_FOR,
                &X_FORWARDED_PROTO,
                &X_FORWARDED_HOST,
                &X_REAL_IP,
            ] {
                headers.remove(name);
            }
        }
        if self.mode.rfc7239() {
            let element = forwarded_element(client, scheme, host.as_ref());
            append_list(headers, &FORWARDED, &element);
        } else {
            headers.remove(&FORWARDED);
        }
        if self.mode.x_forwarded() {
            // Before our hop is added: the address behind the trusted proxies, for `X-Real-IP`.
            let real = if trusted {
                self.real_client(headers).unwrap_or(client)
            } else {
                client
            };
            append_list(headers, &X_FORWARDED_FOR, &client.to_string());
            keep_or_set(
                headers,
                trusted,
                X_FORWARDED_PROTO,
                Some(HeaderValue::from_static(scheme)),
            );
            keep_or_set(headers, trusted, X_FORWARDED_HOST, host.clone());
            keep_or_set(
                headers,
                trusted,
                X_REAL_IP,
                HeaderValue::from_str(&real.to_string()).ok(),
            );
        } else {
            for name in [
                &X_FORWARDED_FOR,
                &X_FORWARDED_PROTO,
                &X_FORWARDED_HOST,
                &X_REAL_IP,
            ] {
                headers.remove(name);
            }
        }
        if let Some(host) = host {
            headers.insert(header::HOST, host);
        }
    }
}

impl Forwarding {
    /// The first address in `X-Forwarded-For`, right to left, that is not a trusted proxy (nginx's recursive
    /// real-IP rule); `None` when the list is empty or unreadable.
    fn real_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let hops: Vec<IpAddr> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|hop| {
                hop.trim()
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| ip.to_canonical())
            })
            .collect::<Option<_>>()?;
        let untrusted = hops
            .iter()
            .rev()
            .find(|ip| !self.trusted.iter().any(|net| net.contains(**ip)));
        untrusted.or(hops.first()).copied()
    }
}

/// Appends `item` to the comma-separated list in `name`, joining every field line into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, item: &str) {
    let mut joined = Vec::new();
    for value in headers.get_all(name) {
        let value = value.as_bytes().trim_ascii();
        if !value.is_empty() {
            joined.extend_from_slice(value);
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(item.as_bytes());
    // Existing values came from valid header values and `item` is ASCII, so this only fails on odd bytes.
    let value = HeaderValue::from_bytes(&joined).or_else(|_| HeaderValue::from_str(item));
    if let Ok(value) = value {
        headers.insert(name, value);
    }
}

/// Keeps a trusted proxy's value, else sets `value` (or removes the field when there is none).
fn keep_or_set(
    headers: &mut HeaderMap,
    trusted: bool,
    name: HeaderName,
    value: Option<HeaderValue>,
) {
    if trusted && headers.contains_key(&name) {
        return;
    }
    match value {
        Some(value) => {
            headers.insert(name, value);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// One `Forwarded` element (RFC 7239 §4): `for=` the client (an IPv6 address bracketed and quoted, §6),
/// `proto=`, and `host=` quoted when it is not a token (it usually has a `:port`).
fn forwarded_element(client: IpAddr, scheme: &str, host: Option<&HeaderValue>) -> String {
    let mut element = match client {
        IpAddr::V4(ip) => format!("for={ip}"),
        IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
    };
    element.push_str(";proto=");
    element.push_str(scheme);
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        element.push_str(";host=");
        if !host.is_empty() && host.bytes().all(is_tchar) {
            element.push_str(host);
        } else {
            element.push('"');
            for c in host.chars() {
                if c == '"' || c == '\\' {
                    element.push('\\');
                }
                element.push(c);
            }
            element.push('"');
        }
    }
    element
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

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
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "trailer", "x-keep"]);
    }

    #[test]
    fn strips_the_fields_pushbridge_sets() {
        let mut headers = map(&[
            ("x-pushbridge-params", "room=admins"),
            ("X-Pushbridge-Stream", "x"),
            ("x-pushbridge-anything", "x"),
            ("x-original-uri", "/x"),
            ("x-original-method", "GET"),
            ("x-original-host", "kept"),
            ("x-pushbridgex", "kept"),
        ]);
        strip_pushbridge_owned(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-original-host", "x-pushbridgex"]);
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

    fn forwarding(mode: ForwardedHeaders, trusted: &[&str]) -> Forwarding {
        Forwarding {
            mode,
            trusted: trusted.iter().map(|t| IpNet::parse(t).unwrap()).collect(),
        }
    }

    const SPOOFED: [(&str, &str); 5] = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "ftp"),
        ("x-forwarded-host", "evil.example"),
        ("x-real-ip", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
    ];

    #[test]
    fn untrusted_client_values_are_replaced() {
        let mut headers = map(&SPOOFED);
        let host = HeaderValue::from_static("app.example:8443");
        forwarding(ForwardedHeaders::Both, &["10.0.0.0/8"]).apply(
            &mut headers,
            "192.0.2.9".parse().unwrap(),
            "https",
            Some(host),
        );
        assert_eq!(headers["x-forwarded-for"], "192.0.2.9");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example:8443");
        assert_eq!(headers["x-real-ip"], "192.0.2.9");
        assert_eq!(
            headers["forwarded"],
            "for=192.0.2.9;proto=https;host=\"app.example:8443\""
        );
        assert_eq!(headers["host"], "app.example:8443");
    }

    #[test]
    fn trusted_proxy_values_are_extended_and_kept() {
        let mut headers = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "1.1.1.1"),
            ("forwarded", "for=1.1.1.1;proto=https"),
        ]);
        forwarding(ForwardedHeaders::Both, &["10.0.0.0/8"]).apply(
            &mut headers,
            "::ffff:10.0.0.9".parse().unwrap(),
            "http",
            None,
        );
        assert_eq!(
            headers["x-forwarded-for"],
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"
        );
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-real-ip"], "1.1.1.1");
        assert!(!headers.contains_key("x-forwarded-host"));
        assert_eq!(
            headers["forwarded"],
            "for=1.1.1.1;proto=https, for=10.0.0.9;proto=http"
        );
    }

    #[test]
    fn each_mode_sets_only_its_family() {
        let mut headers = map(&SPOOFED);
        forwarding(ForwardedHeaders::Rfc7239, &["::/0"]).apply(
            &mut headers,
            "2001:db8::1".parse().unwrap(),
            "http",
            Some(HeaderValue::from_static("plain.example")),
        );
        assert_eq!(
            headers["forwarded"],
            "for=6.6.6.6, for=\"[2001:db8::1]\";proto=http;host=plain.example"
        );
        for gone in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-real-ip",
        ] {
            assert!(!headers.contains_key(gone), "{gone}");
        }
        let mut headers = map(&SPOOFED);
        forwarding(ForwardedHeaders::XForwarded, &[]).apply(
            &mut headers,
            "127.0.0.1".parse().unwrap(),
            "http",
            None,
        );
        assert!(!headers.contains_key("forwarded"));
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    }

    #[test]
    fn real_ip_behind_trusted_proxies_is_the_last_untrusted_hop() {
        let fwd = forwarding(ForwardedHeaders::XForwarded, &["10.0.0.0/8"]);
        let mut headers = map(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.1.1.1")]);
        fwd.apply(&mut headers, "10.0.0.9".parse().unwrap(), "https", None);
        assert_eq!(headers["x-real-ip"], "203.0.113.5");
        assert_eq!(
            headers["x-forwarded-for"],
            "6.6.6.6, 203.0.113.5, 10.1.1.1, 10.0.0.9"
        );
        let mut headers = map(&[("x-forwarded-for", "10.2.2.2")]);
        fwd.apply(&mut headers, "10.0.0.9".parse().unwrap(), "https", None);
        assert_eq!(headers["x-real-ip"], "10.2.2.2");
        let mut headers = map(&[("x-forwarded-for", "garbage")]);
        fwd.apply(&mut headers, "10.0.0.9".parse().unwrap(), "https", None);
        assert_eq!(headers["x-real-ip"], "10.0.0.9");
    }

    #[test]
    fn cookie_crumbs_become_one_field() {
        let mut headers = map(&[
            ("cookie", "a=1"),
            ("cookie", " b=2 "),
            ("cookie", ""),
            ("cookie", "c=3"),
        ]);
        join_cookies(&mut headers);
        let all: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(one["cookie"], "a=1; b=2");
        let mut none = HeaderMap::new();
        join_cookies(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn quotes_odd_hosts_and_finds_trailers() {
        let host = HeaderValue::from_static("we\"ird");
        assert_eq!(
            forwarded_element("10.1.2.3".parse().unwrap(), "https", Some(&host)),
            "for=10.1.2.3;proto=https;host=\"we\\\"ird\""
        );
        assert!(wants_trailers(&map(&[("te", "gzip, Trailers")])));
        assert!(!wants_trailers(&map(&[("te", "gzip")])));
    }
}
