//! The configuration schema: one serde struct per YAML mapping, every field documented, every default a named
//! `DEFAULT_*` const (docs/config.md is the same table). Deserialization is strict (`deny_unknown_fields`, no
//! `flatten`); rules serde cannot express live in `validate.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::kinds::{BinaryMode, MapConfig, PollConfig, RedisFields, ResumeConfig, TeeConfig};
use super::passthrough::PassthroughConfig;
use super::route::{RoutePattern, UrlTemplate};
use super::units;

mod process;
mod stream;

pub use process::*;
pub use stream::*;

/// Stream: client transports offered, in order of preference.
pub const DEFAULT_TRANSPORTS: [TransportKind; 3] = [
    TransportKind::Ws,
    TransportKind::Sse,
    TransportKind::LongPoll,
];
/// Stream buffer: events kept for resume.
pub const DEFAULT_BUFFER_EVENTS: usize = 1000;
/// Stream buffer: the oldest event kept for resume.
pub const DEFAULT_BUFFER_AGE: Duration = Duration::from_secs(5 * 60);
/// Stream buffer: the most bytes one stream's events may hold (fields and every encoding).
pub const DEFAULT_BUFFER_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Limits: the most streams (route and path-parameter values, or per-client sessions) the process keeps at once.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;
/// `limits.h2_max_streams_per_connection`.
pub const DEFAULT_H2_MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// `limits.h2_send_buffer`.
pub const DEFAULT_H2_SEND_BUFFER: usize = 16 * 1024;
/// `limits.max_key_bytes`.
pub const DEFAULT_MAX_KEY_BYTES: usize = 256;
/// Limits: how long a key the upstream refused (404/403/410) is answered from memory.
pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(10);
/// Limits: the most keys the negative cache remembers (oldest forgotten first).
pub const NEGATIVE_CACHE_KEYS: usize = 10_000;
/// Limits: the most bytes every stream's buffer may hold together.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 256 * 1024 * 1024;
/// Stream: SSE heartbeat comment / WebSocket ping interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Stream: how long a shared stream with no subscribers stays open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Stream: the event name that tells a client its resume point is gone.
pub const DEFAULT_GAP_EVENT: &str = "pushbridge-gap";
/// SSE: the `retry:` sent to clients while the application sent none.
pub const DEFAULT_SSE_RETRY: Duration = Duration::from_secs(2);
/// SSE: the largest `retry:` passed on to clients (the application's is clamped to it).
pub const DEFAULT_SSE_RETRY_MAX: Duration = Duration::from_secs(60);
/// CORS: request headers a cross-origin page may send (preflight `Access-Control-Allow-Headers`); EventSource
/// polyfills send `cache-control` and `x-requested-with`.
pub const DEFAULT_CORS_ALLOW_HEADERS: [&str; 5] = [
    "last-event-id",
    "content-type",
    "authorization",
    "cache-control",
    "x-requested-with",
];
/// Long-poll: how long a request is held when there is nothing new.
pub const DEFAULT_LONG_POLL_TIMEOUT: Duration = Duration::from_secs(25);
/// Long-poll: most events returned by one response.
pub const DEFAULT_LONG_POLL_MAX_BATCH: usize = 100;
/// Client messages: largest message forwarded to the application.
pub const DEFAULT_CLIENT_MESSAGE_MAX_BYTES: usize = 64 * 1024;
/// Upstream: time allowed to connect to the application's stream.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream: longest silence (no bytes at all) before the connection counts as dead and is reopened.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Upstream reconnect: first backoff delay.
pub const DEFAULT_RECONNECT_INITIAL: Duration = Duration::from_millis(500);
/// Upstream reconnect: largest backoff delay.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Limits: simultaneous client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Limits: events a subscriber may fall behind before it is disconnected.
pub const DEFAULT_CLIENT_QUEUE: usize = 256;
/// Limits: largest upstream event accepted.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Limits: time allowed for a client's TLS handshake and request head.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limits: how long a keep-alive connection with no request in flight is kept.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Limits: HTTP/2 PING interval on a connection the peer has not sent anything on.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Admin: simultaneous admin connections.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 16;
/// Admin: time allowed for a request head, and the longest an idle admin connection is kept.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin: time allowed for the application's health URL to answer.
pub const DEFAULT_READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Shutdown: time allowed for connections to finish after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Log: the tracing filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client listeners; at least one.
    pub listen: Vec<ListenConfig>,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`); none if absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Where requests that match no stream go; absent: such requests are not proxied.
    #[serde(default)]
    pub passthrough: Option<PassthroughConfig>,
    /// The publish listener (the application POSTs events); absent: nothing can publish.
    #[serde(default)]
    pub publish: Option<super::publish::PublishConfig>,
    /// The event streams re-exposed to clients.
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Drain behaviour on SIGTERM.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Deprecated keys the file sets, one `FILE:LINE:COL: key: note` each (logged at start and reload, printed by
    /// `pushbridge check`).
    #[serde(skip)]
    pub deprecated: Vec<String>,
}

/// One client listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Socket address to bind, e.g. `0.0.0.0:8443` or `[::]:8443`.
    #[serde(deserialize_with = "units::socket_addr")]
    pub address: SocketAddr,
    /// Serve TLS with these PEM files; absent: plaintext.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// PEM certificate chain and private key. Relative paths are resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain (PEM), leaf first.
    #[serde(deserialize_with = "units::path")]
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(deserialize_with = "units::path")]
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Socket address to bind (plaintext), e.g. `127.0.0.1:9090` or `${POD_IP}:9090`.
    #[serde(deserialize_with = "units::socket_addr")]
    pub address: SocketAddr,
    /// Simultaneous admin connections; 1 to 1024. At the cap a new one replaces the oldest idle one; it waits in the
    /// kernel's accept queue only while every connection has a request in flight.
    #[serde(default = "d::admin_max_connections")]
    pub max_connections: usize,
    /// Time allowed for a request head, and the longest an idle admin connection is kept; at most 5m.
    #[serde(default = "d::admin_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// The application's health URL (`http(s)://`): `/readyz` is 503 while it does not answer 2xx.
    #[serde(default, deserialize_with = "units::opt_uri")]
    pub ready_check: Option<http::Uri>,
    /// Time allowed for `ready_check` to answer; at most 1m.
    #[serde(
        default = "d::ready_check_timeout",
        deserialize_with = "units::duration"
    )]
    pub ready_check_timeout: Duration,
}

/// One event stream route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Name used in logs and as a metrics label; unique. Default: the path.
    #[serde(default, deserialize_with = "units::non_empty")]
    pub name: String,
    /// Request path: literal segments and whole-segment `{params}`, e.g. `/events/{channel}`; unique.
    pub path: RoutePattern,
    /// The application's stream.
    pub upstream: UpstreamConfig,
    /// `kind: redis` only: POSTs to the publish listener are `XADD`ed to the route's Redis key.
    #[serde(default)]
    pub publish: bool,
    /// One upstream connection per stream key (`shared`) or per client session (`per-client`).
    #[serde(default)]
    pub mode: Mode,
    /// Client transports offered, in order of preference; non-empty, no duplicates.
    #[serde(default = "d::transports")]
    pub transports: Vec<TransportKind>,
    /// The resume buffer.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// SSE heartbeat comment / WebSocket ping interval; more than zero.
    #[serde(default = "d::heartbeat", deserialize_with = "units::duration")]
    pub heartbeat: Duration,
    /// How long a shared stream with no subscribers keeps its upstream connection.
    #[serde(default = "d::idle_timeout", deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    /// SSE/WebSocket event name sent when a client's resume point is no longer buffered.
    #[serde(default = "d::gap_event", deserialize_with = "units::string")]
    pub gap_event: String,
    /// Long-poll behaviour.
    #[serde(default)]
    pub long_poll: LongPollConfig,
    /// WebSocket behaviour.
    #[serde(default)]
    pub ws: WsConfig,
    /// SSE behaviour.
    #[serde(default)]
    pub sse: SseConfig,
    /// CORS for pages on other origins.
    #[serde(default)]
    pub cors: CorsConfig,
    /// Most streams of this route at once (one per path-parameter values, or per client session); further ones
    /// are refused with 503; none: only `limits.max_streams`.
    #[serde(default)]
    pub max_streams: Option<usize>,
    /// Rules per path parameter (`{pattern: REGEX}` and/or `{allow: [..]}`); a value that fails gets 404 before
    /// auth and before any stream exists.
    #[serde(default)]
    pub params: super::params::ParamRules,
    /// Where client → application messages go; absent: they are refused.
    #[serde(default)]
    pub client_messages: Option<ClientMessagesConfig>,
    /// Client credentials: headers forwarded upstream and an optional auth sub-request.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Cross-origin pages allowed (`scheme://host[:port]`, compared lower-case; `"*"`: any origin). Empty: only
    /// pages of pushbridge's own site (the request's host) — cross-site WebSocket hijacking is refused.
    #[serde(default, deserialize_with = "units::string_list")]
    pub origins: Vec<String>,
}

/// The application's stream for one route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http(s)://` URL (also `ws(s)://` for `kind: ws`) that may use the path's `{params}`; required for every
    /// kind but `publish` (absent: empty).
    #[serde(default = "d::no_url")]
    pub url: UrlTemplate,
    /// The upstream protocol.
    #[serde(default)]
    pub kind: UpstreamKind,
    /// `ws`: the WebSocket subprotocol asked for (`Sec-WebSocket-Protocol`).
    #[serde(default, deserialize_with = "units::opt_string")]
    pub subprotocol: Option<String>,
    /// `ws`, `ndjson`, `poll`: JSON pointers to each event's id, name and data; absent: the text is the data.
    #[serde(default)]
    pub map: Option<MapConfig>,
    /// `ws`, `ndjson`, `poll`: how the position to resume from is sent (`{query: NAME}` or `{header: NAME}`).
    #[serde(default)]
    pub resume: Option<ResumeConfig>,
    /// `poll`: the polling rules.
    #[serde(default)]
    pub poll: Option<PollConfig>,
    /// `ws`: what binary messages become (`refuse` or `base64`).
    #[serde(default)]
    pub binary: Option<BinaryMode>,
    /// `redis`: the Redis stream key, which may use the path's `{params}` (one stream per channel).
    #[serde(default)]
    pub key: Option<UrlTemplate>,
    /// `redis`: which entry fields hold the event name and the data (the entry id is the event id).
    #[serde(default)]
    pub fields: Option<RedisFields>,
    /// Any kind but `redis`: also append each event to a Redis stream (the shared log other replicas read).
    #[serde(default)]
    pub tee: Option<TeeConfig>,
    /// Extra CA certificate (PEM) trusted for a TLS upstream.
    #[serde(default, deserialize_with = "units::opt_path")]
    pub ca_file: Option<PathBuf>,
    /// Time allowed to connect.
    #[serde(
        default = "d::upstream_connect_timeout",
        deserialize_with = "units::duration"
    )]
    pub connect_timeout: Duration,
    /// Reconnect backoff after the upstream fails or ends.
    #[serde(default)]
    pub reconnect: BackoffConfig,
    /// Longest silence (no bytes, not even a comment) before the connection counts as dead and is reopened
    /// with `Last-Event-ID`; more than zero. Applications should send a comment heartbeat well within it.
    #[serde(
        default = "d::upstream_idle_timeout",
        deserialize_with = "units::duration"
    )]
    pub idle_timeout: Duration,
}

/// Jittered exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// First delay; more than zero.
    #[serde(deserialize_with = "units::duration")]
    pub initial: Duration,
    /// Largest delay; at least `initial`.
    #[serde(deserialize_with = "units::duration")]
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: DEFAULT_RECONNECT_INITIAL,
            max: DEFAULT_RECONNECT_MAX,
        }
    }
}

/// Client → application messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessagesConfig {
    /// `http(s)://` URL each message is POSTed to (unless the upstream is a WebSocket).
    #[serde(deserialize_with = "units::uri")]
    pub forward: http::Uri,
    /// Largest message accepted; at least 1.
    #[serde(
        default = "d::client_message_max_bytes",
        deserialize_with = "units::size"
    )]
    pub max_bytes: usize,
}

/// Client credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `http(s)://` URL asked (GET, with the forwarded headers) before a client is served or a client message
    /// is forwarded; 2xx admits, 401/403 are passed to the client, anything else is 502.
    #[serde(deserialize_with = "units::opt_uri")]
    pub check: Option<http::Uri>,
    /// Client request headers passed to the check, per-client upstreams and client messages (lower-cased).
    #[serde(deserialize_with = "units::header_name_list")]
    pub forward_headers: Vec<String>,
    /// How long an unused connection to the authorization service is kept; more than zero, at most 1h.
    #[serde(deserialize_with = "units::duration")]
    pub pool_idle_timeout: Duration,
    /// Unused connections to the authorization service kept open (0: none); at most 1024.
    pub pool_max_idle: usize,
}

/// Default `auth.pool_idle_timeout`.
pub const DEFAULT_AUTH_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `auth.pool_max_idle`.
pub const DEFAULT_AUTH_POOL_MAX_IDLE: usize = 8;
/// Largest `auth.pool_idle_timeout`.
pub const MAX_AUTH_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest `auth.pool_max_idle`.
pub const MAX_AUTH_POOL_MAX_IDLE: usize = 1024;

/// Headers forwarded when `auth.forward_headers` is not given.
pub const DEFAULT_FORWARD_HEADERS: [&str; 2] = ["authorization", "cookie"];

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            check: None,
            forward_headers: DEFAULT_FORWARD_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            pool_idle_timeout: DEFAULT_AUTH_POOL_IDLE_TIMEOUT,
            pool_max_idle: DEFAULT_AUTH_POOL_MAX_IDLE,
        }
    }
}

/// Upstream sharing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One upstream connection per (route, key) feeds every subscriber.
    #[default]
    Shared,
    /// One upstream connection per client session, with the client's forwarded headers.
    PerClient,
}

/// A client transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// WebSocket (RFC 6455, or RFC 8441 over HTTP/2).
    Ws,
    /// Server-Sent Events.
    Sse,
    /// JSON long-poll.
    LongPoll,
}

/// The upstream protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamKind {
    /// `text/event-stream`.
    #[default]
    Sse,
    /// WebSocket, one event per text message.
    Ws,
    /// Newline-delimited JSON over a streamed HTTP response, one event per line.
    Ndjson,
    /// Repeated HTTP GETs of a JSON document holding an array of events.
    Poll,
    /// A Redis stream (XREAD), the shared log every replica reads; the entry id is the event id.
    Redis,
    /// No upstream: events come only from POSTs to the publish listener (issue 18).
    Publish,
}

/// The YAML spelling of each enum value, for `Display`, logs and metrics labels.
macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The YAML spelling, e.g. for a metrics label.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(TransportKind { Ws => "ws", Sse => "sse", LongPoll => "long-poll" });
names!(Mode { Shared => "shared", PerClient => "per-client" });
names!(UpstreamKind { Sse => "sse", Ws => "ws", Ndjson => "ndjson", Poll => "poll", Redis => "redis", Publish => "publish" });
names!(WsFormat { Envelope => "envelope", Data => "data" });
names!(WsCompression { Off => "off", Deflate => "deflate" });
names!(SubprotocolsUpstream { Off => "off", Pass => "pass" });
names!(LogFormat { Text => "text", Json => "json" });

impl UpstreamConfig {
    /// An upstream with every optional field at its default.
    pub fn new(url: UrlTemplate) -> Self {
        Self {
            url,
            kind: UpstreamKind::default(),
            subprotocol: None,
            map: None,
            resume: None,
            poll: None,
            binary: None,
            key: None,
            fields: None,
            tee: None,
            ca_file: None,
            connect_timeout: DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
            reconnect: BackoffConfig::default(),
            idle_timeout: DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        }
    }
}

impl StreamConfig {
    /// A stream with every optional field at its default (name = the path), e.g. for the demo.
    pub fn new(path: RoutePattern, upstream: UpstreamConfig) -> Self {
        Self {
            name: path.as_str().to_owned(),
            path,
            upstream,
            publish: false,
            mode: Mode::default(),
            transports: DEFAULT_TRANSPORTS.to_vec(),
            buffer: BufferConfig::default(),
            heartbeat: DEFAULT_HEARTBEAT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            gap_event: DEFAULT_GAP_EVENT.to_owned(),
            long_poll: LongPollConfig::default(),
            ws: WsConfig::default(),
            sse: SseConfig::default(),
            cors: CorsConfig::default(),
            max_streams: None,
            params: Default::default(),
            client_messages: None,
            auth: None,
            origins: Vec::new(),
        }
    }
}

/// `#[serde(default = "…")]` needs functions; each returns the named const above.
mod d {
    use super::*;

    pub fn transports() -> Vec<TransportKind> {
        DEFAULT_TRANSPORTS.to_vec()
    }
    pub fn heartbeat() -> Duration {
        DEFAULT_HEARTBEAT
    }
    pub fn idle_timeout() -> Duration {
        DEFAULT_IDLE_TIMEOUT
    }
    pub fn gap_event() -> String {
        DEFAULT_GAP_EVENT.to_owned()
    }
    pub fn client_message_max_bytes() -> usize {
        DEFAULT_CLIENT_MESSAGE_MAX_BYTES
    }
    pub fn upstream_connect_timeout() -> Duration {
        DEFAULT_UPSTREAM_CONNECT_TIMEOUT
    }
    pub fn admin_max_connections() -> usize {
        DEFAULT_ADMIN_MAX_CONNECTIONS
    }
    pub fn admin_timeout() -> Duration {
        DEFAULT_ADMIN_TIMEOUT
    }
    pub fn ready_check_timeout() -> Duration {
        DEFAULT_READY_CHECK_TIMEOUT
    }
    pub fn upstream_idle_timeout() -> Duration {
        DEFAULT_UPSTREAM_IDLE_TIMEOUT
    }
    pub fn no_url() -> UrlTemplate {
        UrlTemplate::empty()
    }
}
