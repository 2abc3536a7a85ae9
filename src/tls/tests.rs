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

/// A client config trusting the self-signed `cert`.
fn trusting(cert: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(cert.as_bytes(), Path::new("mem")).unwrap() {
        roots.add(cert).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A server connection from [`accept`], and its client after the handshake as rustls's own connection beside the
/// raw socket, so a test decides which TLS bytes go out and in how many writes.
async fn connected() -> (TlsStream, tokio::net::TcpStream, rustls::ClientConnection) {
    let (cert, key) = self_signed(&["localhost"]).unwrap();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), "mem").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(trusting(&cert)));
    let client = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap().into_inner()
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let server = accept(tcp, tls.server_config()).await.unwrap();
    let (tcp, client) = client.await.unwrap();
    (server, tcp, client)
}

/// The TLS bytes `client` has queued.
fn sealed(client: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut out).unwrap();
    }
    out
}

/// Reads `n` plaintext bytes on the client side.
async fn client_reads(
    tcp: &mut tokio::net::TcpStream,
    client: &mut rustls::ClientConnection,
    n: usize,
) -> Vec<u8> {
    use std::io::Read;
    use tokio::io::AsyncReadExt;
    let mut got = vec![0u8; n];
    let mut at = 0;
    while at < n {
        match client.reader().read(&mut got[at..]) {
            Ok(k) => at += k,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let mut wire = [0u8; 4096];
                let k = tcp.read(&mut wire).await.unwrap();
                assert!(k > 0, "the server ended the socket");
                client.read_tls(&mut &wire[..k]).unwrap();
                client.process_new_packets().unwrap();
            }
            Err(error) => panic!("{error}"),
        }
    }
    got
}

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Data and the close_notify after it, arriving in one read while the socket stays open: the data, then the end,
/// and the server may still answer (a half-close).
#[tokio::test]
async fn data_then_close_notify_in_one_read() {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut server, mut tcp, mut client) = connected().await;
    client.writer().write_all(b"last words").unwrap();
    client.send_close_notify();
    tcp.write_all(&sealed(&mut client)).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, server.read_to_end(&mut got))
        .await
        .expect("the close_notify ends the stream")
        .unwrap();
    assert_eq!(got, b"last words");
    assert_eq!(
        server.read(&mut [0u8; 8]).await.unwrap(),
        0,
        "and stays ended"
    );
    server.write_all(b"reply").await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(client_reads(&mut tcp, &mut client, 5).await, b"reply");
}

/// The socket's end without a close_notify is a truncation, not an end: `UnexpectedEof` after the data, between
/// records or within one, on every read after.
#[tokio::test]
async fn socket_end_without_close_notify_is_unexpected_eof() {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for within_a_record in [false, true] {
        let (mut server, mut tcp, mut client) = connected().await;
        client.writer().write_all(b"cut short").unwrap();
        tcp.write_all(&sealed(&mut client)).await.unwrap();
        let mut got = [0u8; 9];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"cut short");
        if within_a_record {
            client.writer().write_all(b"never whole").unwrap();
            let record = sealed(&mut client);
            tcp.write_all(&record[..record.len() / 2]).await.unwrap();
        }
        tcp.shutdown().await.unwrap();
        for _ in 0..2 {
            let error = tokio::time::timeout(PATIENCE, server.read(&mut [0u8; 8]))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
        }
    }
}

/// Thousands of tiny records sent in one go (each a few bytes, so a socket read holds hundreds and ends within
/// one): every byte arrives once, in order, and nothing is held afterwards.
#[tokio::test]
async fn many_small_records_in_one_buffer() {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut server, mut tcp, mut client) = connected().await;
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    for i in 0..20_000u32 {
        client.writer().write_all(&i.to_be_bytes()).unwrap();
        wire.extend(sealed(&mut client));
        sent.extend_from_slice(&i.to_be_bytes());
    }
    // One record each (5 bytes of header, 17 of content type and tag), hence not a multiple of the read size.
    assert_eq!(wire.len(), 20_000 * 26);
    let writer = tokio::spawn(async move {
        tcp.write_all(&wire).await.unwrap();
        tcp
    });
    let mut got = vec![0u8; sent.len()];
    tokio::time::timeout(PATIENCE, server.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got == sent, "the bytes arrive once each, in order");
    let _tcp = writer.await.unwrap();
    assert_eq!(server.buffered_capacity(), 0);
}

/// After traffic both ways, a connection waiting for its next read holds no buffer of its own.
#[tokio::test]
async fn an_idle_connection_holds_no_buffer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key) = self_signed(&["localhost"]).unwrap();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), "mem").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client_config = trusting(&cert);
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
