//! Stream differential (issue 15): for every upstream kind (`sse`, `ws`, `ndjson`, `poll`, `redis`) and client
//! transport (SSE, WebSocket, long-poll), what a client gets through the real binary is compared with what "a browser
//! reading the app directly" gets, scenario by scenario, after removing only pushbridge's documented changes
//! (stream_differential/normalize.rs, `REMOVED`).
//!
//! - `sse` apps: the reference is a third-party WHATWG EventSource reading the same scripted app directly: node
//!   `eventsource` 4.x for the whole corpus, Chromium's own EventSource for a subset.
//! - `ws`, `ndjson`, `poll`: the reference is the app's own output decoded by the kind's documented mapping.
//! - `redis`: the reference is the Redis stream (`XRANGE`) decoded by the documented mapping.
//! - Through pushbridge the clients are node `eventsource` (SSE), tokio-tungstenite (WebSocket) and a hyper
//!   long-poll loop, all three on one stream per scenario.
//!
//! Every scenario's app waits (a gate) until the clients are subscribed, except in the fresh-streams run, whose app
//! writes two events the moment it is connected. Known differences are in `#[ignore]`d tests that assert the same
//! comparison strictly (`cargo test --test stream_differential -- --ignored` shows whether they still differ).
//! The whole file runs in about 30 s.
//!
//! Needs node with tests/stream_differential/node_modules (`bash .ci/stream-diff-deps`) and redis-server; the
//! Chromium tests also need tests/browser/node_modules and /usr/bin/chromium (`bash .ci/browser-deps`), or
//! `PUSHBRIDGE_SKIP_BROWSER=1` to skip them.

mod support;

#[path = "stream_differential/apps.rs"]
mod apps;
#[path = "stream_differential/clients.rs"]
mod clients;
#[path = "stream_differential/corpus_json.rs"]
mod corpus_json;
#[path = "stream_differential/corpus_redis.rs"]
mod corpus_redis;
#[path = "stream_differential/corpus_sse.rs"]
mod corpus_sse;
#[path = "stream_differential/harness.rs"]
mod harness;
#[path = "stream_differential/json_kinds.rs"]
mod json_kinds;
#[path = "stream_differential/node.rs"]
mod node;
#[path = "stream_differential/normalize.rs"]
mod normalize;
#[path = "stream_differential/parallel.rs"]
mod parallel;

use std::time::Instant;

use clients::Transport;
use corpus_sse::Reference;
use harness::{Env, Outcome, report};
use json_kinds::Kind;
use parallel::Upstream;
use support::redis::RedisServer;

/// Fails with every difference (of the cases not known to differ; of all cases when `strict`).
fn verdict(title: &str, started: Instant, outcomes: &[Outcome], strict: bool) {
    let unexpected = report(title, outcomes, strict);
    println!("{title}: {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        unexpected.is_empty(),
        "{title}: {} difference(s):\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

fn chromium_available() -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ready = root
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
        && std::path::Path::new("/usr/bin/chromium").exists();
    if !ready && std::env::var_os("PUSHBRIDGE_SKIP_BROWSER").is_some() {
        println!("skipped: Chromium or playwright-core missing and PUSHBRIDGE_SKIP_BROWSER is set");
        return false;
    }
    assert!(
        ready,
        "Chromium tests need `bash .ci/browser-deps` (or PUSHBRIDGE_SKIP_BROWSER=1)"
    );
    true
}

async fn sse_corpus(reference: Reference, known: bool) -> Vec<Outcome> {
    let env = Env::start(&corpus_sse::routes()).await;
    let cases = corpus_sse::corpus().into_iter().filter(|c| {
        c.known.is_some() == known
            && match reference {
                Reference::Node => c.node,
                Reference::Chromium => c.chromium,
            }
    });
    let runs: Vec<_> = cases.collect();
    let outcomes =
        futures_util::future::join_all(runs.iter().map(|c| corpus_sse::run(&env, c, reference)))
            .await;
    env.close().await;
    outcomes.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_apps_match_node_eventsource() {
    let started = Instant::now();
    let outcomes = sse_corpus(Reference::Node, false).await;
    verdict("sse corpus vs node eventsource", started, &outcomes, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_apps_match_chromium() {
    if !chromium_available() {
        return;
    }
    let started = Instant::now();
    let outcomes = sse_corpus(Reference::Chromium, false).await;
    verdict("sse corpus vs chromium", started, &outcomes, false);
}

async fn json_corpus() -> Vec<Outcome> {
    let env = Env::start(&json_kinds::routes()).await;
    let cases = corpus_json::corpus();
    let runs: Vec<(Kind, &json_kinds::Case)> = cases
        .iter()
        .flat_map(|c| c.kinds.iter().map(move |k| (*k, c)))
        .collect();
    let outcomes =
        futures_util::future::join_all(runs.iter().map(|(k, c)| json_kinds::run(&env, *k, c)))
            .await;
    outcomes.into_iter().flatten().collect()
}

/// Issue 15 finding B3: a long-poll client whose last id the app reuses between two polls gets every event (the
/// cursor names the occurrence it saw).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_across_reused_ids() {
    let started = Instant::now();
    let env = Env::start(&corpus_sse::routes()).await;
    let outcomes = corpus_sse::long_poll_across_reused_ids(&env).await;
    verdict(
        "long-poll across reused ids vs node eventsource",
        started,
        &outcomes,
        true,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_apps_match_their_documented_mapping() {
    let started = Instant::now();
    let outcomes = json_corpus().await;
    verdict(
        "ws/ndjson/poll corpus vs documented mapping",
        started,
        &outcomes,
        false,
    );
}

async fn redis_corpus(known: bool) -> Vec<Outcome> {
    let redis = RedisServer::start().await;
    let env = Env::start(&corpus_redis::routes(&redis)).await;
    let mut outcomes = Vec::new();
    let cases = corpus_redis::corpus();
    for case in cases.iter().filter(|c| c.known.is_some() == known) {
        outcomes.extend(corpus_redis::run(&env, &redis, case).await);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_match_xrange() {
    let started = Instant::now();
    let outcomes = redis_corpus(false).await;
    verdict("redis corpus vs XRANGE", started, &outcomes, false);
}

async fn fresh_streams(upstreams: &[Upstream], redis: Option<&RedisServer>) -> Vec<Outcome> {
    let mut routes = corpus_sse::routes();
    routes.push_str(&json_kinds::routes());
    if let Some(redis) = redis {
        routes.push_str(&corpus_redis::routes(redis));
    }
    let env = Env::start(&routes).await;
    let mut outcomes = Vec::new();
    for &upstream in upstreams {
        for transport in Transport::ALL {
            let at = Instant::now();
            let outcome = parallel::run(&env, redis, upstream, transport).await;
            println!(
                "  {} via {}: {:.1}s, {}",
                upstream.name(),
                transport.name(),
                at.elapsed().as_secs_f64(),
                outcome.difference.as_deref().unwrap_or("same")
            );
            outcomes.push(outcome);
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_streams_in_parallel_get_their_first_events() {
    let started = Instant::now();
    let upstreams = [
        Upstream::Sse,
        Upstream::Json(Kind::Ws),
        Upstream::Json(Kind::Ndjson),
        Upstream::Json(Kind::Poll),
    ];
    let outcomes = fresh_streams(&upstreams, None).await;
    verdict("fresh streams in parallel", started, &outcomes, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_redis_streams_keep_entries_appended_after_subscribing() {
    let started = Instant::now();
    let redis = RedisServer::start().await;
    let outcomes = fresh_streams(&[Upstream::Redis], Some(&redis)).await;
    verdict("fresh Redis streams in parallel", started, &outcomes, true);
}
