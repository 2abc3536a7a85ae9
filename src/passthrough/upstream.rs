//! Where a pass-through request goes and how it gets there: the route table (longest path prefix wins, whole
//! segments only, else the default upstream), the upstream URI for a request, the pooled HTTP/1.1 client (also
//! used for every WebSocket upgrade, and for `auto` upstreams whose ALPN picks `http/1.1`), and one shared HTTP/2
//! connection per h2c or `auto` https upstream ([`multiplexed`]).

mod connector;
mod multiplexed;

use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::RequestBody;
use super::internal::Refused;
use crate::BoxError;
use crate::config::{InternalUrl, Origin, PassthroughConfig, UpstreamProtocol, normalize_prefix};
use connector::Connector;
use multiplexed::Multiplexed;

/// The pooled HTTP/1.1 client.
pub(super) type HttpClient = Client<Connector, RequestBody>;

/// Why a request did not get the application's response.
#[derive(Debug)]
pub(super) enum Failure {
    /// The client's Host cannot be an HTTP/2 `:authority`.
    BadHost,
    /// Connecting (`connect`) or the exchange failed.
    Upstream { connect: bool, error: BoxError },
}

impl From<hyper_util::client::legacy::Error> for Failure {
    fn from(error: hyper_util::client::legacy::Error) -> Failure {
        Failure::Upstream {
            connect: error.is_connect(),
            error: error.into(),
        }
    }
}

/// One upstream service.
pub(super) struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The upstream's path without a trailing `/` (`""` for the root).
    prefix: String,
    /// The HTTP/2 connection (h2c, and `auto` over https: plaintext `auto` is HTTP/1.1, there is no ALPN).
    multiplexed: Option<Multiplexed>,
    /// The application's internal paths on this upstream's origin.
    refused: Refused,
}

impl Upstream {
    fn new(
        url: &Uri,
        protocol: UpstreamProtocol,
        tls: &Tls,
        internal: &[InternalUrl],
    ) -> Result<Upstream, BoxError> {
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
        let multiplexed = match protocol {
            UpstreamProtocol::Http1 => None,
            UpstreamProtocol::Auto if scheme != Scheme::HTTPS => None,
            UpstreamProtocol::H2c | UpstreamProtocol::Auto => {
                let auto = protocol == UpstreamProtocol::Auto;
                let connector = tls.connector(if auto { Alpn::Both } else { Alpn::H2 });
                Some(Multiplexed::new(connector, &scheme, &authority, auto)?)
            }
        };
        Ok(Upstream {
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            multiplexed,
            refused: Refused::new(Origin::of(url).as_ref(), internal),
        })
    }

    /// Whether a request for `path` would reach one of the application's internal paths (see [`Refused`]).
    pub fn refuses(&self, path: &str) -> bool {
        !self.refused.is_empty() && self.refused.covers(&format!("{}{path}", self.prefix))
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

    /// Sends a request made by [`uri`](Self::uri), its `Host` the client's: over HTTP/2 when this upstream speaks
    /// it, else through `http1`.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
        http1: &HttpClient,
    ) -> Result<Response<Incoming>, Failure> {
        match &self.multiplexed {
            Some(multiplexed) => multiplexed.send(req, http1).await,
            None => Ok(http1
                .request(req.map(RequestBody::without_trailers))
                .await?),
        }
    }
}

/// The route table.
pub(super) struct Table {
    /// `(normalized prefix, upstream)`, longest prefix first.
    routes: Vec<(String, Upstream)>,
    default: Upstream,
}

impl Table {
    /// The table for `cfg`; each upstream refuses the `internal` URLs on its origin (none when
    /// `expose_internal`).
    pub fn new(cfg: &PassthroughConfig, internal: &[InternalUrl]) -> Result<Table, BoxError> {
        let tls = Tls::new(cfg)?;
        let internal = if cfg.expose_internal { &[] } else { internal };
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for route in &cfg.routes {
            let upstream = Upstream::new(&route.upstream, route.protocol, &tls, internal)?;
            routes.push((normalize_prefix(&route.prefix).to_owned(), upstream));
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Table {
            routes,
            default: Upstream::new(&cfg.upstream, cfg.protocol, &tls, internal)?,
        })
    }

    /// The upstream for a request path.
    pub fn select(&self, path: &str) -> &Upstream {
        self.routes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map_or(&self.default, |(_, upstream)| upstream)
    }
}

/// `prefix` (normalized) covers `path` in whole segments: `/api` covers `/api` and `/api/x`, not `/apix`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What every upstream connection is made with: the TLS settings (`ca_file`) and the connect timeout.
struct Tls {
    config: rustls::ClientConfig,
    connect_timeout: Duration,
}

/// The protocols a connector offers in ALPN (over TLS only).
#[derive(Clone, Copy)]
enum Alpn {
    Http1,
    H2,
    Both,
}

impl Tls {
    fn new(cfg: &PassthroughConfig) -> Result<Tls, BoxError> {
        let mut config = crate::tls::client_config(cfg.ca_file.as_deref())?;
        // hyper-rustls sets ALPN itself from the enabled versions and refuses a preset list.
        config.alpn_protocols.clear();
        Ok(Tls {
            config,
            connect_timeout: cfg.connect_timeout,
        })
    }

    fn connector(&self, alpn: Alpn) -> HttpsConnector<HttpConnector> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(self.config.clone())
            .https_or_http();
        match alpn {
            Alpn::Http1 => builder.enable_http1().wrap_connector(http),
            Alpn::H2 => builder.enable_http2().wrap_connector(http),
            Alpn::Both => builder.enable_http1().enable_http2().wrap_connector(http),
        }
    }
}

/// The pooled HTTP/1.1 client for every upstream.
pub(super) fn http1_client(cfg: &PassthroughConfig) -> Result<HttpClient, BoxError> {
    let connector = Connector::new(Tls::new(cfg)?.connector(Alpn::Http1));
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    Ok(client.build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let yaml = "upstream: http://default\nroutes:\n  - { prefix: /api/, upstream: http://api }\n  - { prefix: /api/v2, upstream: http://v2, protocol: h2c }\n  - { prefix: /, upstream: http://root }\n";
        let cfg: PassthroughConfig = serde_yaml::from_str(yaml).unwrap();
        let table = Table::new(&cfg, &[]).unwrap();
        let host = |path: &str| table.select(path).authority.to_string();
        assert_eq!(host("/api"), "api");
        assert_eq!(host("/api/x"), "api");
        assert_eq!(host("/api/v2"), "v2");
        assert_eq!(host("/api/v2/y"), "v2");
        assert_eq!(host("/api/v20"), "api");
        assert_eq!(host("/apix"), "root");
        assert_eq!(host("/"), "root");
        assert!(table.select("/api/v2").multiplexed.is_some());
        assert!(table.select("/api").multiplexed.is_none());
        let no_root: PassthroughConfig = serde_yaml::from_str(
            "upstream: http://default\nroutes: [{ prefix: /a, upstream: http://a }]\n",
        )
        .unwrap();
        let table = Table::new(&no_root, &[]).unwrap();
        assert_eq!(table.select("/b").authority.as_str(), "default");
    }

    #[test]
    fn upstream_uri_joins_prefix_path_and_query() {
        let cfg: PassthroughConfig = serde_yaml::from_str("upstream: http://default\n").unwrap();
        let upstream = Upstream::new(
            &"https://app:8443/base/".parse().unwrap(),
            UpstreamProtocol::Http1,
            &Tls::new(&cfg).unwrap(),
            &[],
        )
        .unwrap();
        let uri = upstream.uri(&"/x/y?q=1".parse().unwrap()).unwrap();
        assert_eq!(uri, "https://app:8443/base/x/y?q=1");
        assert!(upstream.uri(&"*".parse().unwrap()).is_none());
    }
}
