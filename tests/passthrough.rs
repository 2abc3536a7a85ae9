//! Pass-through proxy: real upstream hyper servers on 127.0.0.1:0, real hyper clients (HTTP/1.1, h2c, raw bytes).
//! The proxy under test is the real server (`support::proxy`).

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushbridge::config::PassthroughConfig;
use pushbridge::{Body, BoxError, full_body};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(5);

fn config(upstream: &str) -> PassthroughConfig {
    let mut cfg = PassthroughConfig::new(upstream.parse().unwrap());
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.response_timeout = Duration::from_secs(5);
    cfg
}

/// Starts the real pushbridge server (HTTP/1.1 and h2c on 127.0.0.1:0) with `cfg` as its pass-through.
async fn serve(cfg: PassthroughConfig) -> SocketAddr {
    serve_with(cfg, "").await
}

/// [`serve`] with more `passthrough:` keys (`extra`, indented by two spaces).
async fn serve_with(cfg: PassthroughConfig, extra: &str) -> SocketAddr {
    let mut yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\npassthrough:\n  upstream: \"{}\"\n  connect_timeout: {}ms\n  response_timeout: {}ms\n",
        cfg.upstream,
        cfg.connect_timeout.as_millis(),
        cfg.response_timeout.as_millis()
    );
    if let Some(ca) = &cfg.ca_file {
        yaml.push_str(&format!("  ca_file: \"{}\"\n", ca.display()));
    }
    yaml.push_str(extra);
    let proxy = support::proxy::start(&yaml).await;
    let addr = proxy.addr();
    // The server lives as long as the test's runtime.
    std::mem::forget(proxy);
    addr
}

/// An upstream on 127.0.0.1:0 answering with `handler`.
async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    support::app::serve(handler).await
}

/// Upstream handler: describes the request it got as JSON.
async fn describe(req: Request<Incoming>) -> Response<Body> {
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let head = json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut described = head;
    described["body"] = json!(String::from_utf8_lossy(&body));
    Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "yes")
        .body(full_body(described.to_string()))
        .unwrap()
}

/// All values the upstream saw for header `name`.
fn seen(described: &Value, name: &str) -> Vec<String> {
    described["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

/// Sends one request over a fresh HTTP/1.1 connection.
async fn send<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap()
}

async fn body_json(resp: Response<Incoming>) -> Value {
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    serde_json::from_slice(&body.to_bytes()).unwrap()
}

async fn body_text(resp: Response<Incoming>) -> String {
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

/// Writes `request` raw, reads until the peer closes (send `Connection: close`).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn get_round_trips_query_and_headers_under_path_prefix() {
    let up = upstream(describe).await;
    let proxy = serve(config(&format!("http://{up}/base/"))).await;
    let req = Request::get("/items/7?q=a%20b&x=1")
        .header("host", "app.example")
        .header("x-custom", "one")
        .header("accept", "application/json")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send(proxy, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let got = body_json(resp).await;
    assert_eq!(got["method"], "GET");
    assert_eq!(got["uri"], "/base/items/7?q=a%20b&x=1");
    assert_eq!(got["version"], "HTTP/1.1");
    assert_eq!(seen(&got, "host"), ["app.example"]);
    assert_eq!(seen(&got, "x-custom"), ["one"]);
    assert_eq!(seen(&got, "accept"), ["application/json"]);
}

#[tokio::test]
async fn post_bodies_stream_both_ways() {
    // The upstream echoes the request body as it arrives.
    let up = upstream(|req: Request<Incoming>| async move {
        Response::new(req.into_body().map_err(BoxError::from).boxed_unsync())
    })
    .await;
    let proxy = serve(config(&format!("http://{up}"))).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    }));
    let req = Request::post("/echo")
        .header("host", "app.example")
        .body(body)
        .unwrap();
    let resp = send(proxy, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut resp_body = resp.into_body();
    for chunk in ["first chunk", "second chunk"] {
        tx.send(Bytes::from(chunk)).await.unwrap();
        // `tx` is still open: the request body is not complete, yet its echo has arrived.
        let frame = tokio::time::timeout(WAIT, resp_body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), chunk);
    }
    drop(tx);
    let end = tokio::time::timeout(WAIT, resp_body.frame()).await.unwrap();
    assert!(end.is_none(), "response must end with the request body");
}

#[tokio::test]
async fn hop_by_hop_headers_dropped_both_ways() {
    let up = upstream(|req: Request<Incoming>| async move {
        let mut resp = describe(req).await;
        let headers = resp.headers_mut();
        for (name, value) in [
            ("connection", "x-resp-secret"),
            ("x-resp-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("trailer", "x-checksum"),
            ("upgrade", "h2c"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        resp
    })
    .await;
    let proxy = serve(config(&format!("http://{up}"))).await;
    let req = Request::get("/hop")
        .header("host", "app.example")
        .header("connection", "x-secret")
        .header("x-secret", "s3cret")
        .header("keep-alive", "300")
        .header("upgrade", "foo/1")
        .header("te", "gzip, trailers")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("proxy-connection", "keep-alive")
        .header("x-kept", "yes")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send(proxy, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    for name in [
        "x-resp-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "upgrade",
    ] {
        assert!(!resp.headers().contains_key(name), "client saw {name}");
    }
    // Not hop-by-hop in RFC 9110: an HTTP/1.1 client needs it to get trailer fields.
    assert_eq!(resp.headers()["trailer"], "x-checksum");
    assert!(
        resp.headers()
            .get("connection")
            .is_none_or(|v| v != "x-resp-secret"),
        "client saw the upstream's Connection"
    );
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let got = body_json(resp).await;
    for name in [
        "x-secret",
        "keep-alive",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(seen(&got, name).is_empty(), "upstream saw {name}");
    }
    // `TE` is hop-by-hop, but its `trailers` token is sent on (gRPC needs it); nothing else of it.
    assert_eq!(seen(&got, "te"), ["trailers"]);
    // hyper's client may add its own `connection: keep-alive`, never the client's value.
    assert!(
        !seen(&got, "connection")
            .iter()
            .any(|v| v.contains("x-secret"))
    );
    assert_eq!(seen(&got, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn x_forwarded_headers_replace_what_an_untrusted_client_sent() {
    let up = upstream(describe).await;
    let proxy = serve(config(&format!("http://{up}"))).await;

    let req = Request::get("/fwd")
        .header("host", "app.example:8080")
        .header("x-forwarded-for", "203.0.113.5")
        .header("x-forwarded-proto", "gopher")
        .header("x-forwarded-host", "spoofed.example")
        .header("x-real-ip", "203.0.113.5")
        .header("forwarded", "for=203.0.113.5")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let got = body_json(send(proxy, req).await).await;
    assert_eq!(seen(&got, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&got, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen(&got, "x-forwarded-host"), ["app.example:8080"]);
    assert_eq!(seen(&got, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen(&got, "forwarded"), Vec::<String>::new());
    assert_eq!(seen(&got, "host"), ["app.example:8080"]);
}

#[tokio::test]
async fn x_forwarded_headers_of_a_trusted_proxy_are_extended() {
    let up = upstream(describe).await;
    let proxy = serve_with(
        config(&format!("http://{up}")),
        "  trusted_proxies: [10.0.0.0/8, 127.0.0.1]\n",
    )
    .await;
    let req = Request::get("/fwd")
        .header("host", "app.example:8080")
        .header("x-forwarded-for", "203.0.113.5")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "203.0.113.5")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let got = body_json(send(proxy, req).await).await;
    assert_eq!(seen(&got, "x-forwarded-for"), ["203.0.113.5, 127.0.0.1"]);
    assert_eq!(seen(&got, "x-forwarded-proto"), ["https"]);
    assert_eq!(seen(&got, "x-real-ip"), ["203.0.113.5"]);
    assert_eq!(seen(&got, "x-forwarded-host"), ["app.example:8080"]);

    let req = Request::get("/fwd")
        .header("host", "app.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let got = body_json(send(proxy, req).await).await;
    assert_eq!(seen(&got, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&got, "x-real-ip"), ["127.0.0.1"]);
}

#[tokio::test]
async fn rfc7239_forwarded_alone_or_with_x_forwarded() {
    let up = upstream(describe).await;
    let only = serve_with(config(&format!("http://{up}")), "  forwarded: rfc7239\n").await;
    let req = Request::get("/fwd")
        .header("host", "app.example:8080")
        .header("forwarded", "for=203.0.113.5;proto=https")
        .header("x-forwarded-for", "203.0.113.5")
        .header("x-real-ip", "203.0.113.5")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let got = body_json(send(only, req).await).await;
    assert_eq!(
        seen(&got, "forwarded"),
        ["for=127.0.0.1;proto=http;host=\"app.example:8080\""]
    );
    for absent in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    ] {
        assert_eq!(seen(&got, absent), Vec::<String>::new(), "{absent}");
    }

    let both = serve_with(
        config(&format!("http://{up}")),
        "  forwarded: both\n  trusted_proxies: [\"127.0.0.0/8\"]\n",
    )
    .await;
    let req = Request::get("/fwd")
        .header("host", "app.example")
        .header("forwarded", "for=203.0.113.5;proto=https")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let got = body_json(send(both, req).await).await;
    assert_eq!(
        seen(&got, "forwarded"),
        ["for=203.0.113.5;proto=https, for=127.0.0.1;proto=http;host=app.example"]
    );
    assert_eq!(seen(&got, "x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn upstream_refused_is_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = serve(config(&format!("http://{closed}"))).await;
    let req = Request::get("/x")
        .header("host", "app.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send(proxy, req).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        body_text(resp).await,
        "bad gateway: upstream refused connection\n"
    );
}

#[tokio::test]
async fn silent_upstream_is_504_after_response_timeout() {
    // Accepts connections and reads requests but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
            });
        }
    });
    let mut cfg = config(&format!("http://{silent}"));
    cfg.response_timeout = Duration::from_millis(300);
    let proxy = serve(cfg).await;
    let started = Instant::now();
    let req = Request::get("/slow")
        .header("host", "app.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send(proxy, req).await;
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(body_text(resp).await.starts_with("gateway timeout:"));
}

/// An upstream that counts the requests it gets.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = upstream(move |req| {
        counter.fetch_add(1, Ordering::SeqCst);
        describe(req)
    })
    .await;
    (addr, hits)
}

#[tokio::test]
async fn connect_is_405() {
    let (up, hits) = counting_upstream().await;
    let proxy = serve(config(&format!("http://{up}"))).await;
    let response = raw(
        proxy,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("\r\nallow: "),
        "{response}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn trace_is_405() {
    let (up, hits) = counting_upstream().await;
    let proxy = serve(config(&format!("http://{up}"))).await;
    let response = raw(
        proxy,
        "TRACE /anything HTTP/1.1\r\nHost: app.example\r\nCookie: secret=1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("\r\nallow: "), "{response}");
    assert!(!lower.contains("secret"), "{response}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn absolute_form_is_400() {
    let (up, hits) = counting_upstream().await;
    let proxy = serve(config(&format!("http://{up}"))).await;
    let response = raw(
        proxy,
        "GET http://other.example/secret HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(
        response.ends_with("bad request: absolute-form request target\n"),
        "{response}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn h2c_request_forwarded_as_http11_with_host_from_authority() {
    let up = upstream(describe).await;
    let proxy = serve(config(&format!("http://{up}"))).await;
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://h2.example:8443/h2/path?q=1")
        .version(Version::HTTP_2)
        .header("x-custom", "h2")
        .body(full_body("h2 body"))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let got = body_json(resp).await;
    assert_eq!(got["version"], "HTTP/1.1");
    assert_eq!(got["method"], "POST");
    assert_eq!(got["uri"], "/h2/path?q=1");
    assert_eq!(got["body"], "h2 body");
    assert_eq!(seen(&got, "host"), ["h2.example:8443"]);
    assert_eq!(seen(&got, "x-forwarded-host"), ["h2.example:8443"]);
    assert_eq!(seen(&got, "x-custom"), ["h2"]);
}

/// An HTTPS upstream on 127.0.0.1:0 serving `describe` with a fresh self-signed certificate; returns the address
/// and the certificate's PEM (to trust it as `ca_file`).
async fn tls_upstream() -> (SocketAddr, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (cert_pem, key_pem) = pushbridge::tls::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let conn = hyper::server::conn::http1::Builder::new();
                let _ = conn
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(|req| async { Ok::<_, Infallible>(describe(req).await) }),
                    )
                    .await;
            });
        }
    });
    (addr, cert_pem)
}

#[tokio::test]
async fn https_upstream_trusted_via_ca_file() {
    let (up, cert_pem) = tls_upstream().await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), cert_pem).unwrap();
    let mut cfg = config(&format!("https://{up}/tls"));
    cfg.ca_file = Some(ca.path().to_owned());
    let proxy = serve(cfg).await;
    let req = Request::get("/x?y=1")
        .header("host", "app.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send(proxy, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let got = body_json(resp).await;
    assert_eq!(got["uri"], "/tls/x?y=1");
    assert_eq!(seen(&got, "host"), ["app.example"]);
}

#[tokio::test]
async fn https_upstream_untrusted_is_502() {
    let (up, _) = tls_upstream().await;
    let proxy = serve(config(&format!("https://{up}"))).await;
    let req = Request::get("/x")
        .header("host", "app.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send(proxy, req).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        body_text(resp).await,
        "bad gateway: upstream TLS handshake failed\n"
    );
}
