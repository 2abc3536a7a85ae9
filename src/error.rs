//! Error types at module boundaries, tagged by the side at fault (client, upstream, internal); URL redaction for
//! their text is [`crate::redact`] (re-exported here).

pub use crate::redact::{redact, redact_text, redact_urls};

use std::net::SocketAddr;
use std::time::Duration;

/// Which side caused an error (also a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// Why an upstream session failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot build request: {0}")]
    Request(String),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("unexpected status {0}")]
    Status(http::StatusCode),
    #[error("unexpected content type {0:?} (want text/event-stream)")]
    ContentType(String),
    #[error("stream broke: {0}")]
    Body(String),
    #[error("silent for {0:?} (no bytes, not even a comment): reconnecting")]
    Silent(Duration),
}

impl UpstreamError {
    pub fn side(&self) -> Side {
        match self {
            UpstreamError::Request(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid stream route {route}: {message}")]
    Route { route: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("pass-through: {0}")]
    Passthrough(String),
}

/// An error and its sources on one line (`a: b: c`), with any URL in it redacted ([`redact_urls`]).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    redact_urls(&text)
}
