//! Server and client TLS over real sockets: key encodings, ALPN, protocol versions, file errors naming the file,
//! and certificate rotation with `ServerTls::reload`.

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

/// Accepts TLS on 127.0.0.1:0 and echoes whatever each connection sends.
async fn serve(tls: &ServerTls) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.acceptor();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
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
