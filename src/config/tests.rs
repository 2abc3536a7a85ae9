//! Table-driven tests of `Config::parse` on inline YAML: defaults, each rule, error locations, and a
//! never-panics property over arbitrary and mutated input.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

mod floors;
mod kinds;
mod located;
mod publish;

const MINIMAL: &str = "\
listen:
  - address: 127.0.0.1:8080
streams:
  - path: /events/{channel}
    upstream:
      url: http://127.0.0.1:9000/events/{channel}
";

fn problems(yaml: &str) -> Vec<Problem> {
    match Config::parse("test.yaml", yaml) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.problems,
    }
}

/// `(line, column, path, message fragment)` of the only problem.
fn only_problem(yaml: &str) -> (usize, usize, String, String) {
    let mut all = problems(yaml);
    assert_eq!(all.len(), 1, "{all:#?}");
    let p = all.remove(0);
    (p.line, p.column, p.path, p.message)
}

#[test]
fn minimal_config_gets_every_default() {
    let config = Config::parse("test.yaml", MINIMAL).unwrap();
    assert_eq!(config.listen[0].address, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.listen[0].tls, None);
    assert_eq!(config.admin, None);
    assert_eq!(config.passthrough, None);
    assert_eq!(config.limits, LimitsConfig::default());
    assert_eq!(config.limits.max_connections, 100_000);
    assert_eq!(config.limits.client_queue, 256);
    assert_eq!(config.limits.max_event_bytes, 1 << 20);
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(config.shutdown.grace, Duration::from_secs(30));
    assert_eq!(
        config.log,
        LogConfig {
            format: LogFormat::Text,
            level: "info".into()
        }
    );

    let stream = &config.streams[0];
    let path = RoutePattern::parse("/events/{channel}").unwrap();
    let url = UrlTemplate::parse("http://127.0.0.1:9000/events/{channel}").unwrap();
    assert_eq!(*stream, StreamConfig::new(path, UpstreamConfig::new(url)));
    assert_eq!(stream.name, "/events/{channel}");
    assert_eq!(stream.mode, Mode::Shared);
    assert_eq!(
        stream.transports,
        [
            TransportKind::Ws,
            TransportKind::Sse,
            TransportKind::LongPoll
        ]
    );
    assert_eq!(
        stream.buffer,
        BufferConfig {
            events: 1000,
            age: Duration::from_secs(300),
            max_bytes: 16 << 20,
        }
    );
    assert_eq!(stream.heartbeat, Duration::from_secs(15));
    assert_eq!(stream.idle_timeout, Duration::from_secs(30));
    assert_eq!(stream.gap_event, "pushbridge-gap");
    assert_eq!(
        stream.long_poll,
        LongPollConfig {
            timeout: Duration::from_secs(25),
            max_batch: 100,
            jsonp: false,
            jsonp_ignores_origins: false,
        }
    );
    assert_eq!(stream.ws.format, WsFormat::Envelope);
    assert_eq!(stream.upstream.kind, UpstreamKind::Sse);
    assert_eq!(stream.upstream.connect_timeout, Duration::from_secs(10));
    assert_eq!(
        stream.upstream.reconnect,
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30)
        }
    );
    assert!(stream.client_messages.is_none() && stream.auth.is_none() && stream.origins.is_empty());
}

#[test]
fn optional_sections_get_their_defaults() {
    let yaml = format!(
        "{MINIMAL}    client_messages: {{ forward: http://app/messages }}\n    auth: {{ forward_headers: [Authorization, X-User] }}\n    origins: [HTTPS://App.Example.com/]\npassthrough: {{ upstream: https://app:8443/prefix }}\n"
    );
    let config = Config::parse("test.yaml", &yaml).unwrap();
    let pass = config.passthrough.unwrap();
    assert_eq!(pass.upstream, "https://app:8443/prefix");
    assert_eq!(pass.connect_timeout, DEFAULT_PASSTHROUGH_CONNECT_TIMEOUT);
    assert_eq!(pass.response_timeout, DEFAULT_PASSTHROUGH_RESPONSE_TIMEOUT);
    let stream = &config.streams[0];
    assert_eq!(
        stream.client_messages.as_ref().unwrap().max_bytes,
        64 * 1024
    );
    assert_eq!(
        stream.auth.as_ref().unwrap().forward_headers,
        ["authorization", "x-user"]
    );
    assert_eq!(stream.auth.as_ref().unwrap().check, None);
    assert_eq!(stream.origins, ["https://app.example.com"]);
}

#[test]
fn enums_use_their_yaml_names() {
    let yaml = format!(
        "{MINIMAL}      kind: sse\n    mode: per-client\n    transports: [ws, sse]\n    ws: {{ format: data }}\nlog: {{ format: json, level: \"pushbridge=debug,info\" }}\n"
    );
    let config = Config::parse("test.yaml", &yaml).unwrap();
    let stream = &config.streams[0];
    assert_eq!(stream.upstream.kind, UpstreamKind::Sse);
    assert_eq!(stream.mode, Mode::PerClient);
    assert_eq!(stream.transports, [TransportKind::Ws, TransportKind::Sse]);
    assert_eq!(stream.ws.format, WsFormat::Data);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(TransportKind::LongPoll.to_string(), "long-poll");
    assert_eq!(Mode::PerClient.as_str(), "per-client");
    assert_eq!(UpstreamKind::Ndjson.as_str(), "ndjson");
    // Parsed, but refused: per-client long-poll.
    let yaml = format!(
        "{MINIMAL}      kind: ndjson\n    mode: per-client\n    transports: [long-poll, sse]\n"
    );
    let all = problems(&yaml);
    assert!(
        all.iter()
            .any(|p| p.path == "streams[0].transports[0]" && p.message.contains("per-client")),
        "{all:?}"
    );
}

#[test]
fn durations_and_sizes_accept_their_spellings() {
    let yaml = format!(
        "{MINIMAL}    heartbeat: 250ms\n    idle_timeout: 1h 30m\n    buffer: {{ age: 0.5s }}\nlimits: {{ max_event_bytes: 1000, handshake_timeout: 2m }}\n"
    );
    let config = Config::parse("test.yaml", &yaml).unwrap();
    assert_eq!(config.streams[0].heartbeat, Duration::from_millis(250));
    assert_eq!(config.streams[0].idle_timeout, Duration::from_secs(5400));
    assert_eq!(config.streams[0].buffer.age, Duration::from_millis(500));
    assert_eq!(config.limits.max_event_bytes, 1000);
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(120));
}

#[test]
fn env_vars_expand_in_string_values() {
    // SAFETY: the variable names are unique to this test; no other code reads or writes them.
    unsafe {
        std::env::set_var("PUSHBRIDGE_CFG_UNIT_PORT", "9123");
        std::env::set_var("PUSHBRIDGE_CFG_UNIT_BEAT", "3s");
    }
    let yaml = "listen:\n  - address: 127.0.0.1:${PUSHBRIDGE_CFG_UNIT_PORT}\nstreams:\n  - path: /s\n    upstream: { url: 'http://h:${PUSHBRIDGE_CFG_UNIT_PORT}/s' }\n    heartbeat: ${PUSHBRIDGE_CFG_UNIT_BEAT}\n    gap_event: gap-$${literal}\n";
    let config = Config::parse("t", yaml).unwrap();
    assert_eq!(config.listen[0].address.port(), 9123);
    assert_eq!(config.streams[0].heartbeat, Duration::from_secs(3));
    assert_eq!(config.streams[0].upstream.url.as_str(), "http://h:9123/s");
    assert_eq!(config.streams[0].gap_event, "gap-${literal}");
    let (line, column, path, message) =
        only_problem("listen:\n  - address: ${PUSHBRIDGE_CFG_UNIT_NEVER_SET}\n");
    assert_eq!((line, column, path.as_str()), (2, 14, "listen[0].address"));
    assert!(
        message.contains("PUSHBRIDGE_CFG_UNIT_NEVER_SET is not set"),
        "{message}"
    );
}

#[test]
fn example_parses_but_for_its_tls_files() {
    let all = problems(EXAMPLE_YAML);
    let paths: Vec<_> = all.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["listen[0].tls.cert", "listen[0].tls.key"],
        "{all:#?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Config::parse("fuzz.yaml", &text);
    }

    #[test]
    fn mutated_example_never_panics(at in 0usize..4000, byte in proptest::sample::select(b"{}[]:-,'\"&*!|>#%@ \n\t$x0".to_vec())) {
        let mut bytes = EXAMPLE_YAML.as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Config::parse("fuzz.yaml", &text) {
            prop_assert!(!e.problems.is_empty());
            for p in &e.problems {
                prop_assert!(p.line >= 1 && p.column >= 1, "{p}");
            }
        }
    }
}
