//! Rules serde cannot express: non-zero limits, ranges (`limits`) and duration floors (`floors`), unique
//! stream names and paths, URL params that exist in the path, usable URLs, readable TLS files. Every rule reports
//! into one list, so all problems come out at once, each located at the offending value through [`Spans`].

mod passthrough;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::errors::Problem;
use super::schema::{Config, Mode, StreamConfig, TransportKind, UpstreamKind};
use super::spans::Spans;
use super::units::clip;

mod files;
mod floors;
mod kinds;
mod limits;
mod publish;
mod ws;

/// Paths under this prefix are served by pushbridge itself (the JS client).
pub const RESERVED_PREFIX: &str = "/_pushbridge";

/// Collects located problems.
struct Report<'a> {
    file: &'a str,
    spans: &'a Spans,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        let at = self.spans.value(path);
        self.problems
            .push(Problem::at(self.file, at, path, message));
    }

    fn positive(&mut self, path: &str, value: Duration) {
        if value.is_zero() {
            self.add(path, "must be more than zero");
        }
    }

    fn at_least_one(&mut self, path: &str, value: usize) {
        if value == 0 {
            self.add(path, "must be at least 1");
        }
    }

    fn readable(&mut self, path: &str, file: &Path) {
        if let Err(message) = check_readable(file) {
            self.add(path, message);
        }
    }

    fn url(&mut self, path: &str, uri: &http::Uri, schemes: &[&str]) {
        if let Err(message) = check_url(uri, schemes) {
            self.add(path, message);
        }
    }
}

/// Every problem with an already deserialized (and normalized) configuration, in file order.
pub fn validate(config: &Config, file: &str, spans: &Spans) -> Vec<Problem> {
    let mut report = Report {
        file,
        spans,
        problems: Vec::new(),
    };
    listeners(config, &mut report);
    if let Some(pass) = &config.passthrough {
        passthrough::rules(pass, &mut report);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut shapes: HashMap<String, usize> = HashMap::new();
    for (i, stream) in config.streams.iter().enumerate() {
        let at = format!("streams[{i}]");
        if let Some(&first) = names.get(stream.name.as_str()) {
            report.add(
                &format!("{at}.name"),
                format!(
                    "name {:?} is also used by streams[{first}]",
                    clip(&stream.name)
                ),
            );
        } else {
            names.insert(&stream.name, i);
        }
        if let Some(&first) = shapes.get(&stream.path.shape()) {
            let other = config.streams.get(first).map_or("", |s| s.path.as_str());
            report.add(
                &format!("{at}.path"),
                format!("path matches the same requests as streams[{first}] ({other})"),
            );
        } else {
            shapes.insert(stream.path.shape(), i);
        }
        stream_rules(stream, &at, &mut report);
    }
    publish::rules(config, &mut report);
    limits::check(config, &mut report);
    floors::check(config, &mut report);
    files::check(config, &mut report);
    if config.log.level.trim().is_empty() {
        report.add("log.level", "must not be empty (e.g. \"info\")");
    } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.log.level) {
        report.add(
            "log.level",
            format!("invalid log filter {:?}: {e}", clip(&config.log.level)),
        );
    }
    let mut problems = report.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

fn listeners(config: &Config, report: &mut Report<'_>) {
    if config.listen.is_empty() {
        report.add("listen", "at least one listener is required");
    }
    let mut seen = HashMap::new();
    for (i, listen) in config.listen.iter().enumerate() {
        // Port 0 asks the OS for a free port, so it never clashes.
        if listen.address.port() != 0
            && let Some(first) = seen.get(&listen.address)
        {
            report.add(
                &format!("listen[{i}].address"),
                format!("{} is also used by listen[{first}]", listen.address),
            );
        } else {
            seen.insert(listen.address, i);
        }
        if let Some(tls) = &listen.tls {
            report.readable(&format!("listen[{i}].tls.cert"), &tls.cert);
            report.readable(&format!("listen[{i}].tls.key"), &tls.key);
        }
    }
    if let Some(admin) = &config.admin
        && admin.address.port() != 0
        && let Some(first) = seen.get(&admin.address)
    {
        let message = format!("{} is also used by listen[{first}]", admin.address);
        report.add("admin.address", message);
    }
}

fn stream_rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    let path = stream.path.as_str();
    if path == RESERVED_PREFIX || path.starts_with(&format!("{RESERVED_PREFIX}/")) {
        report.add(
            &format!("{at}.path"),
            format!("paths under {RESERVED_PREFIX}/ are reserved for pushbridge"),
        );
    }
    upstream_rules(stream, at, report);
    if stream.transports.is_empty() {
        report.add(
            &format!("{at}.transports"),
            "at least one transport is required (ws, sse, long-poll)",
        );
    }
    if stream.mode == Mode::PerClient
        && let Some(i) = stream
            .transports
            .iter()
            .position(|t| *t == TransportKind::LongPoll)
    {
        report.add(
            &format!("{at}.transports[{i}]"),
            "long-poll cannot be used with mode: per-client (a per-client upstream lives as long as one client connection)",
        );
    }
    kinds::kind_rules(stream, at, report);
    ws::rules(stream, at, report);
    for (i, kind) in stream.transports.iter().enumerate() {
        if stream.transports[..i].contains(kind) {
            report.add(
                &format!("{at}.transports[{i}]"),
                format!("{kind} is listed twice"),
            );
        }
    }
    report.at_least_one(&format!("{at}.buffer.events"), stream.buffer.events);
    report.positive(&format!("{at}.buffer.age"), stream.buffer.age);
    report.positive(&format!("{at}.heartbeat"), stream.heartbeat);
    if stream.gap_event.is_empty() || stream.gap_event.contains(['\r', '\n']) {
        report.add(
            &format!("{at}.gap_event"),
            "must be a non-empty event name without line breaks",
        );
    }
    report.positive(&format!("{at}.sse.retry_max"), stream.sse.retry_max);
    if stream.sse.retry > stream.sse.retry_max {
        report.add(
            &format!("{at}.sse.retry"),
            format!("must be at most sse.retry_max ({:?})", stream.sse.retry_max),
        );
    }
    report.at_least_one(&format!("{at}.buffer.max_bytes"), stream.buffer.max_bytes);
    if let Some(max) = stream.max_streams {
        report.at_least_one(&format!("{at}.max_streams"), max);
    }
    for (name, rule) in &stream.params {
        let here = format!("{at}.params.{name}");
        if !stream.path.params().any(|p| p == name) {
            report.add(
                &here,
                format!(
                    "{{{name}}} is not a parameter of path {:?}",
                    stream.path.as_str()
                ),
            );
        }
        match &rule.allow {
            None if rule.pattern.is_none() => report.add(&here, "give pattern, allow or both"),
            Some(allow) if allow.is_empty() => {
                report.add(&format!("{here}.allow"), "must list at least one value");
            }
            Some(allow) if allow.len() > super::params::MAX_ALLOW => report.add(
                &format!("{here}.allow"),
                format!("must list at most {} values", super::params::MAX_ALLOW),
            ),
            _ => {}
        }
    }
    report.positive(&format!("{at}.long_poll.timeout"), stream.long_poll.timeout);
    report.at_least_one(
        &format!("{at}.long_poll.max_batch"),
        stream.long_poll.max_batch,
    );
    if let Some(messages) = &stream.client_messages {
        report.url(
            &format!("{at}.client_messages.forward"),
            &messages.forward,
            &["http", "https"],
        );
        report.at_least_one(
            &format!("{at}.client_messages.max_bytes"),
            messages.max_bytes,
        );
    }
    if let Some(auth) = &stream.auth {
        if let Some(check) = &auth.check {
            report.url(&format!("{at}.auth.check"), check, &["http", "https"]);
        }
        let idle_at = format!("{at}.auth.pool_idle_timeout");
        report.positive(&idle_at, auth.pool_idle_timeout);
        if auth.pool_idle_timeout > super::schema::MAX_AUTH_POOL_IDLE_TIMEOUT {
            report.add(&idle_at, "must be at most 1h");
        }
        if auth.pool_max_idle > super::schema::MAX_AUTH_POOL_MAX_IDLE {
            report.add(
                &format!("{at}.auth.pool_max_idle"),
                format!("must be at most {}", super::schema::MAX_AUTH_POOL_MAX_IDLE),
            );
        }
    }
    for (i, origin) in stream.origins.iter().enumerate() {
        if let Err(message) = check_origin(origin) {
            report.add(&format!("{at}.origins[{i}]"), message);
        }
    }
    let any_origin = stream.origins.iter().any(|o| o == "*");
    if any_origin && stream.origins.len() > 1 {
        report.add(
            &format!("{at}.origins"),
            "\"*\" admits every origin: list it alone",
        );
    }
    if stream.long_poll.jsonp
        && !stream.origins.is_empty()
        && !any_origin
        && !stream.long_poll.jsonp_ignores_origins
    {
        report.add(
            &format!("{at}.long_poll.jsonp"),
            "JSONP bypasses origins (a <script> include sends no Origin, so any site can read the route): \
             set long_poll.jsonp_ignores_origins: true to accept that, or turn JSONP off",
        );
    }
}

fn upstream_rules(stream: &StreamConfig, at: &str, report: &mut Report<'_>) {
    let upstream = &stream.upstream;
    let url_at = format!("{at}.upstream.url");
    // No URL (kind: publish, or missing): `publish::rules` says what is wrong.
    let mut complete = !upstream.url.is_empty();
    for name in upstream.url.params() {
        if !stream.path.params().any(|p| p == name) {
            complete = false;
            report.add(
                &url_at,
                format!(
                    "{{{name}}} is not a parameter of the path {}",
                    stream.path.as_str()
                ),
            );
        }
    }
    if complete {
        let sample: Vec<(String, String)> = stream
            .path
            .params()
            .map(|p| (p.to_owned(), "x".to_owned()))
            .collect();
        let schemes: &[&str] = match upstream.kind {
            UpstreamKind::Ws => &["http", "https", "ws", "wss"],
            UpstreamKind::Redis => &["redis", "rediss"],
            _ => &["http", "https"],
        };
        match upstream.url.render(&sample) {
            Ok(uri) => report.url(&url_at, &uri, schemes),
            Err(message) => report.add(&url_at, message),
        }
    }
    if let Some(ca) = &upstream.ca_file {
        report.readable(&format!("{at}.upstream.ca_file"), ca);
    }
    if let Some(ca) = upstream.tee.as_ref().and_then(|tee| tee.ca_file.as_ref()) {
        report.readable(&format!("{at}.upstream.tee.ca_file"), ca);
    }
    report.positive(
        &format!("{at}.upstream.idle_timeout"),
        upstream.idle_timeout,
    );
    report.positive(
        &format!("{at}.upstream.connect_timeout"),
        upstream.connect_timeout,
    );
    let backoff = &upstream.reconnect;
    report.positive(&format!("{at}.upstream.reconnect.initial"), backoff.initial);
    if backoff.max < backoff.initial {
        report.add(
            &format!("{at}.upstream.reconnect.max"),
            "must be at least `initial`",
        );
    }
}

/// The file exists, is a regular file and can be opened for reading (its contents are the user's concern).
fn check_readable(file: &Path) -> Result<(), String> {
    let shown = file.display();
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a file"));
    }
    std::fs::File::open(file)
        .map(drop)
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

/// An absolute URL with one of `schemes` and a host.
fn check_url(uri: &http::Uri, schemes: &[&str]) -> Result<(), String> {
    let scheme = uri.scheme_str().unwrap_or("");
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(format!(
            "URL {:?} must start with {}://",
            clip(&crate::redact::redact(uri)),
            schemes.join("://, ")
        ));
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "URL {:?} has no host",
            clip(&crate::redact::redact(uri))
        )),
    }
}

/// `scheme://host[:port]` as browsers send it in `Origin` (RFC 6454 §7), or `*`; already lower-cased.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let bad = || {
        format!(
            "invalid origin {:?}: expected scheme://host[:port], e.g. \"https://app.example.com\"",
            clip(origin)
        )
    };
    let uri: http::Uri = origin.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri
        .path_and_query()
        .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/");
    if scheme_ok && uri.host().is_some_and(|h| !h.is_empty()) && bare && !origin.contains('@') {
        Ok(())
    } else {
        Err(bad())
    }
}
