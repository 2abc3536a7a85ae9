//! Server and client TLS over real sockets: key encodings, ALPN, protocol versions, file errors naming the file,
//! certificate rotation with `ServerTls::reload`, the listener's TLS connection (`pushbridge::tls::accept`) keeping
//! every byte in order through large and fragmented transfers, and session resumption by ticket.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pushbridge::tls::{ServerTls, TlsError, client_config};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion};
use support::certs::{KeyKind, TestCa, first_cert_der};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Accepts TLS on 127.0.0.1:0 as the listener does (`pushbridge::tls::accept`) and echoes whatever each
/// connection sends.
async fn serve(tls: &ServerTls) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tls.server_config();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = pushbridge::tls::accept(tcp, config).await else {
                    return;
                };
                let mut buf = vec![0u8; 20_000];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn connect(
    addr: SocketAddr,
    config: ClientConfig,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn assert_echo(stream: &mut TlsStream<TcpStream>, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, message);
}

fn peer_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn handshake_works_for_every_key_kind() {
    for kind in KeyKind::ALL {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_files(dir.path(), kind);
        let label = match kind {
            KeyKind::EcdsaP256Sec1 => "EC PRIVATE KEY",
            KeyKind::Rsa => "RSA PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let key_pem = std::fs::read_to_string(&key).unwrap();
        assert!(
            key_pem.starts_with(&format!("-----BEGIN {label}-----\n")),
            "{kind:?}: {key_pem}"
        );
        let tls = ServerTls::load(&cert, &key).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let addr = serve(&tls).await;
        for name in ["localhost", "127.0.0.1"] {
            let mut stream = connect(addr, ca.client_config(&[b"h2"]), name)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} as {name}: {e}"));
            assert_eq!(peer_cert(&stream), first_cert_der(&cert), "{kind:?}");
            assert_echo(&mut stream, format!("hello {kind:?}").as_bytes()).await;
        }
    }
}

#[tokio::test]
async fn a_client_of_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = TestCa::new().leaf_files(dir.path(), KeyKind::EcdsaP256);
    let addr = serve(&ServerTls::load(&cert, &key).unwrap()).await;
    let error = connect(addr, TestCa::new().client_config(&[]), "localhost")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn alpn_prefers_h2_and_falls_back_to_http11() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let addr = serve(&ServerTls::load(&cert, &key).unwrap()).await;
    // (protocols the client offers, protocol negotiated)
    type Case = (&'static [&'static [u8]], Option<&'static [u8]>);
    let cases: [Case; 4] = [
        (&[b"h2", b"http/1.1"], Some(b"h2")),
        (&[b"http/1.1", b"h2"], Some(b"h2")),
        (&[b"http/1.1"], Some(b"http/1.1")),
        (&[], None),
    ];
    for (offered, want) in cases {
        let stream = connect(addr, ca.client_config(offered), "localhost")
            .await
            .unwrap();
        assert_eq!(alpn(&stream).as_deref(), want, "offered {offered:?}");
    }
    // RFC 7301 §3.2: no protocol in common is a fatal no_application_protocol alert.
    let error = connect(addr, ca.client_config(&[b"spdy/3"]), "localhost")
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );
}

#[tokio::test]
async fn tls12_and_tls13_both_work() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::Rsa);
    let addr = serve(&ServerTls::load(&cert, &key).unwrap()).await;
    let cases = [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ];
    for (version, want) in cases {
        let config = ca.client_config_versions(&[b"h2"], &[version]);
        let mut stream = connect(addr, config, "localhost").await.unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        assert_eq!(alpn(&stream).as_deref(), Some(&b"h2"[..]));
        assert_echo(&mut stream, b"versions").await;
    }
}

/// A bare ClientHello (no `supported_versions`) with `client_version` and the extensions a TLS 1.2 server needs.
fn legacy_client_hello(client_version: [u8; 2]) -> Vec<u8> {
    let mut body = client_version.to_vec();
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2f, 0xc0, 0x13]); // ECDHE-RSA-AES128-GCM-SHA256, …-CBC-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, // supported_groups: x25519
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x08, 0x04, 0x04,
        0x01, // signature_algorithms: rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// The first record the server answers `hello` with: (content type, first two payload bytes).
async fn first_reply(addr: SocketAddr, hello: &[u8]) -> (u8, [u8; 2]) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut header = [0u8; 7];
    tcp.read_exact(&mut header).await.unwrap();
    (header[0], [header[5], header[6]])
}

/// TLS 1.0 and 1.1 get a fatal `protocol_version` alert; the same hello as TLS 1.2 gets a ServerHello.
#[tokio::test]
async fn tls10_and_tls11_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = TestCa::new().leaf_files(dir.path(), KeyKind::Rsa);
    let addr = serve(&ServerTls::load(&cert, &key).unwrap()).await;
    const ALERT: u8 = 0x15;
    const HANDSHAKE: u8 = 0x16;
    const FATAL_PROTOCOL_VERSION: [u8; 2] = [0x02, 0x46];
    for version in [[0x03, 0x01], [0x03, 0x02]] {
        let reply = first_reply(addr, &legacy_client_hello(version)).await;
        assert_eq!(
            reply,
            (ALERT, FATAL_PROTOCOL_VERSION),
            "client_version {version:?}"
        );
    }
    let (content_type, [handshake_type, _]) =
        first_reply(addr, &legacy_client_hello([0x03, 0x03])).await;
    assert_eq!(
        (content_type, handshake_type),
        (HANDSHAKE, 0x02),
        "TLS 1.2 gets a ServerHello"
    );
}

fn load_error(cert: &Path, key: &Path) -> TlsError {
    match ServerTls::load(cert, key) {
        Ok(_) => panic!("load({cert:?}, {key:?}) succeeded"),
        Err(error) => error,
    }
}

#[test]
fn file_problems_are_errors_naming_the_file() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let missing = dir.path().join("absent.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"\x00\x01 this is not PEM\n").unwrap();

    let error = load_error(&missing, &key);
    assert!(
        matches!(&error, TlsError::ReadCertificate { path, .. } if *path == missing),
        "{error}"
    );
    assert!(error.to_string().starts_with(&format!(
        "cannot read certificate file {}: ",
        missing.display()
    )));

    let error = load_error(&cert, &missing);
    assert!(
        matches!(&error, TlsError::ReadKey { path, .. } if *path == missing),
        "{error}"
    );
    assert!(error.to_string().starts_with(&format!(
        "cannot read private key file {}: ",
        missing.display()
    )));

    for bad in [&empty, &garbage] {
        let error = load_error(bad, &key);
        assert_eq!(
            error.to_string(),
            format!("no certificate found in {}", bad.display())
        );
        let error = load_error(&cert, bad);
        assert_eq!(
            error.to_string(),
            format!("no private key found in {}", bad.display())
        );
    }
}

#[test]
fn a_certificate_with_the_wrong_key_is_refused() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    for (cert_kind, key_kind) in [
        (KeyKind::EcdsaP256, KeyKind::EcdsaP256Sec1),
        (KeyKind::Rsa, KeyKind::EcdsaP256),
        (KeyKind::Ed25519, KeyKind::Ed25519),
    ] {
        let (cert_pem, _) = ca.leaf_pem(cert_kind);
        let (_, key_pem) = ca.leaf_pem(key_kind);
        let cert = dir.path().join("a.crt");
        let key = dir.path().join("a.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let error = load_error(&cert, &key);
        assert_eq!(
            error.to_string(),
            format!(
                "certificate {} does not match private key {}",
                cert.display(),
                key.display()
            ),
            "{cert_kind:?} with {key_kind:?}"
        );
    }
}

#[tokio::test]
async fn reload_rotates_for_new_handshakes_only() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let first = first_cert_der(&cert);
    let tls = ServerTls::load(&cert, &key).unwrap();
    assert_eq!(tls.paths(), Some((cert.as_path(), key.as_path())));
    let addr = serve(&tls).await;
    let mut old = connect(addr, ca.client_config(&[b"h2"]), "localhost")
        .await
        .unwrap();
    assert_eq!(peer_cert(&old), first);

    ca.leaf_files(dir.path(), KeyKind::EcdsaP256Sec1);
    let second = first_cert_der(&cert);
    assert_ne!(first, second);
    tls.reload().unwrap();
    let mut new = connect(addr, ca.client_config(&[b"h2"]), "localhost")
        .await
        .unwrap();
    assert_eq!(peer_cert(&new), second);
    assert_echo(&mut old, b"still here").await;
    assert_echo(&mut new, b"rotated").await;

    // A broken rotation keeps serving the last good certificate.
    let (_, other_key) = ca.leaf_pem(KeyKind::EcdsaP256);
    std::fs::write(&key, other_key).unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
    std::fs::remove_file(&cert).unwrap();
    assert!(matches!(
        tls.reload(),
        Err(TlsError::ReadCertificate { .. })
    ));
    let after = connect(addr, ca.client_config(&[]), "localhost")
        .await
        .unwrap();
    assert_eq!(peer_cert(&after), second);
    assert_echo(&mut old, b"and still").await;
}

#[tokio::test]
async fn upstream_client_config_trusts_the_ca_file() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::Rsa);
    let addr = serve(&ServerTls::load(&cert, &key).unwrap()).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();

    let mut config = client_config(Some(&ca_file)).unwrap();
    assert!(config.alpn_protocols.is_empty());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut stream = connect(addr, config, "localhost").await.unwrap();
    assert_eq!(alpn(&stream).as_deref(), Some(&b"http/1.1"[..]));
    assert_echo(&mut stream, b"upstream").await;

    // Without the CA file only the public roots are trusted.
    let error = connect(addr, client_config(None).unwrap(), "localhost")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");

    let missing = dir.path().join("no-ca.pem");
    let error = client_config(Some(&missing)).unwrap_err();
    assert!(
        matches!(&error, TlsError::ReadCa { path, .. } if *path == missing),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read CA file {}: ", missing.display()))
    );
}

/// The byte at `i` of the test pattern: no short period, so a lost, repeated or moved chunk shows.
fn pattern(i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Writes `len` bytes of the pattern in writes of 1 to 70 000 bytes while reading the echo, and checks every byte.
async fn echo_transfer(stream: TlsStream<TcpStream>, len: usize) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let (mut at, mut size) = (0usize, 1usize);
        while at < len {
            size = (size * 7919 + 13) % 70_000 + 1;
            let end = (at + size).min(len);
            let chunk: Vec<u8> = (at..end).map(pattern).collect();
            wr.write_all(&chunk).await.unwrap();
            at = end;
        }
        wr.flush().await.unwrap();
        wr
    });
    let (mut got, mut buf) = (0usize, vec![0u8; 50_000]);
    while got < len {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0, "the echo ended after {got} of {len} bytes");
        let expected: Vec<u8> = (got..got + n).map(pattern).collect();
        if buf[..n] != expected[..] {
            let at = (0..n).find(|&i| buf[i] != expected[i]).unwrap_or(0);
            panic!("byte {} differs", got + at);
        }
        got += n;
    }
    let _wr = writer.await.unwrap();
}

/// A TCP relay on 127.0.0.1:0 to `server` that forwards both ways in writes of 1 to 7 bytes.
async fn fragmenting_relay(server: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = TcpStream::connect(server).await.unwrap();
            client.set_nodelay(true).unwrap();
            upstream.set_nodelay(true).unwrap();
            let (client_rd, client_wr) = client.into_split();
            let (upstream_rd, upstream_wr) = upstream.into_split();
            tokio::spawn(trickle(client_rd, upstream_wr));
            tokio::spawn(trickle(upstream_rd, client_wr));
        }
    });
    addr
}

async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (mut buf, mut piece) = ([0u8; 4096], 0usize);
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        let mut at = 0;
        while at < n {
            piece = piece % 7 + 1;
            let end = (at + piece).min(n);
            if to.write_all(&buf[at..end]).await.is_err() {
                return;
            }
            at = end;
            tokio::task::yield_now().await;
        }
    }
    let _ = to.shutdown().await;
}

fn test_tls(ca: &TestCa, kind: KeyKind) -> ServerTls {
    let (cert, key) = ca.leaf_pem(kind);
    ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), "test").unwrap()
}

const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_keep_every_byte_in_order() {
    let ca = TestCa::new();
    let addr = serve(&test_tls(&ca, KeyKind::EcdsaP256)).await;
    for version in VERSIONS {
        let config = ca.client_config_versions(&[], &[version]);
        let stream = connect(addr, config, "localhost").await.unwrap();
        echo_transfer(stream, 8 << 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_handshakes_and_records_keep_every_byte_in_order() {
    let ca = TestCa::new();
    let addr = serve(&test_tls(&ca, KeyKind::Rsa)).await;
    let relay = fragmenting_relay(addr).await;
    for version in VERSIONS {
        let config = ca.client_config_versions(&[b"h2"], &[version]);
        let stream = connect(relay, config, "localhost").await.unwrap();
        assert_eq!(alpn(&stream).as_deref(), Some(&b"h2"[..]));
        echo_transfer(stream, 40_000).await;
    }
}

/// One request on a new connection with `config` (read to the end, so the session tickets arrive): how its
/// handshake went.
async fn one_request(addr: SocketAddr, config: &Arc<ClientConfig>) -> rustls::HandshakeKind {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    assert!(response.starts_with(b"HTTP/1.1 "), "an HTTP answer");
    kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_resumes_sessions_by_ticket_even_past_its_session_cache() {
    use rustls::HandshakeKind::{Full, Resumed};
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let proxy = support::binary::started(&format!(
        "listen:\n{}",
        support::certs::tls_listener(&cert, &key)
    ));
    let addr = proxy.addr();
    for version in VERSIONS {
        let config = Arc::new(ca.client_config_versions(&[b"http/1.1"], &[version]));
        assert_eq!(one_request(addr, &config).await, Full, "{version:?}");
        assert_eq!(one_request(addr, &config).await, Resumed, "{version:?}");
    }
    // More sessions than the server's cache holds: a session kept there would be gone; a ticket still resumes.
    let first = Arc::new(ca.client_config(&[b"http/1.1"]));
    assert_eq!(one_request(addr, &first).await, Full);
    let others = Arc::new(ca.client_config(&[b"http/1.1"]));
    for _ in 0..pushbridge::tls::SESSION_CACHE {
        one_request(addr, &others).await;
    }
    assert_eq!(one_request(addr, &first).await, Resumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_through_tls_over_http1_and_http2_intact() {
    use http_body_util::{BodyExt, Full};
    use support::client::{Proto, connect_tls};
    let app = support::app::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(Full::new(body))
    })
    .await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let proxy = support::proxy::start(&format!(
        "listen:\n{}passthrough: {{ upstream: \"http://{app}\" }}\n",
        support::certs::tls_listener(&cert, &key)
    ))
    .await;
    let addr = proxy.addr();
    let body: bytes::Bytes = (0..3 << 20).map(pattern).collect::<Vec<u8>>().into();
    for (proto, alpn) in [(Proto::H1, &b"http/1.1"[..]), (Proto::H2, &b"h2"[..])] {
        let mut sender = connect_tls(addr, ca.client_config(&[alpn]), proto).await;
        let uri = match proto {
            Proto::H1 => "/echo".to_owned(),
            Proto::H2 => format!("https://localhost:{}/echo", addr.port()),
        };
        let req = http::Request::post(uri)
            .header("host", "localhost")
            .body(Full::new(body.clone()).map_err(|e| match e {}).boxed())
            .unwrap();
        let response = sender.send(req).await;
        assert_eq!(response.status(), 200, "{proto:?}");
        let back = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            back == body,
            "{proto:?}: {} bytes back of {}",
            back.len(),
            body.len()
        );
    }
}
