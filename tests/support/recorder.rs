//! An application that answers every request with a JSON description of what it received — HTTP version,
//! `:authority` (the URI's authority, HTTP/2 only), path and query, every header field line in order — plain
//! (HTTP/1.1 and h2c) or over TLS offering the ALPN protocols given.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::certs::{KeyKind, TestCa};

/// What the application received, as JSON.
pub async fn describe(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let described = json!({
        "version": format!("{:?}", req.version()),
        "authority": req.uri().authority().map(|a| a.as_str().to_owned()),
        "target": req.uri().path_and_query().map(|p| p.as_str().to_owned()),
        "headers": headers,
    });
    let _ = req.into_body().collect().await;
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(described.to_string())))
        .expect("response")
}

/// Every value of the field `name` the application received, one per field line.
pub fn lines(described: &Value, name: &str) -> Vec<String> {
    described["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().expect("text").to_owned())
        .collect()
}

/// A plain recorder (HTTP/1.1 and h2c) on 127.0.0.1:0.
pub async fn plain() -> SocketAddr {
    super::app::serve(describe).await
}

/// A recorder over TLS offering `alpn`, with a leaf of `ca` (names include `localhost`).
pub async fn tls(ca: &TestCa, alpn: &[&[u8]]) -> SocketAddr {
    let (cert_pem, key_pem) = ca.leaf_pem(KeyKind::EcdsaP256);
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req| async { Ok::<_, Infallible>(describe(req).await) });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
