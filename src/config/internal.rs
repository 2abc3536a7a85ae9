//! The application's internal URLs: the ones pushbridge itself requests — stream upstreams
//! (`streams[].upstream.url`, up to its first `{param}`), `client_messages.forward`, `auth.check` — which a client
//! must not reach through the pass-through when they share a pass-through upstream's origin ([`Origin`]), and the
//! `check` warnings for a layout that makes them reachable.

use super::schema::{Config, UpstreamKind};

/// Where a URL's requests go, as far as "the same application" is concerned: TLS or not (`ws` is `http`, `wss`
/// is `https`), the host lower-cased (every loopback spelling — `localhost`, `127.x.x.x`, `[::1]`, `0.0.0.0`,
/// `[::]` — is one host), and the port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an `http(s)://` or `ws(s)://` URL; `None` for another scheme or no host.
    pub fn of(url: &http::Uri) -> Option<Origin> {
        let tls = match url.scheme_str()?.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return None,
        };
        let authority = url.authority()?;
        let host = authority.host().to_ascii_lowercase();
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
        Some(Origin {
            tls,
            host: if loopback { "loopback".into() } else { host },
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        })
    }
}

/// One URL of the application that pushbridge requests itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalUrl {
    /// The dotted field path, e.g. `streams[0].upstream.url`.
    pub at: String,
    pub origin: Origin,
    /// The URL's path, up to its first `{param}` when the path has one.
    pub path: String,
    /// `path` was cut at a `{param}`: every path it starts is internal, not only the path itself.
    pub templated: bool,
}

/// Every HTTP URL of the configuration that pushbridge itself requests on the application, in file order. A
/// stream upstream whose host or port is a `{param}` cannot be placed and is left out.
pub fn internal_urls(config: &Config) -> Vec<InternalUrl> {
    let mut out = Vec::new();
    for (i, stream) in config.streams.iter().enumerate() {
        if !matches!(
            stream.upstream.kind,
            UpstreamKind::Redis | UpstreamKind::Publish
        ) {
            let raw = stream.upstream.url.as_str();
            let cut = raw.find('{');
            let text = &raw[..cut.unwrap_or(raw.len())];
            if let Ok(url) = text.parse::<http::Uri>() {
                let templated = cut.is_some() && !text.contains('?');
                push(
                    &mut out,
                    format!("streams[{i}].upstream.url"),
                    &url,
                    templated,
                );
            }
        }
        if let Some(messages) = &stream.client_messages {
            let at = format!("streams[{i}].client_messages.forward");
            push(&mut out, at, &messages.forward, false);
        }
        if let Some(check) = stream.auth.as_ref().and_then(|a| a.check.as_ref()) {
            push(&mut out, format!("streams[{i}].auth.check"), check, false);
        }
    }
    out
}

fn push(out: &mut Vec<InternalUrl>, at: String, url: &http::Uri, templated: bool) {
    let Some(origin) = Origin::of(url) else {
        return;
    };
    // A cut template may end inside the authority (`http://app:8080` of `http://app:8080{path}`): no path yet.
    let path = match url.path() {
        "" => "/".to_owned(),
        path => path.to_owned(),
    };
    out.push(InternalUrl {
        at,
        origin,
        path,
        templated,
    });
}

/// The pass-through upstreams (`passthrough.upstream`, then `passthrough.routes[i].upstream`) with their field
/// paths and origins.
pub fn passthrough_origins(config: &Config) -> Vec<(String, Origin)> {
    let Some(pass) = &config.passthrough else {
        return Vec::new();
    };
    let routes = pass
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("passthrough.routes[{i}].upstream"), &r.upstream));
    std::iter::once(("passthrough.upstream".to_owned(), &pass.upstream))
        .chain(routes)
        .filter_map(|(at, url)| Some((at, Origin::of(url)?)))
        .collect()
}

/// `pushbridge check` warnings: an internal URL a client can reach through the pass-through
/// (`passthrough.expose_internal: true`), or one whose path is `/`, so the pass-through refuses every path of
/// that upstream.
pub fn warnings(config: &Config) -> Vec<String> {
    let Some(pass) = &config.passthrough else {
        return Vec::new();
    };
    let upstreams = passthrough_origins(config);
    let mut out = Vec::new();
    for url in internal_urls(config) {
        let Some((upstream, _)) = upstreams.iter().find(|(_, o)| *o == url.origin) else {
            continue;
        };
        if pass.expose_internal {
            out.push(format!(
                "{}: {} is on the origin of {upstream} and reachable by any client through the pass-through \
                 (passthrough.expose_internal: true); serve it on a port or host the pass-through does not proxy",
                url.at, url.path
            ));
        } else if url.path == "/" {
            out.push(format!(
                "{}: its path covers every path of {upstream}: the pass-through refuses all of them with 404; \
                 serve it on a port or host the pass-through does not proxy",
                url.at
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(origin("http://App:80/x"), origin("http://app"));
        assert_eq!(origin("ws://app:8080"), origin("http://app:8080/y"));
        assert_eq!(origin("wss://app"), origin("https://app:443"));
        assert_eq!(
            origin("http://localhost:8090"),
            origin("http://127.0.0.1:8090")
        );
        assert_eq!(origin("http://[::1]:8090"), origin("http://127.0.0.2:8090"));
        assert_ne!(origin("http://app:8080"), origin("https://app:8080"));
        assert_ne!(
            origin("http://127.0.0.1:8090"),
            origin("http://127.0.0.1:8091")
        );
        assert_ne!(origin("http://app"), origin("http://other"));
        assert!(Origin::of(&"redis://app:6379".parse().unwrap()).is_none());
    }

    #[test]
    fn collects_every_internal_url() {
        let yaml = r#"
listen: [{ address: "127.0.0.1:0" }]
passthrough: { upstream: "http://app:80", expose_internal: true }
streams:
  - path: /e/{c}
    upstream: { url: "http://app/internal/events/{c}" }
    client_messages: { forward: "http://app/internal/messages" }
    auth: { check: "http://auth:9000/check" }
  - path: /q/{c}
    upstream: { url: "http://app/poll?channel={c}", kind: poll }
  - path: /r/{c}
    upstream: { url: "redis://cache:6379", kind: redis, key: "k:{c}" }
"#;
        let config = Config::parse("t.yaml", yaml).unwrap();
        let urls = internal_urls(&config);
        let seen: Vec<(&str, &str, bool)> = urls
            .iter()
            .map(|u| (u.at.as_str(), u.path.as_str(), u.templated))
            .collect();
        assert_eq!(
            seen,
            [
                ("streams[0].upstream.url", "/internal/events/", true),
                (
                    "streams[0].client_messages.forward",
                    "/internal/messages",
                    false
                ),
                ("streams[0].auth.check", "/check", false),
                ("streams[1].upstream.url", "/poll", false),
            ]
        );
        let warned = warnings(&config);
        assert_eq!(warned.len(), 3, "{warned:#?}");
        assert!(warned[0].starts_with(
            "streams[0].upstream.url: /internal/events/ is on the origin of passthrough.upstream"
        ));
    }
}
