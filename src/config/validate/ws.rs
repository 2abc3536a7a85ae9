//! `streams[].ws`: subprotocol names are RFC 6455 tokens (§4.1: RFC 2616 token characters);
//! `subprotocols_upstream: pass` only where one client has one upstream WebSocket, and never with names pushbridge
//! would choose itself.

use super::super::schema::SubprotocolsUpstream;
use super::{Mode, Report, StreamConfig, UpstreamKind, clip};

/// An RFC 2616 token: visible ASCII without separators.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

pub(super) fn rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    if stream.ws.subprotocols_upstream == SubprotocolsUpstream::Pass {
        pass_rules(stream, at, report);
    }
    for name in stream.ws.subprotocols.keys() {
        if !is_token(name) {
            let path = format!("{at}.ws.subprotocols.{name}");
            let place = report.spans.key(&path);
            report.problems.push(super::Problem::at(
                report.file,
                place,
                &path,
                format!(
                    "invalid subprotocol name {:?}: one token such as \"app.v1\" (RFC 6455 §4.1)",
                    clip(name)
                ),
            ));
        }
    }
}

/// `subprotocols_upstream: pass` relays the handshake of the one upstream WebSocket a client has.
fn pass_rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    let path = format!("{at}.ws.subprotocols_upstream");
    if stream.mode != Mode::PerClient {
        report.add(
            &path,
            "pass needs mode: per-client (each client's offer goes to its own upstream handshake)",
        );
    }
    if stream.upstream.kind != UpstreamKind::Ws {
        report.add(
            &path,
            format!(
                "pass needs upstream.kind: ws (the application's WebSocket answers the offer), not {}",
                stream.upstream.kind
            ),
        );
    }
    if !stream.ws.subprotocols.is_empty() {
        report.add(
            &format!("{at}.ws.subprotocols"),
            "cannot be used with ws.subprotocols_upstream: pass (the application selects the subprotocol)",
        );
    }
    if stream.upstream.subprotocol.is_some() {
        report.add(
            &format!("{at}.upstream.subprotocol"),
            "cannot be used with ws.subprotocols_upstream: pass (the client's offer is sent instead)",
        );
    }
}
