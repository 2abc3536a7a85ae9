//! Rules of publishing (issue 18): the `publish:` listener (its own address, readable TLS files, a usable token,
//! `max_body` in range), `kind: publish` (no `url`, shared mode, no `tee`), `publish: true` only on `kind: redis`,
//! and a publishing route only with a `publish:` listener to publish on.

use super::Report;
use crate::config::publish::MAX_PUBLISH_MAX_BODY;
use crate::config::schema::{Config, Mode, StreamConfig, UpstreamKind};

pub(super) fn rules(config: &Config, report: &mut Report<'_>) {
    if let Some(publish) = &config.publish {
        let port = publish.address.port();
        let clash = config
            .listen
            .iter()
            .position(|l| l.address == publish.address)
            .map(|i| format!("listen[{i}]"))
            .or_else(|| {
                config
                    .admin
                    .as_ref()
                    .filter(|a| a.address == publish.address)
                    .map(|_| "admin".to_owned())
            });
        if let Some(other) = clash.filter(|_| port != 0) {
            report.add(
                "publish.address",
                format!(
                    "{} is also used by {other}: the publish listener needs its own address (plaintext, not reachable by clients)",
                    publish.address
                ),
            );
        }
        if let Some(tls) = &publish.tls {
            report.readable("publish.tls.cert", &tls.cert);
            report.readable("publish.tls.key", &tls.key);
        }
        if let Some(token) = &publish.token {
            let usable = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
            if !usable {
                // Never the token itself in a message.
                report.add(
                    "publish.token",
                    "must be non-empty visible ASCII without spaces (it is sent as `Authorization: Bearer <token>`)",
                );
            }
        }
        if publish.max_body == 0 {
            report.add("publish.max_body", "must be at least 1");
        } else if publish.max_body > MAX_PUBLISH_MAX_BODY {
            report.add("publish.max_body", "must be at most 64MiB");
        }
    }
    for (i, stream) in config.streams.iter().enumerate() {
        route(config, stream, &format!("streams[{i}]"), report);
    }
}

fn route(config: &Config, stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    let kind = stream.upstream.kind;
    if stream.publish && kind != UpstreamKind::Redis {
        let why = if kind == UpstreamKind::Publish {
            "a kind: publish route always takes POSTs: remove `publish: true`".to_owned()
        } else {
            format!(
                "`publish: true` is for kind: redis routes (a POST becomes an XADD every replica reads); a kind: {kind} \
                 route gets its events from its upstream only: publish to a kind: publish route, or to a kind: redis \
                 route with `publish: true`"
            )
        };
        report.add(&format!("{at}.publish"), why);
    }
    let publishes = stream.publish || kind == UpstreamKind::Publish;
    if publishes && config.publish.is_none() {
        let key = if kind == UpstreamKind::Publish {
            format!("{at}.upstream.kind")
        } else {
            format!("{at}.publish")
        };
        report.add(
            &key,
            "events are published with POSTs to the publish listener: add the top-level `publish: { address: ... }`",
        );
    }
    if kind != UpstreamKind::Publish {
        if stream.upstream.url.is_empty() {
            report.add(
                &format!("{at}.upstream.url"),
                format!("kind: {kind} needs the upstream `url`"),
            );
        }
        return;
    }
    if !stream.upstream.url.is_empty() {
        report.add(
            &format!("{at}.upstream.url"),
            "kind: publish has no upstream: events come from POSTs to the publish listener (remove `url`)",
        );
    }
    if stream.mode == Mode::PerClient {
        report.add(
            &format!("{at}.mode"),
            "kind: publish streams are shared by every subscriber of a key (mode: per-client has no upstream to open per client)",
        );
    }
    if stream.upstream.tee.is_some() {
        report.add(
            &format!("{at}.upstream.tee"),
            "to share published events between replicas, use kind: redis with `publish: true` instead of kind: publish with `tee`",
        );
    }
}
