//! A stream route's behaviour blocks: `buffer`, `long_poll`, `ws`, `sse` and `cors`.

use std::time::Duration;

use serde::Deserialize;

use super::*;

/// The per-stream resume buffer: bounded by count and by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Most events kept; at least 1.
    pub events: usize,
    /// Oldest event kept; more than zero.
    #[serde(deserialize_with = "units::duration")]
    pub age: Duration,
    /// Most bytes the events may hold (fields and every wire encoding); the oldest are evicted first; at least 1.
    #[serde(deserialize_with = "units::size")]
    pub max_bytes: usize,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            events: DEFAULT_BUFFER_EVENTS,
            age: DEFAULT_BUFFER_AGE,
            max_bytes: DEFAULT_BUFFER_MAX_BYTES,
        }
    }
}

/// Long-poll behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LongPollConfig {
    /// How long a request is held when there is nothing new; more than zero.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Most events in one response; at least 1.
    pub max_batch: usize,
    /// Answer `callback=` requests with JSONP (for very old browsers).
    pub jsonp: bool,
    /// Acknowledges that JSONP bypasses `origins` (a `<script>` include sends no `Origin`); required for `jsonp`
    /// on a route with an `origins` list other than `["*"]`.
    pub jsonp_ignores_origins: bool,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_LONG_POLL_TIMEOUT,
            max_batch: DEFAULT_LONG_POLL_MAX_BATCH,
            jsonp: false,
            jsonp_ignores_origins: false,
        }
    }
}

/// WebSocket behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Text frame payload per event (for a client that selected no known subprotocol).
    pub format: WsFormat,
    /// permessage-deflate (RFC 7692) for clients that offer it.
    pub compression: WsCompression,
    /// `Sec-WebSocket-Protocol` names a client may select, and the payload each gets; added to (and overriding)
    /// [`BUILTIN_SUBPROTOCOLS`].
    pub subprotocols: std::collections::BTreeMap<String, WsFormat>,
    /// `pass`: the application's WebSocket upstream chooses the subprotocol (a `mode: per-client` route whose
    /// upstream is `kind: ws`); exclusive with `subprotocols` and `upstream.subprotocol`.
    pub subprotocols_upstream: SubprotocolsUpstream,
}

/// Who selects a client's WebSocket subprotocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubprotocolsUpstream {
    /// pushbridge, from `ws.subprotocols` and the built-in names.
    #[default]
    Off,
    /// The application: the client's offer goes to the upstream handshake, its choice comes back in the 101.
    Pass,
}

/// Subprotocol names every WebSocket route knows (the JS client asks for the first).
pub const BUILTIN_SUBPROTOCOLS: [(&str, WsFormat); 2] = [
    ("pushbridge.envelope.v1", WsFormat::Envelope),
    ("pushbridge.data.v1", WsFormat::Data),
];

impl WsConfig {
    /// The payload format of subprotocol `name`, when the route knows it.
    pub fn subprotocol(&self, name: &str) -> Option<WsFormat> {
        self.subprotocols.get(name).copied().or_else(|| {
            BUILTIN_SUBPROTOCOLS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
        })
    }
}

/// WebSocket compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WsCompression {
    /// Never negotiate an extension.
    #[default]
    Off,
    /// permessage-deflate, each event compressed once for every subscriber.
    Deflate,
}

/// WebSocket text frame payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WsFormat {
    /// `{"id":"…","event":"…","data":"…"}`.
    #[default]
    Envelope,
    /// The event's data alone.
    Data,
}

/// SSE behaviour: the `retry:` clients get (WHATWG HTML §9.2: how long a browser waits before reconnecting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// `retry:` while the application sent none; the application's own `retry:` replaces it. Both are kept
    /// within `upstream.reconnect.initial` and `retry_max`.
    #[serde(deserialize_with = "units::duration")]
    pub retry: Duration,
    /// Largest `retry:` sent to clients; at least `retry`.
    #[serde(deserialize_with = "units::duration")]
    pub retry_max: Duration,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            retry: DEFAULT_SSE_RETRY,
            retry_max: DEFAULT_SSE_RETRY_MAX,
        }
    }
}

/// CORS for SSE and long-poll requests from pages on other origins (allowed by `origins`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Request headers a page may send (the preflight's `Access-Control-Allow-Headers`; lower-cased).
    #[serde(deserialize_with = "units::header_name_list")]
    pub allow_headers: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_headers: DEFAULT_CORS_ALLOW_HEADERS.map(str::to_owned).to_vec(),
        }
    }
}
