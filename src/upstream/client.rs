//! The HTTP client used towards upstreams, the authorization check and client-message forwards: pooled (idle
//! connections closed after an idle time, a few kept per host), http or https (rustls, webpki roots plus an
//! optional CA file). User-info in a URL never reaches hyper (whose pool logs the authority at debug level): it
//! is taken out of the request's URI and sent as `Authorization: Basic` unless the request has its own.

use std::path::Path;
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::tls::TlsError;

/// How long an unused pooled connection is kept.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Unused connections kept per upstream host.
pub const DEFAULT_POOL_MAX_IDLE: usize = 8;

/// Bounds of a client's connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub idle_timeout: Duration,
    pub max_idle_per_host: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_idle_per_host: DEFAULT_POOL_MAX_IDLE,
        }
    }
}

/// A pooled HTTP/1.1 client; cheap to clone.
pub struct HttpClient<B> {
    inner: Client<HttpsConnector<HttpConnector>, B>,
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        HttpClient {
            inner: self.inner.clone(),
        }
    }
}

impl<B> HttpClient<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    /// Sends `req` ([`move_userinfo`] first).
    pub fn request(&self, mut req: http::Request<B>) -> ResponseFuture {
        move_userinfo(&mut req);
        self.inner.request(req)
    }
}

/// A client with the default [`PoolLimits`].
pub fn http_client<B>(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
) -> Result<HttpClient<B>, TlsError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    http_client_with(ca_file, connect_timeout, PoolLimits::default())
}

/// A client whose idle connections are closed after `pool.idle_timeout`, at most `pool.max_idle_per_host` kept.
pub fn http_client_with<B>(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
    pool: PoolLimits,
) -> Result<HttpClient<B>, TlsError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = crate::tls::client_config(ca_file)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    // Without a timer the pool only drops expired connections when it is asked for one: never trimmed.
    let inner = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool.idle_timeout)
        .pool_max_idle_per_host(pool.max_idle_per_host)
        .build(https);
    Ok(HttpClient { inner })
}

/// Takes `user:password@` out of the request's URI; sends it as `Authorization: Basic` (percent-decoded) unless
/// the request already carries an `Authorization`.
pub fn move_userinfo<B>(req: &mut http::Request<B>) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    let Some((userinfo, host)) = authority.as_str().rsplit_once('@') else {
        return;
    };
    let credentials = basic(userinfo);
    let mut parts = req.uri().clone().into_parts();
    parts.authority = host.parse().ok();
    // Never keep the user-info: a URI that cannot be rebuilt without it loses its authority and fails to send.
    *req.uri_mut() = http::Uri::from_parts(parts).unwrap_or_default();
    if !req.headers().contains_key(AUTHORIZATION)
        && let Some(value) = credentials
    {
        req.headers_mut().insert(AUTHORIZATION, value);
    }
}

/// `Basic base64(user:password)` for percent-encoded URL user-info.
fn basic(userinfo: &str) -> Option<HeaderValue> {
    use base64::Engine;
    let decoded = percent_decode(userinfo);
    let token = base64::engine::general_purpose::STANDARD.encode(decoded);
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_auth() {
        let mut req = http::Request::get("http://al%40ice:p%3Ass@h:81/p?q=1")
            .body(())
            .unwrap();
        move_userinfo(&mut req);
        assert_eq!(req.uri(), "http://h:81/p?q=1");
        // base64("al@ice:p:ss")
        assert_eq!(req.headers()[AUTHORIZATION], "Basic YWxAaWNlOnA6c3M=");
    }

    #[test]
    fn own_authorization_wins_and_plain_uri_untouched() {
        let mut req = http::Request::get("http://u:p@h/")
            .header(AUTHORIZATION, "Bearer t")
            .body(())
            .unwrap();
        move_userinfo(&mut req);
        assert_eq!(req.uri(), "http://h/");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer t");
        let mut req = http::Request::get("https://h:1/x").body(()).unwrap();
        move_userinfo(&mut req);
        assert_eq!(req.uri(), "https://h:1/x");
        assert!(req.headers().get(AUTHORIZATION).is_none());
    }
}
