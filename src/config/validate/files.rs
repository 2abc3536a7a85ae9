//! Certificate, key and CA files parsed exactly as `run` parses them (the same `tls` functions), so a non-PEM
//! file, a key that does not match its certificate or an unsupported key fails `check`, located at its field.

use std::path::Path;

use super::{Report, check_readable};
use crate::config::schema::Config;
use crate::tls::{ServerTls, TlsError, client_config};

/// Loads every listener's certificate and key and every CA file (only those that are readable: an unreadable
/// one is already reported).
pub(super) fn check(config: &Config, report: &mut Report<'_>) {
    for (i, listen) in config.listen.iter().enumerate() {
        let Some(tls) = &listen.tls else { continue };
        if check_readable(&tls.cert).is_err() || check_readable(&tls.key).is_err() {
            continue;
        }
        if let Err(error) = ServerTls::load(&tls.cert, &tls.key) {
            let field = if blames_key(&error, &tls.key) {
                "key"
            } else {
                "cert"
            };
            report.add(&format!("listen[{i}].tls.{field}"), error.to_string());
        }
    }
    if let Some(ca) = config.passthrough.as_ref().and_then(|p| p.ca_file.as_ref()) {
        ca_file(report, "passthrough.ca_file", ca);
    }
    for (i, stream) in config.streams.iter().enumerate() {
        if let Some(ca) = &stream.upstream.ca_file {
            ca_file(report, &format!("streams[{i}].upstream.ca_file"), ca);
        }
        if let Some(ca) = stream
            .upstream
            .tee
            .as_ref()
            .and_then(|t| t.ca_file.as_ref())
        {
            ca_file(report, &format!("streams[{i}].upstream.tee.ca_file"), ca);
        }
    }
}

fn ca_file(report: &mut Report<'_>, at: &str, file: &Path) {
    if check_readable(file).is_ok()
        && let Err(error) = client_config(Some(file))
    {
        report.add(at, error.to_string());
    }
}

/// Whether a server TLS error is about the key file rather than the certificate.
fn blames_key(error: &TlsError, key: &Path) -> bool {
    match error {
        TlsError::ReadKey { .. }
        | TlsError::NoPrivateKey { .. }
        | TlsError::UnsupportedKey { .. }
        | TlsError::KeyMismatch { .. } => true,
        TlsError::BadPem { path, .. } => path == key,
        _ => false,
    }
}
