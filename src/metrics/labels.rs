//! Closed label sets that other modules hand to [`super::Metrics`]: they live here, below every user, so the
//! metrics module imports nothing that imports it.

/// Why a watched connection is closed (`pushbridge_connections_closed_total{reason}`; the listeners' watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// No first request within the deadline.
    HandshakeTimeout,
    /// Nothing in flight for the idle time.
    Idle,
    /// More than the direct path's bound of bytes sent while an SSE stream was open (nothing reads them).
    UnexpectedBytes,
    /// Idle on a full admin listener: closed to make room for a new connection.
    Evicted,
}

impl Close {
    pub const ALL: [Close; 4] = [
        Close::HandshakeTimeout,
        Close::Idle,
        Close::UnexpectedBytes,
        Close::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Close::HandshakeTimeout => "handshake_timeout",
            Close::Idle => "idle",
            Close::UnexpectedBytes => "unexpected_bytes",
            Close::Evicted => "evicted",
        }
    }
}

/// Why a pass-through WebSocket session ends: `pushbridge_passthrough_websocket_closes_total{reason}`.
pub const CLOSE_REASONS: [&str; 6] = ["client", "app", "idle", "drain", "too_big", "error"];

/// Every `result` label of `pushbridge_published_total`.
pub const PUBLISH_RESULTS: [&str; 8] = [
    "ok",
    "bad_request",
    "unauthorized",
    "too_large",
    "unavailable",
    "duplicate",
    "not_found",
    "method_not_allowed",
];

/// The `extension` label of `pushbridge_ws_handshakes_total`: what a client WebSocket session negotiated.
pub const WS_EXTENSIONS: [&str; 2] = ["permessage-deflate", "none"];
/// Subprotocols every route knows (`subprotocol` label; a route's own names are added as they are selected).
pub const WS_BUILTIN_SUBPROTOCOLS: [&str; 2] = ["pushbridge.envelope.v1", "pushbridge.data.v1"];
/// `subprotocol` label of a name the application selected (`ws.subprotocols_upstream: pass`): names come from
/// clients, so they are never labels.
pub const WS_PASSED_SUBPROTOCOL: &str = "passed";
/// `reason` of `pushbridge_ws_subprotocol_relay_failures_total`.
pub const WS_RELAY_FAILURES: [&str; 3] = ["upstream", "unoffered", "changed"];

/// Event payload bytes one WebSocket write batch sent (`pushbridge_ws_payload_bytes_total`).
#[derive(Debug, Default, Clone, Copy)]
pub struct WsSent {
    /// Sent uncompressed.
    pub plain: u64,
    /// Sent compressed (as on the wire).
    pub deflated: u64,
    /// What the compressed ones were before compression.
    pub original: u64,
}
