//! The `publish:` block, `kind: publish` and `publish: true` (issue 18).

use super::*;

const PUBLISHING: &str = "\
listen:
  - address: 127.0.0.1:8080
publish:
  address: 127.0.0.1:9091
  token: s3cret
streams:
  - path: /events/{channel}
    upstream: { kind: publish }
  - path: /rooms/{room}
    upstream: { kind: redis, url: \"redis://127.0.0.1:6379/0\", key: \"room:{room}\" }
    publish: true
";

#[test]
fn publish_block_and_publishing_routes_parse() {
    let config = Config::parse("test.yaml", PUBLISHING).unwrap();
    let publish = config.publish.as_ref().unwrap();
    assert_eq!(publish.address, "127.0.0.1:9091".parse().unwrap());
    assert_eq!(publish.max_body, DEFAULT_PUBLISH_MAX_BODY);
    assert_eq!(publish.token.as_deref(), Some("s3cret"));
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "the token never shows"
    );
    assert_eq!(config.streams[0].upstream.kind, UpstreamKind::Publish);
    assert!(config.streams[0].upstream.url.is_empty());
    assert!(config.streams[1].publish);
}

#[test]
fn publish_true_is_refused_on_other_kinds_with_the_reason() {
    let yaml = "\
listen:
  - address: 127.0.0.1:8080
publish: { address: 127.0.0.1:9091 }
streams:
  - path: /events/{channel}
    upstream: { url: \"http://127.0.0.1:9000/{channel}\" }
    publish: true
";
    let (line, column, path, message) = only_problem(yaml);
    assert_eq!((line, column, path.as_str()), (7, 14, "streams[0].publish"));
    assert!(message.contains("kind: redis"), "{message}");
    assert!(message.contains("kind: sse"), "{message}");
}

#[test]
fn kind_publish_takes_no_url_and_other_kinds_need_one() {
    let with_url = PUBLISHING.replace(
        "{ kind: publish }",
        "{ kind: publish, url: \"http://a/x\" }",
    );
    let (line, _, path, message) = only_problem(&with_url);
    assert_eq!((line, path.as_str()), (8, "streams[0].upstream.url"));
    assert!(message.contains("remove `url`"), "{message}");
    let no_url = PUBLISHING.replace("{ kind: publish }", "{ kind: sse }");
    let (line, _, path, message) = only_problem(&no_url);
    assert_eq!((line, path.as_str()), (8, "streams[0].upstream.url"));
    assert!(message.contains("needs the upstream `url`"), "{message}");
}

#[test]
fn publishing_routes_need_the_publish_listener() {
    let without = PUBLISHING.replace("publish:\n  address: 127.0.0.1:9091\n  token: s3cret\n", "");
    let all = problems(&without);
    let paths: Vec<_> = all.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["streams[0].upstream.kind", "streams[1].publish"],
        "{all:#?}"
    );
    assert!(all[0].message.contains("`publish: { address"), "{all:#?}");
}

#[test]
fn publish_listener_rules_are_located() {
    let clash = PUBLISHING.replace("address: 127.0.0.1:9091", "address: 127.0.0.1:8080");
    let (line, column, path, message) = only_problem(&clash);
    assert_eq!((line, column, path.as_str()), (4, 12, "publish.address"));
    assert!(message.contains("listen[0]"), "{message}");
    let spaced = PUBLISHING.replace("token: s3cret", "token: \"two words\"");
    let (_, _, path, message) = only_problem(&spaced);
    assert_eq!(path, "publish.token");
    assert!(!message.contains("two words"), "never the token: {message}");
    let big = PUBLISHING.replace("token: s3cret", "max_body: 65MiB");
    let (_, _, path, message) = only_problem(&big);
    assert_eq!(path, "publish.max_body");
    assert!(message.contains("64MiB"), "{message}");
    let per_client = PUBLISHING.replace(
        "    upstream: { kind: publish }\n",
        "    upstream: { kind: publish }\n    mode: per-client\n    transports: [sse]\n",
    );
    let (_, _, path, _) = only_problem(&per_client);
    assert_eq!(path, "streams[0].mode");
}
