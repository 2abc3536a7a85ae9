//! TLS set-up with rustls and its `ring` provider, always passed explicitly (never a process-wide default);
//! TLS 1.2 and 1.3 only.
//!
//! - [`server`]: the listener's certificate from PEM files, ALPN `h2`, `http/1.1`, hot reload for rotation.
//! - [`client`]: upstream `https` client config (webpki roots plus an optional CA file).
//! - [`dev`]: self-signed certificates for the `demo` subcommand.
//! - [`expiry`]: a certificate's notAfter, for the expiry gauge.
//! - [`stream`]: the listener's TLS connections, through rustls's unbuffered API (no buffer held while idle).
//!
//! Every [`TlsError`] names the file it is about, so an operator can fix the right one.

mod client;
mod dev;
mod expiry;
mod server;
mod stream;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{self, PemObject};

pub use client::client_config;
pub use dev::self_signed;
pub use expiry::not_after;
pub use server::{SESSION_CACHE, ServerTls};
pub use stream::{TlsStream, accept};

/// ALPN protocol id of HTTP/2 (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1 (RFC 7301 §6).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The protocol versions pushbridge speaks, both directions.
pub(crate) static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A certificate, key or CA file that cannot be used; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {}: {source}", path.display())]
    ReadCertificate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read private key file {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read CA file {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid PEM in {}: {reason}", path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("no certificate found in {}", path.display())]
    NoCertificate { path: PathBuf },
    #[error("invalid certificate in {}: {reason}", path.display())]
    InvalidCertificate { path: PathBuf, reason: String },
    #[error("no private key found in {}", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("unsupported private key in {}: {reason}", path.display())]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error("certificate {} does not match private key {}", cert.display(), key.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration for {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("cannot generate a self-signed certificate for {names}: {reason}")]
    SelfSigned { names: String, reason: String },
}

/// The one crypto provider used everywhere.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in `pem`, in file order; `path` names the source in errors.
pub(crate) fn parse_certs(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            reason: pem_reason(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A short, readable reason for a PEM syntax error (the library's `Display` prints raw byte arrays).
pub(crate) fn pem_reason(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(e) => format!("bad base64: {e}"),
        pem::Error::SectionTooLarge => "PEM section too large".to_owned(),
        other => other.to_string(),
    }
}
