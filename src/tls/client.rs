//! Client TLS for `https` upstreams: the webpki roots plus, when configured, the certificates of a PEM CA file.

use std::path::Path;

use rustls::{ClientConfig, RootCertStore};

use super::{PROTOCOL_VERSIONS, TlsError, parse_certs, provider};

/// A client config trusting the webpki roots and `ca_file`'s certificates. No ALPN: callers set it.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let label = ca_file.unwrap_or(Path::new("upstream client"));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
            path: path.to_owned(),
            source,
        })?;
        for cert in parse_certs(&pem, path)? {
            roots.add(cert).map_err(|e| TlsError::InvalidCertificate {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config {
            path: label.to_owned(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
