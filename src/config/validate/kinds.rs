//! Rules for the upstream-kind options: each key only with the kinds that use it, `resume` names exactly one
//! place and has an upstream id (or a poll cursor) to send, and a poll `cursor` has a `resume` parameter to
//! travel back in.

use super::Report;
use crate::config::schema::{StreamConfig, UpstreamKind};
use crate::config::units::clip;

pub(super) fn kind_rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    let up = &stream.upstream;
    let kind = up.kind;
    let at = format!("{at}.upstream");
    let mut only = |present: bool, key: &str, kinds: &[UpstreamKind]| {
        if present && !kinds.contains(&kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            report.add(
                &format!("{at}.{key}"),
                format!(
                    "`{key}` is only used with kind: {} (this upstream is kind: {kind})",
                    names.join(" or ")
                ),
            );
        }
    };
    const JSON: &[UpstreamKind] = &[UpstreamKind::Ws, UpstreamKind::Ndjson, UpstreamKind::Poll];
    only(up.subprotocol.is_some(), "subprotocol", &[UpstreamKind::Ws]);
    only(up.binary.is_some(), "binary", &[UpstreamKind::Ws]);
    only(up.poll.is_some(), "poll", &[UpstreamKind::Poll]);
    only(up.map.is_some(), "map", JSON);
    only(up.resume.is_some(), "resume", JSON);
    only(up.key.is_some(), "key", &[UpstreamKind::Redis]);
    only(up.fields.is_some(), "fields", &[UpstreamKind::Redis]);
    redis_rules(stream, &at, report);

    if let Some(protocol) = &up.subprotocol
        && !super::ws::is_token(protocol)
    {
        report.add(
            &format!("{at}.subprotocol"),
            format!(
                "invalid subprotocol {:?}: one token such as \"v1.feed\" (RFC 6455 §4.1)",
                clip(protocol)
            ),
        );
    }
    if let Some(resume) = &up.resume {
        match (&resume.query, &resume.header) {
            (Some(_), Some(_)) | (None, None) => report.add(
                &format!("{at}.resume"),
                "give exactly one of `query: NAME` and `header: NAME`",
            ),
            (Some(query), None) if query.trim().is_empty() => {
                report.add(&format!("{at}.resume.query"), "must not be empty")
            }
            (None, Some(header)) if http::HeaderName::from_bytes(header.as_bytes()).is_err() => {
                report.add(
                    &format!("{at}.resume.header"),
                    format!("invalid header name {:?}", clip(header)),
                )
            }
            _ => {}
        }
    }
    // The resume position is an event id; ids the hub generates mean nothing to the upstream.
    let upstream_ids = up.map.as_ref().is_some_and(|m| m.id.is_some());
    let cursor = up.poll.as_ref().is_some_and(|p| p.cursor.is_some());
    if up.resume.is_some() && JSON.contains(&kind) && !upstream_ids && !cursor {
        let needs = if kind == UpstreamKind::Poll {
            "`map.id` or `poll.cursor`"
        } else {
            "`map.id`"
        };
        report.add(
            &format!("{at}.resume"),
            format!("the position sent is the newest event id, but events get no id from the upstream: add {needs}"),
        );
    }
    if kind == UpstreamKind::Poll
        && up.resume.is_none()
        && up.poll.as_ref().is_some_and(|p| p.cursor.is_some())
    {
        report.add(
            &format!("{at}.poll.cursor"),
            "the cursor has no parameter to be sent back in: add `resume: { query: NAME }` or `resume: { header: NAME }`",
        );
    }
}

/// `redis`: a `key` whose params are the path's; `tee`: only on other kinds, a `redis(s)://` URL, bounds at least 1.
fn redis_rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    let up = &stream.upstream;
    let params_known =
        |template: &crate::config::UrlTemplate, path: &str, report: &mut Report<'_>| {
            for name in template.params() {
                if !stream.path.params().any(|p| p == name) {
                    report.add(
                        path,
                        format!(
                            "{{{name}}} is not a parameter of the path {}",
                            stream.path.as_str()
                        ),
                    );
                }
            }
        };
    match &up.key {
        Some(key) => params_known(key, &format!("{at}.key"), report),
        None if up.kind == UpstreamKind::Redis => report.add(
            &format!("{at}.key"),
            "kind: redis needs the stream `key`, e.g. \"events:{channel}\"",
        ),
        None => {}
    }
    if let Some(fields) = &up.fields {
        for (name, value) in [("event", &fields.event), ("data", &fields.data)] {
            if value.is_empty() {
                report.add(&format!("{at}.fields.{name}"), "must not be empty");
            }
        }
    }
    let Some(tee) = &up.tee else { return };
    if up.kind == UpstreamKind::Redis {
        report.add(
            &format!("{at}.tee"),
            "`tee` writes another kind's events into Redis; a kind: redis upstream already reads them from there",
        );
    }
    report.url(&format!("{at}.tee.url"), &tee.url, &["redis", "rediss"]);
    params_known(&tee.key, &format!("{at}.tee.key"), report);
    for (name, value) in [("maxlen", tee.maxlen), ("queue", tee.queue)] {
        if value == 0 {
            report.add(&format!("{at}.tee.{name}"), "must be at least 1");
        }
    }
}
