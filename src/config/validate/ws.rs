//! `streams[].ws`: subprotocol names are RFC 6455 tokens (§4.1: RFC 2616 token characters).

use super::{Report, StreamConfig, clip};

/// An RFC 2616 token: visible ASCII without separators.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

pub(super) fn rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
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
