//! Configuration loading through the public API, on real files in temporary directories: the shipped
//! example, located errors (file:line:col and field path), file checks, `${ENV}` expansion and defaults.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pushbridge::config::{
    Config, ConfigError, LogFormat, Mode, TransportKind, UpstreamKind, WsFormat,
};

/// Writes `text` as `config.yaml` in a fresh temporary directory.
fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn load_err(path: &Path) -> ConfigError {
    match Config::load(path) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

fn example_text() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")).unwrap()
}

/// A real certificate and key in `dir/tls/` (the config loader parses them as `run` does).
fn dummy_tls(dir: &Path) {
    fs::create_dir_all(dir.join("tls")).unwrap();
    support::certs::TestCa::new().leaf_files(&dir.join("tls"), support::certs::KeyKind::EcdsaP256);
}

#[test]
fn the_example_loads() {
    let (dir, path) = write_config(&example_text());
    dummy_tls(dir.path());
    let config = Config::load(&path).unwrap();

    assert_eq!(config.listen.len(), 2);
    let tls = config.listen[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert, dir.path().join("tls/tls.crt"));
    assert_eq!(tls.key, dir.path().join("tls/tls.key"));
    assert_eq!(config.listen[1].tls, None);
    assert_eq!(config.admin.unwrap().address.port(), 9090);
    assert_eq!(
        config.passthrough.unwrap().upstream,
        "http://127.0.0.1:8081/"
    );

    let stream = &config.streams[0];
    assert_eq!(stream.name, "events");
    assert_eq!(stream.path.as_str(), "/events/{channel}");
    assert_eq!(stream.upstream.kind, UpstreamKind::Sse);
    assert_eq!(stream.mode, Mode::Shared);
    assert_eq!(
        stream.transports,
        [
            TransportKind::Ws,
            TransportKind::Sse,
            TransportKind::LongPoll
        ]
    );
    assert_eq!(stream.ws.format, WsFormat::Envelope);
    assert_eq!(
        stream.client_messages.as_ref().unwrap().max_bytes,
        64 * 1024
    );
    assert_eq!(
        stream.auth.as_ref().unwrap().forward_headers,
        ["authorization", "cookie"]
    );
    assert_eq!(stream.origins, ["https://app.example.com"]);
    assert_eq!(config.limits.max_event_bytes, 1 << 20);
    assert_eq!(config.log.format, LogFormat::Json);

    let params = stream.path.matches("/events/news").unwrap();
    let url = stream.upstream.url.render(&params).unwrap();
    assert_eq!(url, "http://127.0.0.1:8082/internal/events/news");
    // The copy compiled into the binary is the same file.
    assert_eq!(pushbridge::config::EXAMPLE_YAML, example_text());
}

#[test]
fn every_example_line_is_commented() {
    for (n, line) in example_text().lines().enumerate() {
        let trimmed = line.trim();
        let commented = trimmed.is_empty() || trimmed.starts_with('#');
        let previous_is_comment = n > 0
            && example_text()
                .lines()
                .nth(n - 1)
                .is_some_and(|l| l.trim().starts_with('#'));
        assert!(
            commented || previous_is_comment,
            "line {} has no comment above it: {line}",
            n + 1
        );
    }
}

#[test]
fn an_unknown_key_names_file_line_column_and_path() {
    let (_dir, path) = write_config(
        "listen:\n  - address: 127.0.0.1:0\nstreams:\n  - path: /s\n    upstream: { url: http://a/ }\n    hartbeat: 15s\n",
    );
    let err = load_err(&path);
    let text = err.to_string();
    let want = format!(
        "{}:6:5: streams[0].hartbeat: unknown field `hartbeat`",
        path.display()
    );
    assert!(text.starts_with(&want), "{text}");
}

#[test]
fn a_bad_duration_names_the_field() {
    let (_dir, path) = write_config(
        "listen:\n  - address: 127.0.0.1:0\nstreams:\n  - path: /s\n    upstream: { url: http://a/ }\n    heartbeat: 15 parsecs\n",
    );
    let err = load_err(&path);
    assert_eq!(err.problems.len(), 1);
    let p = &err.problems[0];
    assert_eq!(
        (p.line, p.column, p.path.as_str()),
        (6, 16, "streams[0].heartbeat")
    );
    assert!(
        p.message.starts_with("invalid duration \"15 parsecs\""),
        "{}",
        p.message
    );
    assert_eq!(p.file, path.display().to_string());
}

#[test]
fn a_missing_cert_file_is_named() {
    let (dir, path) = write_config(
        "listen:\n  - address: 0.0.0.0:0\n    tls: { cert: certs/a.crt, key: certs/a.key }\n",
    );
    fs::create_dir_all(dir.path().join("certs")).unwrap();
    fs::write(dir.path().join("certs/a.key"), "key").unwrap();
    let err = load_err(&path);
    assert_eq!(err.problems.len(), 1, "{err}");
    let p = &err.problems[0];
    assert_eq!(
        (p.line, p.column, p.path.as_str()),
        (3, 18, "listen[0].tls.cert")
    );
    let missing = dir.path().join("certs/a.crt");
    assert!(
        p.message.contains(&missing.display().to_string()),
        "{}",
        p.message
    );

    // A directory is not a certificate file either.
    fs::create_dir_all(&missing).unwrap();
    let err = load_err(&path);
    assert!(err.problems[0].message.contains("is not a file"), "{err}");
    // A readable file that is not PEM is refused as `run` would refuse it, naming the file.
    fs::remove_dir(&missing).unwrap();
    fs::write(&missing, "cert").unwrap();
    let err = load_err(&path);
    assert_eq!(err.problems[0].path, "listen[0].tls.cert", "{err}");
    assert!(err.problems[0].message.contains("a.crt"), "{err}");
    // A real certificate and key: the config loads.
    let (cert_pem, key_pem) =
        support::certs::TestCa::new().leaf_pem(support::certs::KeyKind::EcdsaP256);
    fs::write(&missing, cert_pem).unwrap();
    fs::write(dir.path().join("certs/a.key"), key_pem).unwrap();
    Config::load(&path).unwrap();
}

#[test]
fn several_problems_are_reported_at_once() {
    let (_dir, path) = write_config(
        "\
listen:
  - address: 127.0.0.1:0
    tls: { cert: /nonexistent/pushbridge.crt, key: /nonexistent/pushbridge.key }
streams:
  - path: /events/{channel}
    upstream: { url: 'http://app/{room}' }
    transports: []
  - path: /events/{room}
    upstream: { url: http://app/ }
    long_poll: { max_batch: 0 }
limits: { handshake_timeout: 0s }
",
    );
    let err = load_err(&path);
    let got: Vec<_> = err
        .problems
        .iter()
        .map(|p| (p.line, p.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "listen[0].tls.cert"),
            (3, "listen[0].tls.key"),
            (6, "streams[0].upstream.url"),
            (7, "streams[0].transports"),
            (8, "streams[1].path"),
            (10, "streams[1].long_poll.max_batch"),
            (11, "limits.handshake_timeout"),
        ],
        "{err}"
    );
    let text = err.to_string();
    assert_eq!(text.lines().count(), 7);
    for line in text.lines() {
        assert!(line.starts_with(&format!("{}:", path.display())), "{line}");
    }
}

#[test]
fn env_vars_expand_in_values() {
    // SAFETY: these names are unique to this test; nothing else in the process reads or writes them.
    unsafe {
        std::env::set_var("PUSHBRIDGE_IT_CFG_APP", "app.internal:8081");
        std::env::set_var("PUSHBRIDGE_IT_CFG_TOKEN_HEADER", "X-Api-Token");
    }
    let (_dir, path) = write_config(
        "listen:\n  - address: 127.0.0.1:0\npassthrough: { upstream: 'http://${PUSHBRIDGE_IT_CFG_APP}' }\nstreams:\n  - path: /s/{id}\n    upstream: { url: 'http://${PUSHBRIDGE_IT_CFG_APP}/s/{id}' }\n    auth: { forward_headers: ['${PUSHBRIDGE_IT_CFG_TOKEN_HEADER}'] }\n",
    );
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.passthrough.unwrap().upstream,
        "http://app.internal:8081/"
    );
    let stream = &config.streams[0];
    assert_eq!(
        stream.upstream.url.as_str(),
        "http://app.internal:8081/s/{id}"
    );
    assert_eq!(
        stream.auth.as_ref().unwrap().forward_headers,
        ["x-api-token"]
    );

    let (_dir, path) = write_config("listen:\n  - address: '${PUSHBRIDGE_IT_CFG_NEVER_SET}'\n");
    let err = load_err(&path);
    let p = &err.problems[0];
    assert_eq!(
        (p.line, p.column, p.path.as_str()),
        (2, 14, "listen[0].address")
    );
    assert!(
        p.message.contains("PUSHBRIDGE_IT_CFG_NEVER_SET"),
        "{}",
        p.message
    );
}

#[test]
fn defaults_are_filled_in() {
    let (_dir, path) = write_config(
        "listen:\n  - address: '[::1]:0'\nstreams:\n  - path: /live\n    upstream: { url: http://127.0.0.1:9/live }\n",
    );
    let config = Config::load(&path).unwrap();
    let stream = &config.streams[0];
    assert_eq!(stream.name, "/live");
    assert_eq!(stream.heartbeat, pushbridge::config::DEFAULT_HEARTBEAT);
    assert_eq!(stream.heartbeat, Duration::from_secs(15));
    assert_eq!(
        stream.buffer.events,
        pushbridge::config::DEFAULT_BUFFER_EVENTS
    );
    assert_eq!(stream.long_poll.timeout, Duration::from_secs(25));
    assert_eq!(
        stream.upstream.reconnect.initial,
        Duration::from_millis(500)
    );
    assert_eq!(config.limits.client_queue, 256);
    assert_eq!(config.shutdown.grace, Duration::from_secs(30));
    assert_eq!(config.log.level, "info");
}

#[test]
fn an_unreadable_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let err = load_err(&path);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}: cannot read the configuration file",
            path.display()
        )),
        "{text}"
    );
}

#[test]
fn an_empty_file_is_a_clear_error() {
    let (_dir, path) = write_config("# nothing but a comment\n");
    let text = load_err(&path).to_string();
    assert!(
        text.contains("the top level must be a mapping") && text.contains("empty"),
        "{text}"
    );
}
