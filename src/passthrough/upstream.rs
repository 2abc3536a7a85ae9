//! Where a pass-through request goes: the route table (longest path prefix wins, whole segments only, else the
//! default upstream), the upstream URI for a request, and one pooled client per protocol — HTTP/1.1 (also used
//! for every WebSocket upgrade), h2c (HTTP/2 prior knowledge) and `auto` (ALPN `h2`, `http/1.1` over TLS).

use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::RequestBody;
use crate::BoxError;
use crate::config::{PassthroughConfig, UpstreamProtocol, normalize_prefix};

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// One upstream service.
pub(super) struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The upstream's path without a trailing `/` (`""` for the root).
    prefix: String,
    pub protocol: UpstreamProtocol,
}

impl Upstream {
    fn new(url: &Uri, protocol: UpstreamProtocol) -> Result<Upstream, BoxError> {
        let scheme = match url.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => {
                return Err(format!(
                    "upstream {}: scheme must be http or https",
                    crate::error::redact(url)
                )
                .into());
            }
        };
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream {}: missing host", crate::error::redact(url)))?;
        Ok(Upstream {
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            protocol,
        })
    }

    /// The upstream URI for a request: upstream scheme and authority, the upstream's path prefix joined with the
    /// request path, and the request query. `None` for a target that is not an absolute path (`OPTIONS *`).
    pub fn uri(&self, uri: &Uri) -> Option<Uri> {
        let path = uri.path();
        if !path.starts_with('/') {
            return None;
        }
        let mut path_and_query = String::with_capacity(
            self.prefix.len() + path.len() + 1 + uri.query().map_or(0, str::len),
        );
        path_and_query.push_str(&self.prefix);
        path_and_query.push_str(path);
        if let Some(query) = uri.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
    }
}

/// The route table.
pub(super) struct Table {
    /// `(normalized prefix, upstream)`, longest prefix first.
    routes: Vec<(String, Upstream)>,
    default: Upstream,
}

impl Table {
    pub fn new(cfg: &PassthroughConfig) -> Result<Table, BoxError> {
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for route in &cfg.routes {
            let upstream = Upstream::new(&route.upstream, route.protocol)?;
            routes.push((normalize_prefix(&route.prefix).to_owned(), upstream));
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Table {
            routes,
            default: Upstream::new(&cfg.upstream, cfg.protocol)?,
        })
    }

    /// The upstream for a request path.
    pub fn select(&self, path: &str) -> &Upstream {
        self.routes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map_or(&self.default, |(_, upstream)| upstream)
    }

    /// The protocols some upstream uses.
    fn protocols(&self) -> impl Iterator<Item = UpstreamProtocol> + '_ {
        std::iter::once(self.default.protocol).chain(self.routes.iter().map(|(_, u)| u.protocol))
    }
}

/// `prefix` (normalized) covers `path` in whole segments: `/api` covers `/api` and `/api/x`, not `/apix`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// One pooled client per protocol in use; HTTP/1.1 always (WebSocket upgrades go over it).
pub(super) struct Clients {
    http1: HttpClient,
    h2c: Option<HttpClient>,
    auto: Option<HttpClient>,
}

impl Clients {
    pub fn new(cfg: &PassthroughConfig, table: &Table) -> Result<Clients, BoxError> {
        let uses = |p: UpstreamProtocol| table.protocols().any(|q| q == p);
        let build = |protocol: UpstreamProtocol| -> Result<HttpClient, BoxError> {
            client(protocol, cfg.ca_file.as_deref(), cfg.connect_timeout)
        };
        Ok(Clients {
            http1: build(UpstreamProtocol::Http1)?,
            h2c: uses(UpstreamProtocol::H2c)
                .then(|| build(UpstreamProtocol::H2c))
                .transpose()?,
            auto: uses(UpstreamProtocol::Auto)
                .then(|| build(UpstreamProtocol::Auto))
                .transpose()?,
        })
    }

    /// The client for requests to an upstream speaking `protocol`.
    pub fn get(&self, protocol: UpstreamProtocol) -> &HttpClient {
        match protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::H2c => self.h2c.as_ref().unwrap_or(&self.http1),
            UpstreamProtocol::Auto => self.auto.as_ref().unwrap_or(&self.http1),
        }
    }

    /// The HTTP/1.1 client, for WebSocket upgrades (RFC 6455 §4.1) whatever the upstream's protocol.
    pub fn http1(&self) -> &HttpClient {
        &self.http1
    }
}

fn client(
    protocol: UpstreamProtocol,
    ca_file: Option<&std::path::Path>,
    connect_timeout: Duration,
) -> Result<HttpClient, BoxError> {
    let mut tls = crate::tls::client_config(ca_file)?;
    // hyper-rustls sets ALPN itself from the enabled versions and refuses a preset list.
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = match protocol {
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
        UpstreamProtocol::H2c => builder.enable_http2().wrap_connector(http),
        UpstreamProtocol::Auto => builder.enable_http1().enable_http2().wrap_connector(http),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if protocol == UpstreamProtocol::H2c {
        client.http2_only(true);
    }
    Ok(client.build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let yaml = "upstream: http://default\nroutes:\n  - { prefix: /api/, upstream: http://api }\n  - { prefix: /api/v2, upstream: http://v2, protocol: h2c }\n  - { prefix: /, upstream: http://root }\n";
        let cfg: PassthroughConfig = serde_yaml::from_str(yaml).unwrap();
        let table = Table::new(&cfg).unwrap();
        let host = |path: &str| table.select(path).authority.to_string();
        assert_eq!(host("/api"), "api");
        assert_eq!(host("/api/x"), "api");
        assert_eq!(host("/api/v2"), "v2");
        assert_eq!(host("/api/v2/y"), "v2");
        assert_eq!(host("/api/v20"), "api");
        assert_eq!(host("/apix"), "root");
        assert_eq!(host("/"), "root");
        assert_eq!(table.select("/api/v2").protocol, UpstreamProtocol::H2c);
        let no_root: PassthroughConfig = serde_yaml::from_str(
            "upstream: http://default\nroutes: [{ prefix: /a, upstream: http://a }]\n",
        )
        .unwrap();
        let table = Table::new(&no_root).unwrap();
        assert_eq!(table.select("/b").authority.as_str(), "default");
    }

    #[test]
    fn upstream_uri_joins_prefix_path_and_query() {
        let upstream = Upstream::new(
            &"https://app:8443/base/".parse().unwrap(),
            UpstreamProtocol::Http1,
        )
        .unwrap();
        let uri = upstream.uri(&"/x/y?q=1".parse().unwrap()).unwrap();
        assert_eq!(uri, "https://app:8443/base/x/y?q=1");
        assert!(upstream.uri(&"*".parse().unwrap()).is_none());
    }
}
