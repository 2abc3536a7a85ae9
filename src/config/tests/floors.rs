//! Every duration has a floor: a value above zero but below it is refused with file, line and field.

use super::*;

#[test]
fn every_duration_below_its_floor_is_refused_where_it_is_written() {
    let stream = "streams:\n  - path: /e/{c}\n    upstream:\n      url: http://127.0.0.1:9/{c}\n";
    // `(appended YAML, field path, message fragment)`; each YAML's offending value is on its last line.
    let cases = [
        (
            "limits: { handshake_timeout: 1ns }\n",
            "limits.handshake_timeout",
            "at least 1ms",
        ),
        (
            "limits: { idle_connection_timeout: 10us }\n",
            "limits.idle_connection_timeout",
            "at least 1ms",
        ),
        (
            "limits: { keepalive_interval: 10ms }\n",
            "limits.keepalive_interval",
            "at least 100ms",
        ),
        (
            "limits: { negative_cache_ttl: 1us }\n",
            "limits.negative_cache_ttl",
            "at least 1ms",
        ),
        (
            "limits: { wake_pacing: { per_subscriber: 1ns } }\n",
            "limits.wake_pacing.per_subscriber",
            "at least 1us",
        ),
        (
            "limits: { wake_pacing: { max: 1ns } }\n",
            "limits.wake_pacing.max",
            "at least 1ms",
        ),
        (
            "shutdown: { grace: 1ns }\n",
            "shutdown.grace",
            "at least 1ms",
        ),
        (
            "admin: { address: 127.0.0.1:9090, timeout: 1ns }\n",
            "admin.timeout",
            "at least 1ms",
        ),
        (
            "admin: { address: 127.0.0.1:9090, ready_check_timeout: 1ns }\n",
            "admin.ready_check_timeout",
            "at least 1ms",
        ),
        (
            "passthrough: { upstream: \"http://127.0.0.1:9\", connect_timeout: 1ns }\n",
            "passthrough.connect_timeout",
            "at least 1ms",
        ),
        (
            "passthrough: { upstream: \"http://127.0.0.1:9\", response_timeout: 1ns }\n",
            "passthrough.response_timeout",
            "at least 1ms",
        ),
        (
            "passthrough: { upstream: \"http://127.0.0.1:9\", body_timeout: 1ns }\n",
            "passthrough.body_timeout",
            "at least 1ms",
        ),
        (
            "passthrough: { upstream: \"http://127.0.0.1:9\", websocket: { idle_timeout: 1ns } }\n",
            "passthrough.websocket.idle_timeout",
            "at least 1ms",
        ),
        (
            &format!("{stream}    heartbeat: 1ns\n"),
            "streams[0].heartbeat",
            "at least 100ms",
        ),
        (
            &format!("{stream}    heartbeat: 99ms\n"),
            "streams[0].heartbeat",
            "at least 100ms",
        ),
        (
            &format!("{stream}    buffer: {{ age: 1ns }}\n"),
            "streams[0].buffer.age",
            "at least 1ms",
        ),
        (
            &format!("{stream}    idle_timeout: 1ns\n"),
            "streams[0].idle_timeout",
            "at least 1ms",
        ),
        (
            &format!("{stream}    long_poll: {{ timeout: 1ns }}\n"),
            "streams[0].long_poll.timeout",
            "at least 1ms",
        ),
        (
            &format!("{stream}    sse: {{ retry: 1ns }}\n"),
            "streams[0].sse.retry",
            "at least 1ms",
        ),
        (
            &format!("{stream}    sse: {{ retry_max: 1us, retry: 0s }}\n"),
            "streams[0].sse.retry_max",
            "at least 1ms",
        ),
        (
            &format!("{stream}    auth: {{ pool_idle_timeout: 1ns }}\n"),
            "streams[0].auth.pool_idle_timeout",
            "at least 1ms",
        ),
        (
            &format!("{stream}      connect_timeout: 1ns\n"),
            "streams[0].upstream.connect_timeout",
            "at least 1ms",
        ),
        (
            &format!("{stream}      idle_timeout: 1ns\n"),
            "streams[0].upstream.idle_timeout",
            "at least 1ms",
        ),
        (
            &format!("{stream}      reconnect: {{ initial: 1ms, max: 1s }}\n"),
            "streams[0].upstream.reconnect.initial",
            "at least 10ms",
        ),
        (
            &format!("{stream}      reconnect: {{ initial: 1ms, max: 1ms }}\n"),
            "streams[0].upstream.reconnect.initial",
            "at least 10ms",
        ),
        (
            &format!("{stream}      kind: poll\n      poll: {{ interval: 1ms }}\n"),
            "streams[0].upstream.poll.interval",
            "at least 10ms",
        ),
    ];
    for (extra, path, fragment) in cases {
        let yaml = format!("listen:\n  - address: 127.0.0.1:8080\n{extra}");
        let mut all = problems(&yaml);
        all.retain(|p| p.path == path);
        assert_eq!(all.len(), 1, "{yaml}: {all:#?}");
        let p = &all[0];
        assert!(p.message.contains(fragment), "{yaml}: {}", p.message);
        assert_eq!(p.file, "test.yaml");
        assert_eq!(p.line, yaml.lines().count(), "{yaml}: located on its line");
        assert!(p.column > 0, "{yaml}");
    }
    // The floors themselves pass, and zero keeps its meaning where it has one (off).
    let ok = format!(
        "listen:\n  - address: 127.0.0.1:8080\nlimits: {{ negative_cache_ttl: 0s, keepalive_interval: 100ms }}\n{stream}      reconnect: {{ initial: 10ms, max: 10ms }}\n    heartbeat: 100ms\n"
    );
    assert!(Config::parse("test.yaml", &ok).is_ok(), "{ok}");
}
