//! The HTTP client used towards upstreams: pooled, http or https (rustls, webpki roots plus an optional CA file).

use std::path::Path;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::tls::TlsError;

pub type HttpClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// A pooled HTTP/1.1 client for http and https upstreams.
pub fn http_client<B>(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
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
    Ok(Client::builder(TokioExecutor::new()).build(https))
}
