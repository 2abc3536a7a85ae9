//! Config tests of error reporting: every problem located (file, line, column, path), reported together in
//! file order, values clipped, missing files named.

use super::super::*;
use super::{MINIMAL, only_problem, problems};

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
fn long_values_are_clipped_in_messages() {
    let long = "x".repeat(10_000);
    let (_, _, _, message) = only_problem(&format!("{MINIMAL}    heartbeat: {long}\n"));
    assert!(message.len() < 300, "{}", message.len());
    let (_, _, _, message) =
        only_problem(&format!("{MINIMAL}    buffer: {{ events: \"{long}\" }}\n"));
    assert!(message.len() < 600, "{}", message.len());
}
