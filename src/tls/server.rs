//! The listener's TLS: a PEM certificate chain and private key (RSA PKCS#1, SEC1 ECDSA, PKCS#8), ALPN `h2` and
//! `http/1.1` (RFC 7301), served through a resolver whose certificate [`ServerTls::reload`] swaps for new
//! handshakes while open connections keep theirs (cert-manager rotation); session resumption (RFC 8446 §2.2) by
//! rotating tickets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys, ServerConfig};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject};

use super::{ALPN_H2, ALPN_HTTP11, PROTOCOL_VERSIONS, TlsError, parse_certs, pem_reason, provider};

/// Sessions the resumption cache holds (oldest evicted first): its memory is bounded whatever clients do.
pub const SESSION_CACHE: usize = 256;

/// Server TLS for one listener. Clones share the certificate, so a reload through any clone reaches all.
#[derive(Clone, Debug)]
pub struct ServerTls {
    current: Arc<CurrentCert>,
    config: Arc<ServerConfig>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl ServerTls {
    /// Reads and checks the certificate chain and key files.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let certified = load_files(cert, key)?;
        let mut tls = Self::with_key(certified, cert)?;
        tls.paths = Some((cert.to_owned(), key.to_owned()));
        Ok(tls)
    }

    /// From PEM already in memory (the demo's generated certificate); `label` stands for the path in errors.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], label: &str) -> Result<ServerTls, TlsError> {
        let label = Path::new(label);
        Self::with_key(certified_key(cert_pem, key_pem, label, label)?, label)
    }

    fn with_key(certified: CertifiedKey, label: &Path) -> Result<ServerTls, TlsError> {
        let current = Arc::new(CurrentCert(ArcSwap::from_pointee(certified)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TlsError::Config {
                path: label.to_owned(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        // Resumption: stateless tickets (TLS 1.2 and 1.3) under keys that rotate every 6 hours (the previous key
        // still accepted), and for TLS 1.2 clients without tickets a session cache of a fixed size.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config {
            path: label.to_owned(),
            reason: e.to_string(),
        })?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(ServerTls {
            current,
            config: Arc::new(config),
            paths: None,
        })
    }

    /// An acceptor for the listener; every acceptor shares the reloadable certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// The rustls config behind [`ServerTls::acceptor`].
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Re-reads the files given to [`ServerTls::load`] and serves them to new handshakes. On error the old
    /// certificate stays in service and the error is returned. A no-op for [`ServerTls::from_pem`].
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Some((cert, key)) = &self.paths {
            let certified = load_files(cert, key)?;
            self.current.0.store(Arc::new(certified));
        }
        Ok(())
    }

    /// The certificate and key paths, when loaded from files.
    pub fn paths(&self) -> Option<(&Path, &Path)> {
        self.paths
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    /// The certificate chain and key new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.0.load_full()
    }
}

/// The resolver: whatever certificate is current, whatever the client hello says.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn load_files(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCertificate {
        path: cert.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    certified_key(&cert_pem, &key_pem, cert, key)
}

/// Parses the chain and key and checks that the key belongs to the first certificate.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certs(cert_pem, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key_path.to_owned(),
        },
        other => TlsError::BadPem {
            path: key_path.to_owned(),
            reason: pem_reason(&other),
        },
    })?;
    let signing_key =
        provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Unlike `CertifiedKey::from_der`, a key whose public half is unknown is refused, not waved through.
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        Err(RustlsError::InconsistentKeys(_)) => Err(TlsError::UnsupportedKey {
            path: key_path.to_owned(),
            reason: "cannot check that it matches the certificate".to_owned(),
        }),
        Err(other) => Err(TlsError::InvalidCertificate {
            path: cert_path.to_owned(),
            reason: other.to_string(),
        }),
    }
}
