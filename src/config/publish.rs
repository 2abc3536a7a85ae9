//! The `publish:` block (issue 18): the listener on which the application POSTs events to stream routes of
//! `kind: publish`, or of `kind: redis` with `publish: true`. Its rules live in `validate/publish.rs`.

use std::net::SocketAddr;

use serde::Deserialize;

use super::schema::TlsFiles;
use super::units;

/// `publish.max_body`: the largest request body accepted.
pub const DEFAULT_PUBLISH_MAX_BODY: usize = 1024 * 1024;
/// Largest `publish.max_body`.
pub const MAX_PUBLISH_MAX_BODY: usize = 64 * 1024 * 1024;

/// The publish listener.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Socket address to bind, never one of `listen` or `admin` (e.g. `127.0.0.1:9091` or `${POD_IP}:9091`).
    #[serde(deserialize_with = "units::socket_addr")]
    pub address: SocketAddr,
    /// Serve TLS with these PEM files (like `listen[].tls`); absent: plaintext.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// When set, every request needs `Authorization: Bearer <token>` (compared in constant time, never logged).
    #[serde(default, deserialize_with = "units::opt_string")]
    pub token: Option<String>,
    /// Largest request body; larger ones get 413 and nothing is published. 1 byte to 64MiB.
    #[serde(default = "max_body", deserialize_with = "units::size")]
    pub max_body: usize,
}

fn max_body() -> usize {
    DEFAULT_PUBLISH_MAX_BODY
}

/// The token never shows in logs or `Debug` output.
impl std::fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishConfig")
            .field("address", &self.address)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_body", &self.max_body)
            .finish()
    }
}
