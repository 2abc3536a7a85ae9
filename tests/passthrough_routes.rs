//! Pass-through routes and protocols against the real server: the longest whole-segment prefix picks the
//! upstream, each upstream is spoken to in its own protocol (HTTP/1.1, h2c, ALPN over TLS), and a request body
//! that keeps trickling after the application answered is cut after `body_timeout`.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use support::certs::{KeyKind, TestCa};
use support::client::{Proto, WAIT, connect, empty};
use support::proxy::{self, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers with the app's name, the HTTP version it was reached with and the path.
fn named(
    name: &'static str,
) -> impl Fn(Request<Incoming>) -> std::future::Ready<Response<Full<Bytes>>> + Clone {
    move |req: Request<Incoming>| {
        let text = format!("{name} {:?} {}", req.version(), req.uri().path());
        std::future::ready(Response::new(Full::new(Bytes::from(text))))
    }
}

/// An HTTPS app offering ALPN `h2` and `http/1.1` (certificate from `ca`).
async fn tls_app(ca: &TestCa, name: &'static str) -> SocketAddr {
    let (cert_pem, key_pem) = ca.leaf_pem(KeyKind::EcdsaP256);
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = named(name);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn get(proxy: &TestProxy, path: &str) -> String {
    let mut sender = connect(proxy.addr(), Proto::H1).await;
    let req = Request::get(path)
        .header("host", "app")
        .body(empty())
        .unwrap();
    let response = sender.send(req).await;
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn longest_prefix_picks_the_upstream_and_its_protocol() {
    let default = support::app::serve(named("default")).await;
    let api = support::app::serve(named("api")).await;
    let v2 = support::app::serve(named("v2")).await;
    let ca = TestCa::new();
    let secure = tls_app(&ca, "secure").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let proxy = proxy::start(&format!(
        r#"listen:
  - address: "127.0.0.1:0"
passthrough:
  upstream: "http://{default}"
  ca_file: "{}"
  routes:
    - prefix: /api/
      upstream: "http://{api}"
    - prefix: /api/v2
      upstream: "http://{v2}/base"
      protocol: h2c
    - prefix: /secure
      upstream: "https://localhost:{}"
      protocol: auto
"#,
        ca_file.display(),
        secure.port()
    ))
    .await;
    assert_eq!(get(&proxy, "/").await, "default HTTP/1.1 /");
    assert_eq!(get(&proxy, "/apix").await, "default HTTP/1.1 /apix");
    assert_eq!(get(&proxy, "/api").await, "api HTTP/1.1 /api");
    assert_eq!(get(&proxy, "/api/users").await, "api HTTP/1.1 /api/users");
    assert_eq!(get(&proxy, "/api/v20").await, "api HTTP/1.1 /api/v20");
    // The prefix is not stripped; the upstream's own path is prepended.
    assert_eq!(get(&proxy, "/api/v2/x").await, "v2 HTTP/2.0 /base/api/v2/x");
    assert_eq!(get(&proxy, "/secure/y").await, "secure HTTP/2.0 /secure/y");
}

/// An app that answers as soon as the request head arrived and keeps the connection open, reading whatever the
/// proxy sends; reports each request head it read.
async fn early_answer_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if tcp.write_all(answer).await.is_err() {
                    return;
                }
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let text = String::from_utf8(proxy.running().metrics().render()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_body_still_trickling_after_the_answer_is_cut() {
    let app = early_answer_app().await;
    let proxy = proxy::start(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{app}\"\n  body_timeout: 300ms\n"
    ))
    .await;
    assert_eq!(
        metric(&proxy, "pushbridge_passthrough_body_timeouts_total"),
        0.0
    );
    let mut tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    // Announces 1000 bytes, sends 5, then goes silent.
    tcp.write_all(b"POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: 1000\r\n\r\nhello")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("the answer arrives before the body is complete")
            .unwrap();
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    assert!(
        got.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The rest of the body never comes: the proxy hangs up instead of holding the connection.
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("the connection is closed within the wait")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected end of stream");
    let held = answered.elapsed();
    assert!(
        held >= Duration::from_millis(250),
        "cut after only {held:?}"
    );
    assert_eq!(
        metric(&proxy, "pushbridge_passthrough_body_timeouts_total"),
        1.0
    );
}

#[tokio::test]
async fn trailers_pass_between_an_http1_client_and_an_h2c_app() {
    let app = support::app::serve(|req: Request<Incoming>| async move {
        let te = req
            .headers()
            .get("te")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let version = format!("{:?}", req.version());
        let uploaded = req.into_body().collect().await.unwrap();
        let trailers = uploaded.trailers().cloned().unwrap_or_default();
        let body = format!(
            "{version} te={te} got={}",
            String::from_utf8_lossy(&uploaded.to_bytes())
        );
        let mut out = http::HeaderMap::new();
        out.insert("x-checksum", "abc".parse().unwrap());
        out.insert(
            "x-echo-trailer",
            trailers
                .get("x-client-trailer")
                .cloned()
                .unwrap_or_else(|| "none".parse().unwrap()),
        );
        let frames = vec![
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(body))),
            Ok(hyper::body::Frame::trailers(out)),
        ];
        // An HTTP/1.1 client only gets the trailer fields announced in `Trailer` (hyper's rule, RFC 9110 §6.6.2).
        Response::builder()
            .header("trailer", "x-checksum, x-echo-trailer")
            .body(http_body_util::StreamBody::new(futures_util::stream::iter(
                frames,
            )))
            .unwrap()
    })
    .await;
    let proxy = proxy::start(&format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"http://{app}\"\n  protocol: h2c\n"
    ))
    .await;
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut trailer = http::HeaderMap::new();
    trailer.insert("x-client-trailer", "from-client".parse().unwrap());
    let frames = vec![
        Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(b"payload"))),
        Ok(hyper::body::Frame::trailers(trailer)),
    ];
    let req = Request::post("/rpc")
        .header("host", "app")
        .header("te", "trailers")
        .header("trailer", "x-client-trailer")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let collected = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers reach the HTTP/1.1 client");
    assert_eq!(trailers["x-checksum"], "abc");
    assert_eq!(trailers["x-echo-trailer"], "from-client");
    assert_eq!(collected.to_bytes(), "HTTP/2.0 te=trailers got=payload");
}
