//! Unit tests of the TLS set-up; handshakes over sockets live in `tests/tls.rs`.

use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, contents: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn self_signed_pair_loads() {
    let (cert, key) = self_signed(&["localhost", "127.0.0.1"]).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), "demo").unwrap();
    assert!(tls.paths().is_none());
    tls.reload().unwrap();
    let config = tls.server_config();
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn self_signed_refuses_a_bad_name() {
    let error = self_signed(&["naïve.example"]).unwrap_err();
    assert!(matches!(error, TlsError::SelfSigned { .. }), "{error}");
}

#[test]
fn mismatched_key_is_an_error() {
    let (cert, _) = self_signed(&["localhost"]).unwrap();
    let (_, other_key) = self_signed(&["localhost"]).unwrap();
    let error = ServerTls::from_pem(cert.as_bytes(), other_key.as_bytes(), "mem").unwrap_err();
    assert_eq!(
        error.to_string(),
        "certificate mem does not match private key mem"
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&["localhost"]).unwrap();
    let cert_path = write(dir.path(), "tls.crt", cert.as_bytes());
    let key_path = write(dir.path(), "tls.key", key.as_bytes());
    let missing = dir.path().join("missing.pem");
    let garbage = write(dir.path(), "garbage.pem", b"hello, not PEM at all\n");
    let broken = write(
        dir.path(),
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let unterminated = write(
        dir.path(),
        "open.pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n",
    );
    let bad_key = write(
        dir.path(),
        "bad.key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let bad_cert = write(
        dir.path(),
        "bad.crt",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let d = |p: &Path| p.display().to_string();
    let cases: Vec<(&Path, &Path, String)> = vec![
        (
            &missing,
            &key_path,
            format!("cannot read certificate file {}: ", d(&missing)),
        ),
        (
            &cert_path,
            &missing,
            format!("cannot read private key file {}: ", d(&missing)),
        ),
        (
            &garbage,
            &key_path,
            format!("no certificate found in {}", d(&garbage)),
        ),
        (
            &key_path,
            &key_path,
            format!("no certificate found in {}", d(&key_path)),
        ),
        (
            &cert_path,
            &garbage,
            format!("no private key found in {}", d(&garbage)),
        ),
        (
            &cert_path,
            &cert_path,
            format!("no private key found in {}", d(&cert_path)),
        ),
        (
            &broken,
            &key_path,
            format!("invalid PEM in {}: bad base64", d(&broken)),
        ),
        (
            &cert_path,
            &unterminated,
            format!("invalid PEM in {}: a PEM section", d(&unterminated)),
        ),
        (
            &cert_path,
            &bad_key,
            format!("unsupported private key in {}: ", d(&bad_key)),
        ),
        (
            &bad_cert,
            &key_path,
            format!("invalid certificate in {}: ", d(&bad_cert)),
        ),
    ];
    for (cert, key, want) in cases {
        let got = ServerTls::load(cert, key).unwrap_err().to_string();
        assert!(
            got.starts_with(&want),
            "load({cert:?}, {key:?}): got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn reload_keeps_the_old_certificate_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&["localhost"]).unwrap();
    let cert_path = write(dir.path(), "tls.crt", cert.as_bytes());
    let key_path = write(dir.path(), "tls.key", key.as_bytes());
    let tls = ServerTls::load(&cert_path, &key_path).unwrap();
    assert_eq!(tls.paths(), Some((cert_path.as_path(), key_path.as_path())));
    let before = tls.current().cert[0].clone();

    write(dir.path(), "tls.key", b"");
    let error = tls.reload().unwrap_err();
    assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error}");
    assert_eq!(tls.current().cert[0], before);

    let (cert2, key2) = self_signed(&["localhost"]).unwrap();
    write(dir.path(), "tls.crt", cert2.as_bytes());
    write(dir.path(), "tls.key", key2.as_bytes());
    tls.reload().unwrap();
    assert_ne!(tls.current().cert[0], before);
}

#[test]
fn client_config_reads_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(&["localhost"]).unwrap();
    let ca = write(dir.path(), "ca.pem", cert.as_bytes());
    let config = client_config(Some(&ca)).unwrap();
    assert!(config.alpn_protocols.is_empty());
    client_config(None).unwrap();

    let missing = dir.path().join("nope.pem");
    let error = client_config(Some(&missing)).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("cannot read CA file {}: ", missing.display())),
        "{error}"
    );
    let empty = write(dir.path(), "empty.pem", b"");
    let error = client_config(Some(&empty)).unwrap_err().to_string();
    assert_eq!(
        error,
        format!("no certificate found in {}", empty.display())
    );
}

/// After traffic both ways, a connection waiting for its next read holds no buffer of its own.
#[tokio::test]
async fn an_idle_connection_holds_no_buffer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key) = self_signed(&["localhost"]).unwrap();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), "mem").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(cert.as_bytes(), Path::new("mem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(&[7u8; 100_000]).await.unwrap();
        tls.flush().await.unwrap();
        let mut back = vec![0u8; 100_000];
        tls.read_exact(&mut back).await.unwrap();
        assert!(back.iter().all(|&b| b == 8));
        tls
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut server = accept(tcp, tls.server_config()).await.unwrap();
    let mut got = vec![0u8; 100_000];
    server.read_exact(&mut got).await.unwrap();
    assert!(got.iter().all(|&b| b == 7));
    server.write_all(&[8u8; 100_000]).await.unwrap();
    server.flush().await.unwrap();
    let _client = client.await.unwrap();
    // Nothing more comes: the read waits, and nothing is held for it.
    let mut one = [0u8; 1];
    let waiting = std::future::poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut one);
        let poll = tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut server), cx, &mut buf);
        std::task::Poll::Ready(poll.is_pending())
    })
    .await;
    assert!(waiting, "the read waits");
    assert_eq!(server.buffered_capacity(), 0);
}
