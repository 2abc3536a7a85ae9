//! Config tests of the upstream-kind options (`ws`, `ndjson`, `poll`): parsing, defaults, and each rule's
//! located error.

use std::time::Duration;

use super::super::*;
use super::{MINIMAL, only_problem};

#[test]
fn upstream_kinds_take_their_options() {
    let yaml = "\
listen:
  - address: 127.0.0.1:8080
streams:
  - path: /feed/{channel}
    upstream:
      kind: ws
      url: \"ws://127.0.0.1:9000/feed/{channel}\"
      subprotocol: v1.feed
      map: { id: /seq, event: /type, data: /payload }
      resume: { query: since }
      binary: base64
  - path: /watch/{channel}
    upstream:
      kind: ndjson
      url: \"http://127.0.0.1:9000/watch/{channel}\"
      map: { id: /id, event: /type, data: /data }
      resume: { header: X-Resume-After }
  - path: /legacy/{channel}
    upstream:
      kind: poll
      url: \"http://127.0.0.1:9000/poll/{channel}\"
      poll: { interval: 1s, events: /events, cursor: /cursor }
      map: { id: /id, data: /text }
      resume: { query: cursor }
";
    let config = Config::parse("test.yaml", yaml).unwrap();
    let [ws, nd, poll] = &config.streams[..] else {
        panic!("three streams")
    };
    assert_eq!(ws.upstream.kind, UpstreamKind::Ws);
    assert_eq!(ws.upstream.subprotocol.as_deref(), Some("v1.feed"));
    assert_eq!(ws.upstream.binary, Some(BinaryMode::Base64));
    let map = ws.upstream.map.as_ref().unwrap();
    assert_eq!(map.id.as_ref().unwrap().as_str(), "/seq");
    assert_eq!(map.data.as_ref().unwrap().as_str(), "/payload");
    assert_eq!(
        ws.upstream.resume.as_ref().unwrap().query.as_deref(),
        Some("since")
    );
    assert_eq!(
        nd.upstream.resume.as_ref().unwrap().header.as_deref(),
        Some("X-Resume-After")
    );
    let p = poll.upstream.poll.as_ref().unwrap();
    assert_eq!(p.interval, Duration::from_secs(1));
    assert_eq!(p.events.as_str(), "/events");
    assert_eq!(p.cursor.as_ref().unwrap().as_str(), "/cursor");
    let defaults = Config::parse(
        "test.yaml",
        &MINIMAL.replace(
            "    upstream:\n",
            "    upstream:\n      kind: poll\n      poll: {}\n",
        ),
    )
    .unwrap();
    assert_eq!(
        defaults.streams[0].upstream.poll,
        Some(PollConfig {
            interval: DEFAULT_POLL_INTERVAL,
            events: JsonPointer::default(),
            cursor: None
        })
    );
}

#[test]
fn upstream_kind_options_are_located_when_wrong() {
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    // A malformed pointer: refused at its value.
    let (line, column, path, message) =
        only_problem(&with("      kind: ws\n      map: { id: seq }\n"));
    assert_eq!(
        (line, column, path.as_str()),
        (8, 18, "streams[0].upstream.map.id")
    );
    assert!(message.contains("invalid JSON pointer"), "{message}");
    let (_, _, path, message) = only_problem(&with(
        "      kind: ndjson\n      map:\n        data: /a~2\n",
    ));
    assert_eq!(path, "streams[0].upstream.map.data");
    assert!(message.contains("~"), "{message}");
    // A poll cursor with nowhere to go.
    let (line, column, path, message) = only_problem(&with(
        "      kind: poll\n      poll: { interval: 2s, cursor: /next }\n",
    ));
    assert_eq!(
        (line, path.as_str()),
        (8, "streams[0].upstream.poll.cursor")
    );
    assert!(column > 1, "{column}");
    assert!(message.contains("resume"), "{message}");
    // Keys used with the wrong kind.
    for (extra, key) in [
        ("      map: { data: /d }\n", "map"),
        ("      resume: { query: since }\n", "resume"),
        ("      kind: ndjson\n      subprotocol: v1\n", "subprotocol"),
        ("      kind: ws\n      poll: { interval: 1s }\n", "poll"),
        ("      kind: poll\n      binary: base64\n", "binary"),
    ] {
        let (_, _, path, message) = only_problem(&with(extra));
        assert_eq!(path, format!("streams[0].upstream.{key}"), "{extra}");
        assert!(message.contains("only used with kind"), "{message}");
    }
    // resume names exactly one place, a valid one, and has an upstream id (or poll cursor) to send.
    let ws = "      kind: ws\n      map: { id: /id }\n";
    for (extra, at) in [
        (
            format!("{ws}      resume: {{ query: a, header: b }}\n"),
            "resume",
        ),
        (format!("{ws}      resume: {{}}\n"), "resume"),
        (
            format!("{ws}      resume: {{ header: \"bad header\" }}\n"),
            "resume.header",
        ),
        (format!("{ws}      subprotocol: \"a b\"\n"), "subprotocol"),
        (
            "      kind: ndjson\n      resume: { query: since }\n".into(),
            "resume",
        ),
        (
            "      kind: poll\n      resume: { query: since }\n".into(),
            "resume",
        ),
    ] {
        assert_eq!(
            only_problem(&with(&extra)).2,
            format!("streams[0].upstream.{at}"),
            "{extra}"
        );
    }
    let poll_cursor = "      kind: poll\n      poll: { cursor: /c }\n      resume: { query: c }\n";
    assert!(Config::parse("test.yaml", &with(poll_cursor)).is_ok());
    // A typo in a sub-key is an unknown field.
    let (_, _, path, message) =
        only_problem(&with("      kind: poll\n      poll: { cursr: /c }\n"));
    assert!(path.starts_with("streams[0].upstream.poll"), "{path}");
    assert!(message.contains("cursr"), "{message}");
}

#[test]
fn redis_upstream_and_tee_take_their_options() {
    let yaml = "\
listen:
  - address: 127.0.0.1:8080
streams:
  - path: /events/{channel}
    upstream:
      kind: redis
      url: \"redis://:pw@127.0.0.1:6379/0\"
      key: \"events:{channel}\"
      fields: { event: type }
  - path: /feed/{channel}
    upstream:
      url: \"http://127.0.0.1:9000/feed/{channel}\"
      tee: { url: \"rediss://redis.internal:6380\", key: \"feed:{channel}\", maxlen: 500 }
";
    let config = Config::parse("test.yaml", yaml).unwrap();
    let [redis, sse] = &config.streams[..] else {
        panic!("two streams")
    };
    assert_eq!(redis.upstream.kind, UpstreamKind::Redis);
    let params = [("channel".to_owned(), "a b".to_owned())];
    let key = redis.upstream.key.as_ref().unwrap();
    assert_eq!(key.render_text(&params).unwrap(), "events:a b");
    let fields = redis.upstream.fields.as_ref().unwrap();
    assert_eq!(
        (fields.event.as_str(), fields.data.as_str()),
        ("type", "data")
    );
    let tee = sse.upstream.tee.as_ref().unwrap();
    assert_eq!(
        (tee.maxlen, tee.queue, tee.fields.clone()),
        (500, DEFAULT_TEE_QUEUE, RedisFields::default())
    );
}

#[test]
fn redis_options_are_located_when_wrong() {
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    let redis = "listen:\n  - address: 127.0.0.1:8080\nstreams:\n  - path: /events/{channel}\n    upstream:\n      kind: redis\n";
    for (yaml, at, needle) in [
        (
            format!("{redis}      url: redis://127.0.0.1\n"),
            "key",
            "needs the stream `key`",
        ),
        (
            format!("{redis}      url: http://127.0.0.1\n      key: k\n"),
            "url",
            "redis://",
        ),
        (
            format!("{redis}      url: redis://127.0.0.1\n      key: \"k:{{tenant}}\"\n"),
            "key",
            "{tenant}",
        ),
        (
            format!(
                "{redis}      url: redis://127.0.0.1\n      key: k\n      tee: {{ url: \"redis://x\", key: k }}\n"
            ),
            "tee",
            "already reads",
        ),
        (with("      key: k\n"), "key", "only used with kind"),
        (
            with("      fields: { data: d }\n"),
            "fields",
            "only used with kind",
        ),
        (
            with("      tee: { url: \"http://x\", key: k }\n"),
            "tee.url",
            "redis://",
        ),
        (
            with("      tee: { url: \"redis://x\", key: k, maxlen: 0 }\n"),
            "tee.maxlen",
            "at least 1",
        ),
    ] {
        let (line, column, path, message) = only_problem(&yaml);
        assert_eq!(path, format!("streams[0].upstream.{at}"), "{yaml}");
        assert!(message.contains(needle), "{message}");
        assert!(line >= 5 && column >= 1, "{line}:{column}");
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
