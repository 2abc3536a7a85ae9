//! Real-browser end to end (issues 3 and 7): Debian's Chromium, driven by playwright-core (`tests/browser/run.mjs`),
//! loads a test page that uses the browser client (`/_pushbridge/client.js`, DESIGN §4), directly and through real
//! nginx set up like the proxies found in the wild (defaults, buffering whatever the upstream says, gzip, restarts).
//! The application publishes numbered events (ids 1, 2, …) and the test knows exactly which were published before
//! each page's client started; every scenario asserts the transport the client settled on and that it delivered
//! every id published after that, in order, none repeated, none missing.
//!
//! Needs /usr/bin/chromium, nginx and tests/browser/node_modules, which `bash .ci/browser-deps` installs. Without
//! them the test fails, unless `PUSHBRIDGE_SKIP_BROWSER=1` is set: then it prints a skip line and passes.

mod support;

#[path = "browser/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use harness::{Browser, PageState, Tools, Until, browser_version, node_runs, skip_or_fail};
use support::client::{self, Proto};
use support::nginx::Nginx;
use support::proxy;
use support::upstream::SseUpstream;

/// Time between events of the application.
const TICK: Duration = Duration::from_millis(100);
/// Events each scenario waits for.
const EVENTS: usize = 15;
/// Bound on the whole run (Chromium start-up included).
const WHOLE_RUN: Duration = Duration::from_secs(180);
/// Short client deadlines for the scenarios that are not about them, so downgrades take about a second and a half.
/// The buffering scenarios use the client's defaults.
const SHORT_DEADLINES: &str = "openTimeout=3000&silenceTimeout=1500";
/// The promise about buffering proxies: the client is on long-poll within this long of `connect()`.
const DOWNGRADE_WITHIN_MS: u64 = 5000;

/// Forwards `Upgrade` and the browser's `Host` (the same-origin check compares `Origin` with it), as a proxy set up
/// for WebSocket does.
const PROXY_UPGRADE: &str = "proxy_http_version 1.1;\n\
    proxy_set_header Host $http_host;\n\
    proxy_set_header Upgrade $http_upgrade;\n\
    proxy_set_header Connection \"upgrade\";\n\
    proxy_buffering off;";
/// nginx's defaults: HTTP/1.0 upstream, no `Upgrade`; buffering on, but `X-Accel-Buffering: no` is honoured.
const PROXY_DEFAULT: &str = "";
/// nginx's default HTTP/1.0 upstream, buffering responses whatever they say: even the SSE headers are held back.
const PROXY_BUFFERING: &str = "proxy_buffering on;\nproxy_ignore_headers X-Accel-Buffering;";
/// The same, and gzip for event streams.
const PROXY_BUFFERING_GZIP: &str = "proxy_buffering on;\nproxy_ignore_headers X-Accel-Buffering;\n\
    gzip on;\ngzip_types text/event-stream;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_picks_and_switches_transports() {
    let Some(tools) = Tools::find() else { return };
    timeout(WHOLE_RUN, run_all(tools))
        .await
        .expect("the browser scenarios finished in time");
}

async fn run_all(tools: Tools) {
    let started = std::time::Instant::now();
    let ticks = Ticks::start().await;
    let page = harness::serve_page().await;
    let proxy = proxy::start(&config(ticks.upstream.addr, page)).await;
    let direct = proxy.addr();
    let mut run = Run {
        browser: Browser::launch(&tools).await,
        ticks,
        direct,
    };

    // 1. Straight to pushbridge: WebSocket. The first page on its stream (which holds nothing yet: the cursor is a
    // position token).
    let (state, _) = run
        .scenario("direct", direct, SHORT_DEADLINES, false, "ws")
        .await;
    assert_eq!(state.transports, ["ws"], "{state:?}");
    run.browser.close("direct").await;

    // 2. nginx with its defaults does not forward Upgrade: the WebSocket handshake fails, SSE works.
    let nginx = Nginx::start(tools.nginx(), direct, PROXY_DEFAULT, None).await;
    let (state, _witness) = run
        .scenario("nginx-default", nginx.addr(), SHORT_DEADLINES, false, "sse")
        .await;
    assert_eq!(state.transports, ["sse"], "{state:?}");
    run.browser.close("nginx-default").await;
    drop(nginx);

    // 3. nginx that buffers every response, with the client's default deadlines: the SSE stream stays silent (not
    // even its headers arrive), long-poll works within 5 s, and nothing published meanwhile is lost.
    for (name, proxying) in [
        ("nginx-buffering", PROXY_BUFFERING),
        ("nginx-buffering-gzip", PROXY_BUFFERING_GZIP),
    ] {
        let nginx = Nginx::start(tools.nginx(), direct, proxying, None).await;
        let (state, witness) = run
            .scenario(name, nginx.addr(), "", false, "long-poll")
            .await;
        assert_eq!(state.transports, ["long-poll"], "{state:?}");
        assert_downgraded_in_time(name, &state);
        if name == "nginx-buffering" {
            // The page session remembers what worked: after a reload, long-poll at once, nothing else tried.
            let newest = run.load(name, None, witness.as_ref()).await;
            let state = run
                .browser
                .wait(name, Until::events(EVENTS, "long-poll"))
                .await;
            assert_all_after("nginx-buffering, reloaded", &state, newest);
            assert_eq!(state.transports, ["long-poll"], "{state:?}");
            assert!(
                state.errors.is_empty(),
                "only the remembered transport is tried: {state:?}"
            );
        }
        run.browser.close(name).await;
        drop(nginx);
    }

    // 4. A browser with neither WebSocket nor EventSource: long-poll.
    let (state, _witness) = run
        .scenario("old-browser", direct, SHORT_DEADLINES, true, "long-poll")
        .await;
    assert_eq!(state.transports, ["long-poll"], "{state:?}");
    run.browser.close("old-browser").await;

    // 5. Mid-stream, nginx is restarted with a config that forwards no Upgrade and buffers: WebSocket → long-poll.
    switch_scenario(&mut run, &tools).await;

    // 6. nginx restarts mid-stream behind buffering: the client retries long-poll first; then nginx comes back
    // forwarding Upgrade: long-poll first again, and the WebSocket probe takes over.
    restart_scenario(&mut run, &tools).await;

    let shutdown = run.browser.quit();
    timeout(Duration::from_secs(15), shutdown)
        .await
        .expect("the browser driver exits");
    proxy.shutdown().await;
    println!(
        "browser scenarios: 7 passed in {:.1}s (chromium {})",
        started.elapsed().as_secs_f64(),
        browser_version()
    );
}

async fn switch_scenario(run: &mut Run, tools: &Tools) {
    let name = "switch";
    let nginx = Nginx::start(tools.nginx(), run.direct, PROXY_UPGRADE, None).await;
    let port = nginx.addr().port();
    let witness = Witness::start(run.direct, name).await;
    let url = page_url(nginx.addr(), name, SHORT_DEADLINES);
    let newest = run.load(name, Some((&url, false)), Some(&witness)).await;
    let before = run.browser.wait(name, Until::events(EVENTS, "ws")).await;
    drop(nginx);
    let nginx = Nginx::start(tools.nginx(), run.direct, PROXY_BUFFERING, Some(port)).await;
    let after = run
        .browser
        .wait(name, Until::events(before.ids.len() + EVENTS, "long-poll"))
        .await;
    run.browser.close(name).await;
    drop(nginx);
    assert_eq!(
        after.transports.first().map(String::as_str),
        Some("ws"),
        "{after:?}"
    );
    assert_all_after(name, &after, newest);
    println!(
        "browser scenario {name}: {:?}, {} ids after {newest} ({} before the restart), errors seen: {:?}",
        after.transports,
        after.ids.len(),
        before.ids.len(),
        after.errors
    );
}

async fn restart_scenario(run: &mut Run, tools: &Tools) {
    let name = "restart";
    let nginx = Nginx::start(tools.nginx(), run.direct, PROXY_BUFFERING, None).await;
    let port = nginx.addr().port();
    let witness = Witness::start(run.direct, name).await;
    let url = page_url(nginx.addr(), name, "probeInterval=4000");
    let newest = run.load(name, Some((&url, false)), Some(&witness)).await;
    let before = run
        .browser
        .wait(name, Until::events(EVENTS, "long-poll"))
        .await;

    // nginx goes away: the poll fails, then a whole round is refused, long-poll (the one that worked) first.
    drop(nginx);
    let failed = before.transport_errors();
    let until = Until {
        transport_errors: failed + 4,
        ..Until::default()
    };
    let down = run.browser.wait(name, until).await;
    let round: Vec<&str> = down
        .errors
        .iter()
        .filter(|e| e.starts_with("transport "))
        .skip(failed)
        .take(4)
        .map(|e| e.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        round,
        [
            "transport long-poll",
            "transport long-poll",
            "transport ws",
            "transport sse"
        ],
        "the dropped transport is retried first: {down:?}"
    );
    // Back before the next round (its backoff is at least 500 ms): long-poll again, at once, nothing walked.
    let nginx = Nginx::start(tools.nginx(), run.direct, PROXY_BUFFERING, Some(port)).await;
    let restarted = run.browser.mark(name, "restarted").await;
    let back = run
        .browser
        .wait(name, Until::events(down.ids.len() + EVENTS, "long-poll"))
        .await;
    let (_, since) = back.after_mark("restarted");
    let first = since.iter().find(|m| m.kind != "mark");
    assert!(
        first.is_some_and(|m| m.kind == "live"
            && m.what == "long-poll"
            && m.t.saturating_sub(restarted) < 3000),
        "after the restart, long-poll is retried first and recovers at once: {back:?}"
    );

    // nginx comes back forwarding Upgrade: long-poll is retried first, then the probe finds the WebSocket.
    drop(nginx);
    let nginx = Nginx::start(tools.nginx(), run.direct, PROXY_UPGRADE, Some(port)).await;
    run.browser.mark(name, "upgraded").await;
    let upgraded = run
        .browser
        .wait(name, Until::events(back.ids.len() + EVENTS, "ws"))
        .await;
    let (_, since) = upgraded.after_mark("upgraded");
    let live: Vec<&str> = since
        .iter()
        .filter(|m| m.kind == "live")
        .map(|m| m.what.as_str())
        .collect();
    assert_eq!(live, ["long-poll", "ws"], "{upgraded:?}");
    run.browser.close(name).await;
    drop(nginx);
    drop(witness);
    assert_all_after(name, &upgraded, newest);
    println!(
        "browser scenario {name}: {:?}, {} ids after {newest}, recovered {} ms after the restart, errors seen: {:?}",
        upgraded.transports,
        upgraded.ids.len(),
        first.map_or(0, |m| m.t.saturating_sub(restarted)),
        upgraded.errors
    );
}

/// The client's downgrade, resume, de-duplication and memory logic against scripted fakes of the browser APIs
/// (`tests/browser/client.test.mjs`, node's test runner; no browser needed).
#[tokio::test]
async fn client_logic_with_fake_browser_apis() {
    if skip_or_fail(if node_runs() { &[] } else { &["node"] }) {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/client.test.mjs");
    let run = Command::new("node")
        .arg("--test")
        .arg(&script)
        .kill_on_drop(true)
        .output();
    let output = timeout(Duration::from_secs(60), run)
        .await
        .expect("node --test finished in time")
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client.test.mjs failed:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}

/// The client must parse in ES5 browsers (it is the long-poll fallback for them): no ES2015+ syntax or APIs.
#[test]
fn client_is_es5() {
    let source = include_str!("../src/client/pushbridge.js");
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .filter(|line| !line.trim_start().starts_with('*') && !line.trim_start().starts_with("/*"))
        .collect::<Vec<_>>()
        .join("\n");
    for word in [
        "let", "const", "class", "async", "await", "Promise", "fetch", "Symbol", "Map", "Set",
    ] {
        let used = code
            .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '$')
            .any(|token| token == word);
        assert!(!used, "client.js uses `{word}`, which ES5 browsers lack");
    }
    for syntax in ["=>", "`", "...", "?.", "??"] {
        assert!(
            !code.contains(syntax),
            "client.js uses `{syntax}`, which ES5 browsers cannot parse"
        );
    }
}

/// Chromium offers permessage-deflate on every handshake: on a `compression: deflate` route it gets it, directly and
/// through nginx forwarding Upgrade, with the envelope subprotocol, and a large event arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_negotiates_permessage_deflate() {
    let Some(tools) = Tools::find() else { return };
    let upstream = Arc::new(SseUpstream::start(true).await);
    let page = harness::serve_page().await;
    let yaml = format!(
        "{}  - path: /big/{{channel}}\n    upstream: {{ url: \"http://{}/internal/big/{{channel}}\", kind: sse }}\n    ws: {{ compression: deflate, format: data }}\n",
        config(upstream.addr, page),
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let nginx = Nginx::start(tools.nginx(), proxy.addr(), PROXY_UPGRADE, None).await;
    let data = format!(
        "{{\"rows\":[{}]}}",
        vec!["{\"name\":\"row\",\"value\":12345}"; 60].join(",")
    );
    // Published until the test ends: the probe takes the first event after it opened.
    let publisher = {
        let (upstream, data) = (upstream.clone(), data.clone());
        tokio::spawn(async move {
            loop {
                upstream.publish(data.clone());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut browser = Browser::launch(&tools).await;
    for (name, base) in [
        ("deflate-direct", proxy.addr()),
        ("deflate-nginx", nginx.addr()),
    ] {
        browser
            .open(name, &page_url(base, "deflate", ""), false)
            .await;
        let seen = browser.ws_probe(name, &format!("ws://{base}/big/x")).await;
        assert_eq!(
            seen["extensions"], "permessage-deflate; server_no_context_takeover",
            "{name}: {seen}"
        );
        assert_eq!(seen["protocol"], "pushbridge.envelope.v1", "{name}: {seen}");
        let envelope: serde_json::Value =
            serde_json::from_str(seen["data"].as_str().unwrap_or_default()).unwrap();
        assert_eq!(envelope["data"], data.as_str(), "{name}");
        browser.close(name).await;
    }
    publisher.abort();
    browser.quit().await;
    let metrics = String::from_utf8(proxy.running().metrics().render()).unwrap();
    assert!(
        metrics.contains("pushbridge_ws_handshakes_total{extension=\"permessage-deflate\",subprotocol=\"pushbridge.envelope.v1\"} 2"),
        "{metrics}"
    );
}

fn config(upstream: SocketAddr, page: SocketAddr) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
passthrough: {{ upstream: "http://{page}" }}
streams:
  - path: /events/{{channel}}
    upstream:
      url: "http://{upstream}/internal/events/{{channel}}"
      kind: sse
      reconnect: {{ initial: 10ms, max: 100ms }}
    buffer: {{ events: 1000, age: 5m }}
    long_poll: {{ timeout: 5s }}
"#
    )
}

/// The test page on `base`, for stream `/events/{name}`, with client options `query` (empty: the defaults).
fn page_url(base: SocketAddr, name: &str, query: &str) -> String {
    format!("http://{base}/?stream=/events/{name}&{query}")
}

/// The browser, the application and pushbridge's own address, for the scenarios.
struct Run {
    browser: Browser,
    ticks: Arc<Ticks>,
    direct: SocketAddr,
}

impl Run {
    /// One scenario: load the page on `base` (stream `/events/{name}`, client options `query`), wait for [`EVENTS`]
    /// events over `transport`, check that every id published after the page loaded arrived. The page stays open,
    /// and the returned witness keeps its stream warm. The `direct` scenario's page is the first on its stream.
    async fn scenario(
        &mut self,
        name: &str,
        base: SocketAddr,
        query: &str,
        old_browser: bool,
        transport: &str,
    ) -> (PageState, Option<Witness>) {
        let witness = match name {
            "direct" => None,
            _ => Some(Witness::start(self.direct, name).await),
        };
        let url = page_url(base, name, query);
        let newest = self
            .load(name, Some((&url, old_browser)), witness.as_ref())
            .await;
        let state = self
            .browser
            .wait(name, Until::events(EVENTS, transport))
            .await;
        assert_all_after(name, &state, newest);
        println!(
            "browser scenario {name}: {transport}, {} ids after {newest}, live at {:?} ms, errors seen: {:?}",
            state.ids.len(),
            state
                .timeline
                .iter()
                .filter(|m| m.kind == "live")
                .map(|m| m.t)
                .collect::<Vec<_>>(),
            state.errors
        );
        (state, witness)
    }

    /// Opens page `name` at `url` (or reloads it) at a moment the test knows exactly: publishing paused, and the
    /// stream holding every id published (with a `witness`), or not live yet (without: the page's first request
    /// connects its upstream). Publishing resumes once the page's client holds its first cursor, which must be the
    /// stream's position then, and the upstream is connected. Returns the newest id published before the client
    /// started.
    async fn load(
        &mut self,
        name: &str,
        open: Option<(&str, bool)>,
        witness: Option<&Witness>,
    ) -> u64 {
        let newest = self.ticks.pause();
        let connections = self.ticks.upstream.connections();
        if let Some(witness) = witness {
            witness.wait_for(newest).await;
        }
        match open {
            Some((url, old_browser)) => self.browser.open(name, url, old_browser).await,
            None => self.browser.reload(name).await,
        }
        let until = Until {
            cursor: true,
            ..Until::default()
        };
        let state = self.browser.wait(name, until).await;
        if witness.is_none() {
            self.ticks.upstream.wait_connections(connections + 1).await;
        }
        self.ticks.resume();
        let cursor = state.cursor.clone().unwrap_or_default();
        let position = match witness {
            Some(_) => cursor == newest.to_string(),
            None => cursor.starts_with("pb:"),
        };
        assert!(
            position,
            "{name}: the client's first cursor is the stream's position when it started: {state:?}"
        );
        newest
    }
}

/// Every id published after `newest`, in order, none repeated, none missing (and at least [`EVENTS`] of them);
/// no gap notice, no script error.
fn assert_all_after(scenario: &str, state: &PageState, newest: u64) {
    let ids: Vec<u64> = state
        .ids
        .iter()
        .map(|id| {
            id.parse()
                .unwrap_or_else(|_| panic!("{scenario}: id {id:?} is not a number: {state:?}"))
        })
        .collect();
    assert!(ids.len() >= EVENTS, "{scenario}: too few events: {state:?}");
    let expected: Vec<u64> = (newest + 1..).take(ids.len()).collect();
    assert_eq!(
        ids, expected,
        "{scenario}: not every id published after {newest}, in order, once: {state:?}"
    );
    assert!(
        state.events.iter().all(|e| e == "message"),
        "{scenario}: unexpected events (a gap?): {state:?}"
    );
    let script_error = state
        .console
        .iter()
        .any(|line| line.starts_with("pageerror"));
    assert!(
        !script_error,
        "{scenario}: script error in the page: {state:?}"
    );
}

/// Behind a buffering proxy, long-poll went live within [`DOWNGRADE_WITHIN_MS`] of `connect()`.
fn assert_downgraded_in_time(scenario: &str, state: &PageState) {
    let live = state
        .timeline
        .iter()
        .find(|m| m.kind == "live" && m.what == "long-poll");
    assert!(
        live.is_some_and(|m| m.t < DOWNGRADE_WITHIN_MS),
        "{scenario}: on long-poll within {DOWNGRADE_WITHIN_MS} ms: {state:?}"
    );
}

/// The application: [`SseUpstream`] with one event published every [`TICK`] (ids 1, 2, …). Publishing can be
/// paused, and the newest id published is known exactly.
struct Ticks {
    upstream: SseUpstream,
    /// Paused, and the newest id published: changed together, under the lock.
    state: Mutex<(bool, u64)>,
}

impl Ticks {
    async fn start() -> Arc<Ticks> {
        let ticks = Arc::new(Ticks {
            upstream: SseUpstream::start(true).await,
            state: Mutex::new((false, 0)),
        });
        let publisher = Arc::downgrade(&ticks);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                let Some(ticks) = publisher.upgrade() else {
                    return;
                };
                let mut state = ticks.state.lock().unwrap();
                if !state.0 {
                    state.1 += 1;
                    ticks.upstream.publish(format!("{{\"tick\":{}}}", state.1));
                }
            }
        });
        ticks
    }

    /// Stops publishing; returns the newest id published.
    fn pause(&self) -> u64 {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        state.1
    }

    fn resume(&self) {
        self.state.lock().unwrap().0 = false;
    }
}

/// A subscriber straight to pushbridge's stream `/events/{name}`: keeps the stream warm (its upstream connected)
/// and shows which ids it holds.
struct Witness {
    newest: watch::Receiver<u64>,
    reader: JoinHandle<()>,
}

impl Witness {
    /// Subscribes and waits for the first event, so the stream's upstream is connected.
    async fn start(direct: SocketAddr, name: &str) -> Witness {
        let mut sse = client::connect(direct, Proto::H1)
            .await
            .sse(direct, &format!("/events/{name}?transport=sse"), None)
            .await;
        let (tx, newest) = watch::channel(0);
        let reader = tokio::spawn(async move {
            while let Some(event) = sse.next_event().await {
                if let Some(id) = event.id.and_then(|id| id.parse().ok()) {
                    tx.send_replace(id);
                }
            }
        });
        let witness = Witness { newest, reader };
        witness.wait_for(1).await;
        witness
    }

    /// Waits until the stream has delivered id `id`.
    async fn wait_for(&self, id: u64) {
        let mut newest = self.newest.clone();
        timeout(client::WAIT, newest.wait_for(|&n| n >= id))
            .await
            .unwrap_or_else(|_| panic!("the stream did not deliver id {id} in time"))
            .expect("the witness reads the stream");
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
