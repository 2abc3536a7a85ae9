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
