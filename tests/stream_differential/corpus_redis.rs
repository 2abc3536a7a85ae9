//! `kind: redis` against a real `redis-server`: the test is the application (`XADD`), the reference is the stream
//! itself (`XRANGE`) read by the documented mapping (docs/protocol.md "redis", docs/config.md `upstream.fields`): the
//! entry id is the event id, `event` its name (absent or empty: `message`), `data` its data; an entry without
//! `data`, with a name holding a line break, or data over `limits.max_event_bytes` is skipped (not UTF-8: skipped too,
//! which the docs do not say).

use std::time::Duration;

use super::clients::{Client, END, Transport};
use super::harness::{Env, MAX_EVENT_BYTES, Outcome, READ_LIMIT, failed, judge};
use super::normalize::{Expected, IdRule};
use super::support::redis::RedisServer;

/// The binary's Redis route, `/redis/{channel}` reading the stream `pbdiff:{channel}`.
pub fn routes(redis: &RedisServer) -> String {
    super::harness::route(
        "/redis/{channel}",
        &format!(
            "      kind: redis\n      url: \"{}\"\n      key: \"pbdiff:{{channel}}\"\n",
            redis.url()
        ),
    )
}

/// One entry: its fields in order.
pub type Entry = Vec<(&'static str, Vec<u8>)>;

pub struct Case {
    pub name: &'static str,
    /// Entries appended before any client opens the stream; the clients resume after the first of them.
    pub before: Vec<Entry>,
    /// Entries appended once the clients are subscribed and the upstream is connected.
    pub entries: Vec<Entry>,
    pub transports: &'static [Transport],
    pub known: Option<&'static str>,
}

fn entry(fields: &[(&'static str, &str)]) -> Entry {
    fields
        .iter()
        .map(|(k, v)| (*k, v.as_bytes().to_vec()))
        .collect()
}

pub fn end_entry() -> Entry {
    entry(&[("event", END), ("data", "end")])
}

pub fn corpus() -> Vec<Case> {
    let huge = "x".repeat(4 * MAX_EVENT_BYTES);
    let case = |name, entries| Case {
        name,
        before: Vec::new(),
        entries,
        transports: &Transport::ALL,
        known: None,
    };
    let backlog: Vec<Entry> = (0..19)
        .map(|i| entry(&[("event", "tick"), ("data", &format!("old {i}"))]))
        .collect();
    vec![
        case(
            "plain",
            vec![
                entry(&[("event", "tick"), ("data", "a")]),
                entry(&[("data", "no name")]),
                entry(&[
                    ("data", "extra fields"),
                    ("other", "ignored"),
                    ("event", "late"),
                ]),
            ],
        ),
        case(
            "multi-line-and-empty-data",
            vec![
                entry(&[("data", "l1\nl2")]),
                entry(&[("data", "a\r\nb")]),
                entry(&[("data", "")]),
                entry(&[("data", "\n")]),
                entry(&[("event", ""), ("data", "empty name")]),
            ],
        ),
        case(
            "skipped-entries",
            vec![
                entry(&[("event", "no data")]),
                entry(&[("event", "x\ny"), ("data", "line break in name")]),
                entry(&[("data", &huge)]),
                vec![("data", b"bad \xff utf-8".to_vec())],
                entry(&[("data", "ok")]),
            ],
        ),
        Case {
            name: "deep-resume",
            before: backlog.clone(),
            ..case("deep-resume", vec![entry(&[("data", "live")])])
        },
        Case {
            name: "deep-resume-wait0",
            before: backlog,
            transports: &[Transport::LongPollNow],
            ..case("deep-resume-wait0", vec![entry(&[("data", "live")])])
        },
    ]
}

pub type Connection = redis::aio::MultiplexedConnection;

pub async fn xadd(redis: &mut Connection, key: &str, fields: &Entry) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(value.as_slice());
    }
    cmd.query_async(redis).await.expect("XADD")
}

/// The stream `key` read by the documented mapping (entries after `after`, when given).
pub async fn reference(redis: &RedisServer, key: &str, after: Option<&str>) -> Vec<Expected> {
    let start = after.map_or("-".to_owned(), |id| format!("({id}"));
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .query_async(&mut redis.connection().await)
        .await
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .filter_map(|entry| {
            let field = |name: &str| -> Result<Option<String>, ()> {
                match entry.map.get(name) {
                    None => Ok(None),
                    Some(value) => redis::from_redis_value_ref::<Vec<u8>>(value)
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .map(Some)
                        .ok_or(()),
                }
            };
            let data = field("data").ok()??;
            let name = field("event").ok()?.unwrap_or_default();
            if data.len() > MAX_EVENT_BYTES || name.contains(['\r', '\n', '\0']) {
                return None;
            }
            Some(Expected {
                event: if name.is_empty() {
                    "message".into()
                } else {
                    name
                },
                data,
                id: entry.id.clone(),
            })
        })
        .collect()
}

/// Runs `case`: the clients open (from the first `before` entry), then once the upstream is connected the entries
/// are appended.
pub async fn run(env: &Env, redis: &RedisServer, case: &Case) -> Vec<Outcome> {
    let key = format!("pbdiff:{}", case.name);
    let mut connection = redis.connection().await;
    let mut first = None;
    for entry in &case.before {
        let id = xadd(&mut connection, &key, entry).await;
        first.get_or_insert(id);
    }
    let path = format!("/redis/{}", case.name);
    let expected_names: Vec<String> = case
        .before
        .iter()
        .chain(&case.entries)
        .filter_map(|e| e.iter().find(|(k, _)| *k == "event"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    let mut names = vec!["message", END];
    names.extend(expected_names.iter().map(String::as_str));
    let mut clients = Vec::new();
    for &transport in case.transports {
        match Client::open(
            transport,
            &env.node,
            env.addr,
            &path,
            &names,
            first.as_deref(),
        )
        .await
        {
            Ok(client) => clients.push((transport, client)),
            Err(e) => return vec![failed("redis", case.name, case.known, transport.name(), e)],
        }
    }
    if !env.upstream_connected("/redis/{channel}", case.name).await {
        return vec![failed(
            "redis",
            case.name,
            case.known,
            "-",
            "the upstream never connected".into(),
        )];
    }
    for entry in case.entries.iter().chain([&end_entry()]) {
        xadd(&mut connection, &key, entry).await;
    }
    let expected = reference(redis, &key, first.as_deref()).await;
    let limit = if case.known.is_some() {
        Duration::from_secs(5)
    } else {
        READ_LIMIT
    };
    let reads = futures_util::future::join_all(
        clients
            .into_iter()
            .map(|(t, c)| async move { (t, c.collect(limit).await) }),
    )
    .await;
    reads
        .into_iter()
        .map(|(transport, log)| {
            judge(
                "redis",
                case.name,
                case.known,
                "XRANGE + mapping",
                IdRule::Own,
                &expected,
                transport,
                log,
            )
        })
        .collect()
}
