//! Rules for `passthrough:`: usable upstream URLs, a protocol that fits each URL's scheme (`h2c` is plaintext,
//! `auto` needs TLS for ALPN), route prefixes that are clean absolute paths and unique, positive timeouts.

use std::collections::HashMap;

use super::super::passthrough::{PassthroughConfig, UpstreamProtocol, normalize_prefix};
use super::super::units::clip;
use super::{RESERVED_PREFIX, Report};

pub(super) fn rules(pass: &PassthroughConfig, report: &mut Report<'_>) {
    upstream(report, "passthrough", &pass.upstream, pass.protocol);
    report.positive("passthrough.connect_timeout", pass.connect_timeout);
    report.positive("passthrough.response_timeout", pass.response_timeout);
    report.positive("passthrough.body_timeout", pass.body_timeout);
    report.positive(
        "passthrough.websocket.idle_timeout",
        pass.websocket.idle_timeout,
    );
    report.at_least_one(
        "passthrough.websocket.max_message",
        pass.websocket.max_message,
    );
    report.at_least_one(
        "passthrough.websocket.max_sessions",
        pass.websocket.max_sessions,
    );
    if let Some(ca) = &pass.ca_file {
        report.readable("passthrough.ca_file", ca);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, route) in pass.routes.iter().enumerate() {
        let at = format!("passthrough.routes[{i}]");
        upstream(report, &at, &route.upstream, route.protocol);
        let prefix_at = format!("{at}.prefix");
        if let Err(message) = check_prefix(&route.prefix) {
            report.add(&prefix_at, message);
            continue;
        }
        let key = normalize_prefix(&route.prefix);
        if let Some(first) = seen.get(key) {
            report.add(
                &prefix_at,
                format!("prefix {key} is also used by passthrough.routes[{first}]"),
            );
        } else {
            seen.insert(key, i);
        }
    }
}

/// `url` is an http(s) URL without a query, and `protocol` can be spoken over its scheme.
fn upstream(report: &mut Report<'_>, at: &str, url: &http::Uri, protocol: UpstreamProtocol) {
    let url_at = format!("{at}.upstream");
    report.url(&url_at, url, &["http", "https"]);
    if url.query().is_some() {
        report.add(&url_at, "must not have a query");
    }
    let https = url
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let http = url
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http"));
    let mismatch = match protocol {
        UpstreamProtocol::H2c if https => Some(
            "h2c is HTTP/2 over plaintext TCP: use an http:// upstream, or protocol auto for https://",
        ),
        UpstreamProtocol::Auto if http => Some(
            "auto chooses HTTP/2 or HTTP/1.1 by ALPN, which needs TLS: use an https:// upstream, or protocol h2c for http://",
        ),
        _ => None,
    };
    if let Some(message) = mismatch {
        report.add(&format!("{at}.protocol"), message);
    }
}

/// A route prefix: an absolute path without query, fragment, dot segments or empty segments.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let bad = |why: &str| format!("invalid prefix {:?}: {why}", clip(prefix));
    if !prefix.starts_with('/') {
        return Err(bad("must start with /"));
    }
    if prefix.parse::<http::uri::PathAndQuery>().is_err()
        || prefix.contains(['?', '#', '*'])
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(
            "must be a URL path without query, fragment, `*` or spaces",
        ));
    }
    let trimmed = normalize_prefix(prefix);
    if trimmed.len() > 1
        && trimmed[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad("must not contain empty, `.` or `..` segments"));
    }
    if trimmed == RESERVED_PREFIX || trimmed.starts_with(&format!("{RESERVED_PREFIX}/")) {
        return Err(bad(&format!(
            "paths under {RESERVED_PREFIX}/ are reserved for pushbridge"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ForwardedHeaders, PassthroughConfig, UpstreamProtocol};

    const HEAD: &str = "listen:\n  - address: 127.0.0.1:8080\npassthrough:\n";

    /// Every problem as `FILE:LINE:COL: path: message`.
    fn errors(body: &str) -> Vec<String> {
        match Config::parse("test.yaml", &format!("{HEAD}{body}")) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    fn parsed(body: &str) -> PassthroughConfig {
        Config::parse("test.yaml", &format!("{HEAD}{body}"))
            .unwrap_or_else(|e| panic!("{e}"))
            .passthrough
            .unwrap()
    }

    #[test]
    fn defaults_and_full_form() {
        let pass = parsed("  upstream: http://app:8081\n");
        assert_eq!(
            pass,
            PassthroughConfig::new("http://app:8081".parse().unwrap())
        );
        let pass = parsed(
            "  upstream: https://app:8443
  protocol: auto
  forwarded: both
  trusted_proxies: [10.0.0.0/8, \"::1\"]
  body_timeout: 5s
  websocket: { idle_timeout: 1m, max_message: 64KiB }
  routes:
    - prefix: /api/
      upstream: http://127.0.0.1:8082
      protocol: h2c
    - { prefix: /, upstream: http://root }
",
        );
        assert_eq!(pass.protocol, UpstreamProtocol::Auto);
        assert_eq!(pass.forwarded, ForwardedHeaders::Both);
        assert_eq!(pass.trusted_proxies.len(), 2);
        assert_eq!(pass.websocket.max_message, 64 * 1024);
        assert_eq!(pass.routes[0].protocol, UpstreamProtocol::H2c);
        assert_eq!(pass.routes[1].protocol, UpstreamProtocol::Http1);
    }

    #[test]
    fn each_rule_is_located() {
        let cases = [
            (
                "  upstream: https://app\n  protocol: h2c\n",
                "test.yaml:5:13: passthrough.protocol: h2c is HTTP/2 over plaintext",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: /g, upstream: http://g, protocol: auto }\n",
                "test.yaml:6:51: passthrough.routes[0].protocol: auto chooses HTTP/2 or HTTP/1.1 by ALPN",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: api, upstream: http://a }\n",
                "test.yaml:6:17: passthrough.routes[0].prefix: invalid prefix \"api\": must start with /",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: /a/../b, upstream: http://a }\n",
                "test.yaml:6:17: passthrough.routes[0].prefix: invalid prefix \"/a/../b\": must not contain",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: \"/a?x\", upstream: http://a }\n",
                "test.yaml:6:17: passthrough.routes[0].prefix: invalid prefix \"/a?x\": must be a URL path",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: /_pushbridge/x, upstream: http://a }\n",
                "test.yaml:6:17: passthrough.routes[0].prefix: invalid prefix \"/_pushbridge/x\": paths under",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: /api, upstream: http://a }\n    - { prefix: /api/, upstream: http://b }\n",
                "test.yaml:7:17: passthrough.routes[1].prefix: prefix /api is also used by passthrough.routes[0]",
            ),
            (
                "  upstream: http://app\n  routes:\n    - { prefix: /a, upstream: \"ftp://a\" }\n",
                "test.yaml:6:31: passthrough.routes[0].upstream: URL \"ftp://a/\" must start with http://",
            ),
            (
                "  upstream: http://app\n  trusted_proxies: [10.0.0.0/33]\n",
                "test.yaml:5:21: passthrough.trusted_proxies[0]: invalid address range \"10.0.0.0/33\"",
            ),
            (
                "  upstream: http://app\n  forwarded: x-real-ip\n",
                "test.yaml:5:14: passthrough.forwarded: unknown variant `x-real-ip`",
            ),
            (
                "  upstream: http://app\n  body_timeout: 0s\n",
                "test.yaml:5:17: passthrough.body_timeout: must be more than zero",
            ),
            (
                "  upstream: http://app\n  websocket: { max_sessions: 0 }\n",
                "test.yaml:5:30: passthrough.websocket.max_sessions: must be at least 1",
            ),
            (
                "  upstream: http://app\n  websocket: { idle_timeout: 0s }\n",
                "test.yaml:5:30: passthrough.websocket.idle_timeout: must be more than zero",
            ),
        ];
        for (body, expected) in cases {
            let got = errors(body);
            assert_eq!(got.len(), 1, "{body}: {got:#?}");
            assert!(
                got[0].starts_with(expected),
                "{body}:\n got {}\nwant {expected}…",
                got[0]
            );
        }
    }
}
