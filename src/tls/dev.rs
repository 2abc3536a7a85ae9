//! Throw-away certificates for the `demo` subcommand (never for production).

use super::TlsError;

/// A self-signed certificate for `names` (DNS names or IP addresses, e.g. `["localhost", "127.0.0.1"]`) with a
/// fresh ECDSA P-256 key, as `(cert_pem, key_pem)`; the key is PKCS#8.
pub fn self_signed(names: &[&str]) -> Result<(String, String), TlsError> {
    let owned: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let certified =
        rcgen::generate_simple_self_signed(owned).map_err(|e| TlsError::SelfSigned {
            names: names.join(", "),
            reason: e.to_string(),
        })?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}
