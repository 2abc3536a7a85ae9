//! The process-wide parts of the schema: `limits`, `shutdown` and `log`.

use std::time::Duration;

use serde::Deserialize;

use super::*;

/// Resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Simultaneous client connections; at least 1.
    pub max_connections: usize,
    /// Events a subscriber may fall behind before it is disconnected; at least 1.
    pub client_queue: usize,
    /// Largest upstream event accepted; at least 1.
    #[serde(deserialize_with = "units::size")]
    pub max_event_bytes: usize,
    /// Time from accept to a connection's first request (TLS handshake included), for every later request
    /// head, and for an HTTP/2 PING answer; more than zero.
    #[serde(deserialize_with = "units::duration")]
    pub handshake_timeout: Duration,
    /// How long a keep-alive connection with no request in flight is kept (streams in progress are in flight).
    #[serde(deserialize_with = "units::duration")]
    pub idle_connection_timeout: Duration,
    /// HTTP/2 PING interval on a silent connection; a PING unanswered within `handshake_timeout` closes it.
    #[serde(deserialize_with = "units::duration")]
    pub keepalive_interval: Duration,
    /// Most bytes every stream's resume buffer may hold together; at least 1.
    #[serde(deserialize_with = "units::size")]
    pub max_buffer_bytes: usize,
    /// Most streams at once (each opens its own upstream connection); further ones are refused with 503; at
    /// least 1.
    pub max_streams: usize,
    /// How long a key the upstream answered 404, 403 or 410 is remembered: new requests for it get that status at
    /// once, without a stream or an upstream request; 0: off; at most 5m.
    #[serde(deserialize_with = "units::duration")]
    pub negative_cache_ttl: Duration,
    /// Deprecated, no effect (events go out in natural batches; docs/config.md): still loads, with a warning.
    pub wake_pacing: Option<WakePacingConfig>,
    /// Streams one HTTP/2 connection may have open at once (announced in SETTINGS; h2 refuses more with
    /// REFUSED_STREAM); 1 to 1000.
    pub h2_max_streams_per_connection: u32,
    /// Bytes buffered per HTTP/2 stream for a client that does not read (hyper's send buffer); 1KiB to 1MiB.
    #[serde(deserialize_with = "units::size")]
    pub h2_send_buffer: usize,
    /// Longest stream key (the bytes of a stream route's path parameters): longer gets 414; 1 to 64KiB.
    #[serde(deserialize_with = "units::size")]
    pub max_key_bytes: usize,
}

/// The former wake pacing (deprecated, ignored): still parsed and validated so existing files load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WakePacingConfig {
    /// Subscribers from which a stream is paced; at least 1.
    pub from: usize,
    /// Pace per subscriber; 0: never paced; at most 1s.
    #[serde(deserialize_with = "units::duration")]
    pub per_subscriber: Duration,
    /// Longest pace; more than zero, at most 10s.
    #[serde(deserialize_with = "units::duration")]
    pub max: Duration,
}

impl Default for WakePacingConfig {
    fn default() -> Self {
        Self {
            from: 1000,
            per_subscriber: Duration::from_micros(10),
            max: Duration::from_millis(100),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            client_queue: DEFAULT_CLIENT_QUEUE,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
            max_streams: DEFAULT_MAX_STREAMS,
            negative_cache_ttl: DEFAULT_NEGATIVE_CACHE_TTL,
            wake_pacing: None,
            h2_max_streams_per_connection: DEFAULT_H2_MAX_STREAMS_PER_CONNECTION,
            h2_send_buffer: DEFAULT_H2_SEND_BUFFER,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
        }
    }
}

/// Drain behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Time allowed for connections to finish after SIGTERM before exit.
    #[serde(deserialize_with = "units::duration")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Tracing filter, e.g. `info` or `pushbridge=debug,info`.
    #[serde(deserialize_with = "units::string")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
