//! Fresh streams opened in parallel (issue 15 item 3): [`channels`] distinct channels per upstream kind and client
//! transport, `WAVE` at a time, each on a stream that nobody has opened before, whose application sends two events
//! as soon as the connection is made. Each client is opened (subscription acknowledged), then the application sends
//! an end event; the client must have got both first events, with the app's ids, before it.

use std::sync::Arc;

use serde_json::json;

use super::apps::{Conn, Step};
use super::clients::{Client, END, Transport};
use super::harness::{Env, Outcome, READ_LIMIT, judge};
use super::json_kinds::Kind;
use super::normalize::{Expected, IdRule};
use super::support::redis::RedisServer;

/// Channels per (upstream kind, transport); `PBDIFF_CHANNELS` overrides it (to probe harder by hand).
pub fn channels() -> usize {
    std::env::var("PBDIFF_CHANNELS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}
pub const WAVE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Sse,
    Json(Kind),
    Redis,
}

impl Upstream {
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Sse => "sse",
            Upstream::Json(kind) => kind.name(),
            Upstream::Redis => "redis",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Upstream::Sse => "/sse",
            Upstream::Json(Kind::Ws) => "/ws",
            Upstream::Json(Kind::Ndjson) => "/ndjson",
            Upstream::Json(Kind::Poll) => "/poll",
            Upstream::Redis => "/redis",
        }
    }
}

fn expected(ids: [&str; 3]) -> Vec<Expected> {
    let e = |event: &str, data: &str, id: &str| Expected {
        event: event.into(),
        data: data.into(),
        id: id.into(),
    };
    vec![
        e("message", "first", ids[0]),
        e("message", "second", ids[1]),
        e(END, "end", ids[2]),
    ]
}

/// The script of one fresh channel: two events on connect, the end event once released.
fn script(upstream: Upstream) -> Vec<Conn> {
    let w = |s: String| Step::Write(s.into_bytes());
    let doc = |id: Option<&str>, event: Option<&str>, data: &str| {
        let mut d = json!({ "data": data });
        if let Some(id) = id {
            d["id"] = id.into();
        }
        if let Some(event) = event {
            d["type"] = event.into();
        }
        d
    };
    match upstream {
        Upstream::Sse => vec![Conn::any(vec![
            w("id: 1\ndata: first\n\n".into()),
            w("id: 2\ndata: second\n\n".into()),
            Step::Gate(1),
            w(format!("event: {END}\ndata: end\n\n")),
        ])],
        Upstream::Json(Kind::Poll) => vec![
            Conn::any(vec![w(json!({
                "events": [doc(Some("1"), None, "first"), doc(Some("2"), None, "second")],
                "cursor": "2"
            })
            .to_string())]),
            Conn::any(vec![
                Step::Gate(1),
                w(json!({ "events": [doc(None, Some(END), "end")] }).to_string()),
            ]),
        ],
        // One WebSocket message or NDJSON line each.
        Upstream::Json(kind) => {
            let end = if kind == Kind::Ndjson { "\n" } else { "" };
            vec![Conn::any(vec![
                w(format!("{}{end}", doc(Some("1"), None, "first"))),
                w(format!("{}{end}", doc(Some("2"), None, "second"))),
                Step::Gate(1),
                w(format!("{}{end}", doc(None, Some(END), "end"))),
            ])]
        }
        Upstream::Redis => Vec::new(),
    }
}

/// Opens `CHANNELS` fresh streams of `upstream` with `transport`, `WAVE` at a time; one outcome, whose difference
/// lists the channels that did not get exactly the reference.
pub async fn run(
    env: &Env,
    redis: Option<&RedisServer>,
    upstream: Upstream,
    transport: Transport,
) -> Outcome {
    let names = ["message", END];
    let mut differing = Vec::new();
    for wave in 0..channels().div_ceil(WAVE) {
        let channels: Vec<String> = (wave * WAVE..((wave + 1) * WAVE).min(channels()))
            .map(|i| format!("par-{}-{}-{i}", upstream.name(), transport.name()))
            .collect();
        for channel in &channels {
            if upstream != Upstream::Redis {
                env.apps
                    .script(channel, script(upstream), Arc::new(|_| Vec::new()));
            }
        }
        let opens = channels.iter().map(|channel| {
            let path = format!("{}/{channel}", upstream.path());
            async move { Client::open(transport, &env.node, env.addr, &path, &names, None).await }
        });
        let clients = futures_util::future::join_all(opens).await;
        let mut ids: Vec<[String; 3]> =
            vec![["1".into(), "2".into(), String::new()]; channels.len()];
        match redis {
            Some(redis) => {
                let redis = &mut redis.connection().await;
                for (channel, ids) in channels.iter().zip(&mut ids) {
                    let key = format!("pbdiff:{channel}");
                    ids[0] = super::corpus_redis::xadd(redis, &key, &entry("first")).await;
                    ids[1] = super::corpus_redis::xadd(redis, &key, &entry("second")).await;
                }
                for (channel, ids) in channels.iter().zip(&mut ids) {
                    if !env.upstream_connected("/redis/{channel}", channel).await {
                        ids[2] = "the upstream never connected".into();
                        continue;
                    }
                    let key = format!("pbdiff:{channel}");
                    ids[2] =
                        super::corpus_redis::xadd(redis, &key, &super::corpus_redis::end_entry())
                            .await;
                }
            }
            None => {
                for channel in &channels {
                    env.apps.release(channel);
                }
            }
        }
        let reads = clients.into_iter().map(|client| async move {
            match client {
                Ok(client) => Ok(client.collect(READ_LIMIT).await),
                Err(e) => Err(e),
            }
        });
        let logs = futures_util::future::join_all(reads).await;
        for ((channel, log), ids) in channels.iter().zip(logs).zip(&ids) {
            let expected = expected([&ids[0], &ids[1], &ids[2]]);
            let difference = match log {
                Err(e) => Some(format!("could not open: {e}")),
                Ok(log) => {
                    judge(
                        upstream.name(),
                        channel,
                        None,
                        "-",
                        IdRule::Own,
                        &expected,
                        transport,
                        log,
                    )
                    .difference
                }
            };
            if let Some(difference) = difference {
                differing.push(format!("{channel}: {difference}"));
            }
        }
    }
    let difference = (!differing.is_empty()).then(|| {
        let shown: Vec<&str> = differing.iter().take(3).map(String::as_str).collect();
        format!(
            "{} of {} channels differ; first: {}",
            differing.len(),
            channels(),
            shown.join(" | ")
        )
    });
    Outcome {
        kind: upstream.name(),
        case: format!("fresh-streams-x{}", channels()),
        transport: transport.name(),
        reference: if redis.is_some() {
            "XRANGE + mapping"
        } else {
            "the app's output"
        },
        known: None,
        events: 3 * channels(),
        difference,
    }
}

fn entry(data: &str) -> super::corpus_redis::Entry {
    vec![("data", data.as_bytes().to_vec())]
}
