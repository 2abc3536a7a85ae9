//! Table-driven tests of `Config::parse` on inline YAML: defaults, each rule, error locations, and a
//! never-panics property over arbitrary and mutated input.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

mod floors;
mod kinds;
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
fn serde_errors_are_located() {
    // (text appended to MINIMAL, line, column, path, message fragment)
    let cases = [
        (
            "    heartbeat: 15 parsecs\n",
            7,
            16,
            "streams[0].heartbeat",
            "invalid duration \"15 parsecs\"",
        ),
        (
            "    heartbeet: 15s\n",
            7,
            5,
            "streams[0].heartbeet",
            "unknown field `heartbeet`",
        ),
        (
            "      kind: carrier-pigeon\n",
            7,
            13,
            "streams[0].upstream.kind",
            "unknown variant `carrier-pigeon`",
        ),
        (
            "    transports: [ws, smoke]\n",
            7,
            22,
            "streams[0].transports[1]",
            "unknown variant `smoke`",
        ),
        (
            "    buffer: { events: lots }\n",
            7,
            23,
            "streams[0].buffer.events",
            "invalid type",
        ),
        (
            "limits: { max_event_bytes: 1 Gigantic }\n",
            7,
            28,
            "limits.max_event_bytes",
            "invalid size",
        ),
        (
            "admin: { address: localhost }\n",
            7,
            19,
            "admin.address",
            "invalid socket address",
        ),
        (
            "    auth: { forward_headers: [\"bad header\"] }\n",
            7,
            31,
            "streams[0].auth.forward_headers[0]",
            "invalid header name",
        ),
        ("    path2: /x\n", 7, 5, "streams[0].path2", "unknown field"),
        ("extra: 1\n", 7, 1, "extra", "unknown field `extra`"),
    ];
    for (extra, line, column, path, fragment) in cases {
        let (l, c, p, m) = only_problem(&format!("{MINIMAL}{extra}"));
        assert_eq!((l, c, p.as_str()), (line, column, path), "{extra}: {m}");
        assert!(m.starts_with(fragment), "{extra}: {m}");
        assert!(!m.contains(" at line "), "{m}");
    }
}

#[test]
fn display_is_file_line_column_path_message() {
    let err = Config::parse(
        "config.yaml",
        &format!("{MINIMAL}    heartbeat: 15 parsecs\n"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "config.yaml:7:16: streams[0].heartbeat: invalid duration \"15 parsecs\": "
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
}

#[test]
fn validation_errors_are_located() {
    let cases = [
        (
            "    heartbeat: 0s\n",
            7,
            16,
            "streams[0].heartbeat",
            "more than zero",
        ),
        (
            "    ws: { compression: deflate, subprotocols: { app.v1: data, \"a b\": envelope } }\n",
            7,
            63,
            "streams[0].ws.subprotocols.a b",
            "invalid subprotocol name",
        ),
        (
            "    transports: []\n",
            7,
            17,
            "streams[0].transports",
            "at least one transport",
        ),
        (
            "    transports: [sse, ws, sse]\n",
            7,
            27,
            "streams[0].transports[2]",
            "listed twice",
        ),
        (
            "    buffer: { events: 0 }\n",
            7,
            23,
            "streams[0].buffer.events",
            "at least 1",
        ),
        (
            "    long_poll: { max_batch: 0 }\n",
            7,
            29,
            "streams[0].long_poll.max_batch",
            "at least 1",
        ),
        (
            "    gap_event: \"\"\n",
            7,
            16,
            "streams[0].gap_event",
            "non-empty",
        ),
        (
            "    origins: [app.example.com]\n",
            7,
            15,
            "streams[0].origins[0]",
            "invalid origin",
        ),
        (
            "    client_messages: { forward: /relative }\n",
            7,
            33,
            "streams[0].client_messages.forward",
            "http://",
        ),
        (
            "    auth: { check: ftp://x/ }\n",
            7,
            20,
            "streams[0].auth.check",
            "http://",
        ),
        (
            "      reconnect: { initial: 2s, max: 1s }\n",
            7,
            38,
            "streams[0].upstream.reconnect.max",
            "at least `initial`",
        ),
        (
            "      reconnect: { initial: 0s }\n",
            7,
            29,
            "streams[0].upstream.reconnect.initial",
            "more than zero",
        ),
        (
            "limits: { client_queue: 0 }\n",
            7,
            25,
            "limits.client_queue",
            "at least 1",
        ),
        (
            "passthrough: { upstream: http://app/?q=1 }\n",
            7,
            26,
            "passthrough.upstream",
            "query",
        ),
        (
            "passthrough: { upstream: app:8080 }\n",
            7,
            26,
            "passthrough.upstream",
            "http://",
        ),
        (
            "admin: { address: 127.0.0.1:8080 }\n",
            7,
            19,
            "admin.address",
            "also used by listen[0]",
        ),
        (
            "log: { level: \"a=b=c\" }\n",
            7,
            15,
            "log.level",
            "invalid log filter",
        ),
        (
            "  - path: /_pushbridge/x\n    upstream: { url: http://a/ }\n",
            7,
            11,
            "streams[1].path",
            "reserved",
        ),
    ];
    for (extra, line, column, path, fragment) in cases {
        let (l, c, p, m) = only_problem(&format!("{MINIMAL}{extra}"));
        assert_eq!((l, c, p.as_str()), (line, column, path), "{extra}: {m}");
        assert!(m.contains(fragment), "{extra}: {m}");
    }
}

#[test]
fn url_params_must_come_from_the_path() {
    let yaml = MINIMAL.replace("9000/events/{channel}", "9000/events/{channel}?t={tenant}");
    let (line, column, path, message) = only_problem(&yaml);
    assert_eq!(
        (line, column, path.as_str()),
        (6, 12, "streams[0].upstream.url")
    );
    assert!(
        message.contains("{tenant} is not a parameter of the path /events/{channel}"),
        "{message}"
    );
    let ws = MINIMAL.replace("http://127.0.0.1:9000", "ws://127.0.0.1:9000");
    assert_eq!(only_problem(&ws).2, "streams[0].upstream.url");
    let ws_kind = Config::parse("test.yaml", &format!("{ws}      kind: ws\n"));
    assert!(
        ws_kind.is_ok(),
        "ws URLs are accepted for kind: ws: {ws_kind:?}"
    );
}

#[test]
fn duplicate_names_and_paths() {
    let yaml = format!(
        "{MINIMAL}    name: a\n  - path: /events/{{other}}\n    name: a\n    upstream: {{ url: http://b/ }}\n  - path: /events/{{channel}}/x\n    upstream: {{ url: http://c/ }}\n"
    );
    let all = problems(&yaml);
    let got: Vec<_> = all.iter().map(|p| (p.line, p.path.as_str())).collect();
    assert_eq!(
        got,
        [(8, "streams[1].path"), (9, "streams[1].name")],
        "{all:#?}"
    );
    assert!(
        all[0]
            .message
            .contains("same requests as streams[0] (/events/{channel})")
    );
    assert!(all[1].message.contains("also used by streams[0]"));
}

#[test]
fn all_problems_are_reported_at_once_in_file_order() {
    let yaml = "\
listen: []
streams:
  - path: /a/{x}
    upstream: { url: 'http://app/{y}' }
    heartbeat: 0s
    buffer: { events: 0 }
limits: { client_queue: 0 }
";
    let all = problems(yaml);
    let got: Vec<_> = all.iter().map(|p| (p.line, p.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "listen"),
            (4, "streams[0].upstream.url"),
            (5, "streams[0].heartbeat"),
            (6, "streams[0].buffer.events"),
            (7, "limits.client_queue"),
        ]
    );
}

#[test]
fn missing_files_are_named() {
    let yaml = "listen:\n  - address: 0.0.0.0:1\n    tls: { cert: /nonexistent/pb/tls.crt, key: /nonexistent/pb/tls.key }\n";
    let all = problems(yaml);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].line, all[0].column, all[0].path.as_str()),
        (3, 18, "listen[0].tls.cert")
    );
    assert!(
        all[0].message.contains("/nonexistent/pb/tls.crt"),
        "{}",
        all[0].message
    );
    assert_eq!(all[1].path, "listen[0].tls.key");
}

#[test]
fn bad_top_levels_are_clear() {
    for (yaml, fragment) in [
        ("", "the file is empty"),
        ("# nothing\n", "the file is empty"),
        ("- a\n", "found a sequence"),
        ("~\n", "found a single value"),
        ("listen", "found a single value"),
    ] {
        let (line, _, path, message) = only_problem(yaml);
        assert!(message.contains(fragment), "{yaml:?}: {message}");
        assert!(message.contains("must be a mapping"));
        assert_eq!((line, path.as_str()), (1, ""));
    }
    let (line, column, _, message) = only_problem("listen:\n  - address: [1\n");
    assert!(line >= 2 && column > 0, "{line}:{column} {message}");
    let (_, _, path, message) = only_problem("streams: []\n");
    assert_eq!(
        (path.as_str(), message.as_str()),
        ("", "missing field `listen`")
    );
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

#[test]
fn long_values_are_clipped_in_messages() {
    let long = "x".repeat(10_000);
    let (_, _, _, message) = only_problem(&format!("{MINIMAL}    heartbeat: {long}\n"));
    assert!(message.len() < 300, "{}", message.len());
    let (_, _, _, message) =
        only_problem(&format!("{MINIMAL}    buffer: {{ events: \"{long}\" }}\n"));
    assert!(message.len() < 600, "{}", message.len());
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

#[test]
fn subprotocols_upstream_pass_needs_a_per_client_ws_upstream() {
    const PASS: &str = "\
listen:
  - address: 127.0.0.1:8080
streams:
  - path: /chat
    mode: per-client
    transports: [ws]
    upstream: { kind: ws, url: ws://127.0.0.1:9000/chat }
    ws: { subprotocols_upstream: pass }
";
    let config = Config::parse("test.yaml", PASS).unwrap();
    assert_eq!(
        config.streams[0].ws.subprotocols_upstream,
        SubprotocolsUpstream::Pass
    );
    assert_eq!(
        Config::parse("test.yaml", MINIMAL).unwrap().streams[0]
            .ws
            .subprotocols_upstream,
        SubprotocolsUpstream::Off
    );
    let cases = [
        (
            PASS.replace("    mode: per-client\n", ""),
            (
                7,
                34,
                "streams[0].ws.subprotocols_upstream",
                "mode: per-client",
            ),
        ),
        (
            PASS.replace("{ kind: ws, url: ws:", "{ kind: sse, url: http:"),
            (8, 34, "streams[0].ws.subprotocols_upstream", "not sse"),
        ),
        (
            PASS.replace("pass }", "pass, subprotocols: { a.v1: data } }"),
            (
                8,
                54,
                "streams[0].ws.subprotocols",
                "ws.subprotocols_upstream: pass",
            ),
        ),
        (
            PASS.replace("/chat }", "/chat, subprotocol: a.v1 }"),
            (7, 71, "streams[0].upstream.subprotocol", "client's offer"),
        ),
    ];
    for (yaml, (line, column, path, message)) in cases {
        let got = only_problem(&yaml);
        assert_eq!(
            (got.0, got.1, got.2.as_str()),
            (line, column, path),
            "{got:?}"
        );
        assert!(got.3.contains(message), "{got:?}");
    }
    let (_, _, path, message) = only_problem(&PASS.replace("pass }", "relay }"));
    assert_eq!(path, "streams[0].ws.subprotocols_upstream");
    assert!(message.contains("unknown variant"), "{message}");
}
