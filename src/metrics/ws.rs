//! Series of client WebSocket sessions: handshakes by extension and subprotocol, relayed-subprotocol failures,
//! payload bytes by compression.

use prometheus::{IntCounter, IntCounterVec};

use super::reg::{Reg, Result};
use super::{
    WS_BUILTIN_SUBPROTOCOLS, WS_EXTENSIONS, WS_PASSED_SUBPROTOCOL, WS_RELAY_FAILURES, WsSent,
};

pub struct WsMetrics {
    /// Client WebSocket handshakes answered, by negotiated extension and subprotocol (`none`: no header).
    pub handshakes: IntCounterVec,
    /// Client WebSocket handshakes of `subprotocols_upstream: pass` routes refused or upstream connections failed
    /// over the application's subprotocol choice, by reason (`WS_RELAY_FAILURES`).
    pub subprotocol_relay_failures: IntCounterVec,
    /// Event payload bytes sent on client WebSockets, by compression (`deflate`: as compressed, `none`).
    pub payload_bytes: IntCounterVec,
    /// What the payloads sent compressed were before compression.
    pub deflate_original_bytes: IntCounter,
    /// `payload_bytes` resolved per label (deflate, none): the write path skips the label lookup.
    payload_by: [IntCounter; 2],
}

impl WsMetrics {
    pub(super) fn new(reg: &Reg) -> Result<WsMetrics> {
        let payload_bytes = reg.counter_vec(
            "pushbridge_ws_payload_bytes_total",
            "Event payload bytes sent on client WebSockets, by compression (deflate: compressed size, none).",
            &["compression"],
        )?;
        let metrics = WsMetrics {
            handshakes: reg.counter_vec(
                "pushbridge_ws_handshakes_total",
                "Client WebSocket handshakes answered, by negotiated extension (permessage-deflate, none) and subprotocol (none: not selected).",
                &["extension", "subprotocol"],
            )?,
            subprotocol_relay_failures: reg.counter_vec(
                "pushbridge_ws_subprotocol_relay_failures_total",
                "ws.subprotocols_upstream: pass: the application's handshake failed or refused (upstream), selected a subprotocol the client did not offer (unoffered), or a reconnection selected another one than the client got (changed).",
                &["reason"],
            )?,
            payload_by: ["deflate", "none"].map(|c| payload_bytes.with_label_values(&[c])),
            payload_bytes,
            deflate_original_bytes: reg.counter(
                "pushbridge_ws_deflate_original_bytes_total",
                "Size before compression of the event payloads sent compressed (ratio: divide by pushbridge_ws_payload_bytes_total{compression=\"deflate\"}).",
            )?,
        };
        for reason in WS_RELAY_FAILURES {
            metrics
                .subprotocol_relay_failures
                .with_label_values(&[reason]);
        }
        for extension in WS_EXTENSIONS {
            for subprotocol in WS_BUILTIN_SUBPROTOCOLS
                .iter()
                .chain(&["none", WS_PASSED_SUBPROTOCOL])
            {
                metrics
                    .handshakes
                    .with_label_values(&[extension, subprotocol]);
            }
        }
        Ok(metrics)
    }

    /// Counts a client WebSocket handshake answered with or without permessage-deflate and a subprotocol (a name
    /// from the route's configuration).
    pub fn handshake(&self, deflate: bool, subprotocol: Option<&str>) {
        let extension = WS_EXTENSIONS[usize::from(!deflate)];
        self.handshakes
            .with_label_values(&[extension, subprotocol.unwrap_or("none")])
            .inc();
    }

    /// Counts a failure of `subprotocols_upstream: pass` (a reason from `WS_RELAY_FAILURES`).
    pub fn subprotocol_relay_failure(&self, reason: &str) {
        self.subprotocol_relay_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts the payload bytes of one WebSocket write batch.
    pub fn sent(&self, sent: WsSent) {
        let [deflated, plain] = &self.payload_by;
        if sent.deflated > 0 {
            deflated.inc_by(sent.deflated);
            self.deflate_original_bytes.inc_by(sent.original);
        }
        if sent.plain > 0 {
            plain.inc_by(sent.plain);
        }
    }
}
