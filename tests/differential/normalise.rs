//! The one place where the differential suite forgives differences. Each rule `Pn` below is a row of the table
//! "What pushbridge changes" in docs/protocol.md (keep the two in step: a rule here without its row hides a
//! change nobody documented). Everything not removed here must be the same directly and through pushbridge.
//!
//! Besides those rows, only what differs between any two runs of the same client against two servers is masked
//! (`Inherent`): the address the client used (its port, in `Host`, `Origin`, `X-Forwarded-Host`…) and the
//! random WebSocket key and its accept value.

use serde_json::{Value, json};

/// P1: forwarding fields pushbridge sets (replacing an untrusted client's).
const FORWARDING: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// P2: hop-by-hop fields (RFC 9110 §7.6.1), removed both ways with every field `Connection` names; `TE: trailers`
/// is passed on.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// P10: close codes pushbridge sends itself on a pass-through WebSocket (docs/protocol.md, WebSocket pass-through).
const PUSHBRIDGE_CLOSE_CODES: [u64; 4] = [1001, 1002, 1007, 1009];

/// Inherent: fields a client sends over one HTTP version only (Chromium's RFC 9218 `priority` over HTTP/2).
const CLIENT_VERSION_FIELDS: [&str; 1] = ["priority"];

/// Normalises one observation in place; `authority` is the `host:port` the client was pointed at.
pub fn normalise(obs: &mut Value, authority: &str) {
    let echo_body = obs["body"].as_str().is_some_and(|b| b.starts_with("<echo"));
    if let Some(app) = obs.get_mut("app").filter(|a| a.is_object()) {
        request_fields(app);
    }
    // P3: each hop's HTTP version is its own (`protocol`, ALPN): the version is not compared.
    if let Some(map) = obs.as_object_mut() {
        map.remove("protocol");
        map.remove("http_version");
    }
    for key in ["headers", "trailers"] {
        if let Some(fields) = obs.get_mut(key) {
            response_fields(fields, echo_body && key == "headers");
        }
    }
    // P8: pushbridge answers `Expect: 100-continue` itself when it starts forwarding the body; P14: other 1xx
    // responses are not forwarded.
    if let Some(map) = obs.as_object_mut() {
        map.remove("informational");
    }
    // P13: a 304 reaches an HTTP/1.1 client without `Content-Length`.
    if obs["status"] == 304
        && let Some(fields) = obs.get_mut("headers").and_then(Value::as_array_mut)
    {
        fields.retain(|p| p[0] != "content-length");
    }
    // gRPC calls: trailing metadata are trailer fields.
    if let Some(map) = obs.as_object_mut() {
        for call in map.values_mut() {
            if let Some(trailing) = call.get_mut("trailing") {
                response_fields(trailing, false);
            }
        }
    }
    // P7: no WebSocket extension is negotiated through pushbridge.
    if let Some(map) = obs.as_object_mut() {
        map.remove("extensions");
    }
    // P10: a close pushbridge sends itself (1001, 1009, …) has the documented code and its own reason text.
    if obs["close"]["code"]
        .as_u64()
        .is_some_and(|code| PUSHBRIDGE_CLOSE_CODES.contains(&code))
        && let Some(close) = obs["close"].as_object_mut()
    {
        close.remove("reason");
    }
    inherent(obs, authority);
}

/// P12: a request without `Host` (HTTP/1.0) reaches the application with `Host` = the application's address
/// (`app_authority`); called on what arrived through pushbridge before [`normalise`].
pub fn host_added(obs: &mut Value, app_authority: &str) {
    if let Some(list) = obs
        .get_mut("app")
        .and_then(|app| app.get_mut("headers"))
        .and_then(Value::as_array_mut)
    {
        // An HTTP/2 application reports it as `:authority`.
        list.retain(|p| {
            !(p[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("host") || n == ":authority")
                && p[1] == app_authority)
        });
    }
}

/// P11: request trailers reach only an HTTP/2 application; on a route to an HTTP/1.1 one (`h2` false) they are
/// not compared (called on both sides before [`normalise`]).
pub fn request_trailers(obs: &mut Value, h2: bool) {
    if !h2 && let Some(app) = obs.get_mut("app").and_then(Value::as_object_mut) {
        app.remove("trailers");
    }
}

/// The application's account of a request.
fn request_fields(app: &mut Value) {
    let http2 = app["http_version"]
        .as_str()
        .is_some_and(|v| v.starts_with('2') || v.contains("/2"));
    // P3: the version pushbridge speaks to the application is its `protocol`, not the client's.
    if let Some(map) = app.as_object_mut() {
        map.remove("http_version");
    }
    // Inherent: no request trailers, reported as null or [] by some applications.
    if app["trailers"].as_array().is_none_or(Vec::is_empty)
        && let Some(map) = app.as_object_mut()
    {
        map.remove("trailers");
    }
    // P5 for the request's trailer fields.
    if let Some(trailers) = app.get_mut("trailers").filter(|t| t.is_array()) {
        let fields: Vec<(String, String)> = trailers
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p[0].as_str()?.to_ascii_lowercase(),
                    p[1].as_str()?.to_owned(),
                ))
            })
            .collect();
        *trailers = sorted(fields);
    }
    let Some(list) = app["headers"].as_array() else {
        return;
    };
    let mut fields: Vec<(String, String)> = list
        .iter()
        .filter_map(|p| {
            Some((
                p[0].as_str()?.to_ascii_lowercase(),
                p[1].as_str()?.to_owned(),
            ))
        })
        .collect();
    // P3: HTTP/2's `:authority` is the Host (RFC 9113 §8.3.1); the other pseudo-fields are method and target.
    fields.retain_mut(|(name, _)| {
        if name == ":authority" {
            *name = "host".to_owned();
        }
        !name.starts_with(':')
    });
    // P4: HTTP/2 cookie crumbs (RFC 9113 §8.2.3) and one `Cookie` line are the same request.
    if http2 {
        join_cookies(&mut fields);
    }
    drop_hop_by_hop(&mut fields, true);
    // P1.
    fields.retain(|(name, _)| !FORWARDING.contains(&name.as_str()));
    // Inherent: the client's own per-version fields.
    fields.retain(|(name, _)| !CLIENT_VERSION_FIELDS.contains(&name.as_str()));
    // Inherent: nginx's echo reports an absent `Host` as an empty one.
    fields.retain(|(name, value)| !(name == "host" && value.is_empty()));
    // P7: extensions are not offered to the application.
    fields.retain(|(name, _)| name != "sec-websocket-extensions");
    app["headers"] = sorted(fields);
}

/// Response fields (or trailers) as the client got them.
fn response_fields(list: &mut Value, echo_body: bool) {
    let Some(array) = list.as_array() else {
        return;
    };
    let mut fields: Vec<(String, String)> = array
        .iter()
        .filter_map(|p| {
            Some((
                p[0].as_str()?.to_ascii_lowercase(),
                p[1].as_str()?.to_owned(),
            ))
        })
        .collect();
    drop_hop_by_hop(&mut fields, false);
    for (name, value) in fields.iter_mut() {
        // P3: hypercorn names the HTTP version it served in `Server`.
        if name == "server" && value.starts_with("hypercorn-h") {
            *value = "hypercorn-<version>".to_owned();
        }
    }
    fields.retain(|(name, _)| {
        // P9: pushbridge adds `Date` to a response without one (RFC 9110 §6.6.1); its value is the time anyway.
        name != "date"
        // P7.
            && name != "sec-websocket-extensions"
        // Inherent: an echo's length is that of the application's account, compared field by field instead.
            && !(echo_body && name == "content-length")
    });
    *list = sorted(fields);
}

/// P2 (with `TE: trailers` kept on requests).
fn drop_hop_by_hop(fields: &mut Vec<(String, String)>, request: bool) {
    let listed: Vec<String> = fields
        .iter()
        .filter(|(name, _)| name == "connection")
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect();
    fields.retain(|(name, value)| {
        if request && name == "te" {
            return value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
        }
        !HOP_BY_HOP.contains(&name.as_str()) && !listed.contains(name)
    });
    for (name, value) in fields.iter_mut() {
        if request && name == "te" {
            *value = "trailers".to_owned();
        }
    }
}

/// P4.
fn join_cookies(fields: &mut Vec<(String, String)>) {
    let crumbs: Vec<String> = fields
        .iter()
        .filter(|(name, _)| name == "cookie")
        .map(|(_, value)| value.clone())
        .collect();
    if crumbs.len() > 1 {
        let at = fields.iter().position(|(n, _)| n == "cookie").unwrap_or(0);
        fields.retain(|(name, _)| name != "cookie");
        fields.insert(at, ("cookie".to_owned(), crumbs.join("; ")));
    }
}

/// P5: field names are sent in lower case, and lines with different names may be reordered (lines with the same
/// name keep their order): names lowercased, a stable sort by name.
fn sorted(mut fields: Vec<(String, String)>) -> Value {
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(fields.into_iter().map(|(n, v)| json!([n, v])).collect())
}

/// Inherent: the endpoint's address, WebSocket keys.
fn inherent(value: &mut Value, authority: &str) {
    match value {
        Value::String(text) if text.contains(authority) => {
            let mut out = text.clone();
            for scheme in ["https://", "http://", "wss://", "ws://"] {
                out = out.replace(&format!("{scheme}{authority}"), "{origin}");
            }
            *text = out.replace(authority, "{authority}");
        }
        Value::Array(items) => {
            if let [Value::String(name), Value::String(field)] = items.as_mut_slice() {
                let lower = name.to_ascii_lowercase();
                if lower == "sec-websocket-key" || lower == "sec-websocket-accept" {
                    *field = "<random>".to_owned();
                }
            }
            for item in items {
                inherent(item, authority);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                inherent(item, authority);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_exactly_the_documented_changes() {
        let direct = json!({
            "status": 200, "headers": [["Date", "x"], ["Connection", "keep-alive, X-Hop"], ["X-Hop", "1"], ["A", "1"]],
            "body": "<echo: see app>",
            "app": {"http_version": "1.1", "headers": [["Host", "127.0.0.1:1"], ["B", "2"], ["a", "1"], ["B", "3"]]},
        });
        let mut through = json!({
            "status": 200, "headers": [["a", "1"], ["date", "y"], ["content-length", "9"]],
            "body": "<echo: see app>",
            "app": {"http_version": "2", "headers": [[":authority", "127.0.0.1:2"], ["a", "1"], ["b", "2"], ["b", "3"],
                    ["x-forwarded-for", "127.0.0.1"], ["forwarded", "for=127.0.0.1"]]},
        });
        let mut direct_n = direct.clone();
        normalise(&mut direct_n, "127.0.0.1:1");
        normalise(&mut through, "127.0.0.1:2");
        assert_eq!(direct_n, through);
        // Not forgiven: a changed value, and a second Host.
        let mut changed = direct.clone();
        changed["app"]["headers"][1][1] = json!("changed");
        normalise(&mut changed, "127.0.0.1:1");
        assert_ne!(direct_n, changed);
        let mut two_hosts = direct.clone();
        two_hosts["app"]["headers"]
            .as_array_mut()
            .unwrap()
            .push(json!(["host", "127.0.0.1:9"]));
        normalise(&mut two_hosts, "127.0.0.1:1");
        assert_ne!(direct_n, two_hosts);
    }
}
