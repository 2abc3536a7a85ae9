//! The admin status page (issue 19, item 1): `/status.json` over plain HTTP, and `/status` in headless Chromium,
//! with two stream routes, clients on three transports (HTTP/1.1 and HTTP/2), a stream key that is HTML and an
//! upstream that is down (reconnecting). Every number the page shows is checked against `/metrics`.
//!
//! The browser half needs what tests/browser.rs needs (`bash .ci/browser-deps`); `PUSHBRIDGE_SKIP_BROWSER=1` skips
//! it when they are missing.

mod support;

#[path = "browser/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::client::{self, Proto, SseClient, empty, eventually, get_text};
use support::proxy::{self, TestProxy};
use support::upstream::SseUpstream;

/// A stream key a client chose: HTML the page must show as text.
const HTML_KEY: &str = "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
/// The same, decoded.
const HTML_KEY_TEXT: &str = "<img src=x onerror=alert(1)>";

/// The proxy with its routes, upstream and clients, all kept alive while the test looks.
struct Scene {
    proxy: TestProxy,
    _upstream: SseUpstream,
    _sse: Vec<SseClient>,
    _ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    _poll: JoinHandle<()>,
}

/// Route `ticks` (live SSE upstream; on `/ticks/a` one WebSocket, one SSE over HTTP/1.1 and one held long-poll
/// over HTTP/2, and one SSE over HTTP/2 on the HTML key) and route `feed` (its upstream refuses connections; one SSE
/// client waits on `/feed/lobby`).
async fn scene() -> Scene {
    let upstream = SseUpstream::start(true).await;
    // A port nothing listens on.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - name: ticks
    path: /ticks/{{channel}}
    upstream: {{ url: "http://{up}/up/{{channel}}" }}
    idle_timeout: 1m
  - name: feed
    path: /feed/{{room}}
    upstream: {{ url: "http://{down}/feed/{{room}}", reconnect: {{ initial: 5s, max: 10s }} }}
"#,
        up = upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();

    let mut h1 = client::connect(addr, Proto::H1).await;
    let mut sse_a = h1.sse(addr, "/ticks/a", None).await;
    let mut h2 = client::connect(addr, Proto::H2).await;
    let sse_html = h2.sse(addr, &format!("/ticks/{HTML_KEY}"), None).await;
    let mut h1b = client::connect(addr, Proto::H1).await;
    let sse_feed = h1b.sse(addr, "/feed/lobby", None).await;
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/ticks/a"))
        .await
        .expect("WebSocket opens");
    assert_eq!(response.headers()["x-pushbridge-transport"], "ws");
    upstream.wait_connections(2).await;
    for i in 1..=3 {
        upstream.publish(format!("e{i}"));
    }
    let got = sse_a.take(3).await;
    assert_eq!(got.len(), 3);
    // A long-poll past the newest event: held (a subscriber) until the test ends.
    let mut h2b = client::connect(addr, Proto::H2).await;
    let uri = format!("http://{addr}/ticks/a?transport=long-poll&last_event_id=3");
    let poll = tokio::spawn(async move {
        let _ = h2b
            .send(http::Request::get(uri).body(empty()).expect("request"))
            .await;
    });
    let admin = proxy.admin();
    eventually(
        "every subscriber is in, and feed's upstream has failed",
        || async move {
            let s = status(admin).await;
            let ticks = route(&s, "ticks");
            let feed = route(&s, "feed");
            ticks["busiest"][0]["subscribers"]["long-poll"] == 1
                && ticks["busiest"][0]["subscribers"]["ws"] == 1
                && feed["busiest"][0]["upstream"] == "reconnecting"
        },
    )
    .await;
    Scene {
        proxy,
        _upstream: upstream,
        _sse: vec![sse_a, sse_html, sse_feed],
        _ws: ws,
        _poll: poll,
    }
}

async fn status(admin: SocketAddr) -> Value {
    let (code, body) = get_text(admin, "/status.json").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status.json is JSON")
}

fn route<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no route {name}: {status:#}"))
}

/// The value of one series of the proxy's `/metrics` (exact name and labels).
fn metric(proxy: &TestProxy, series: &str) -> i64 {
    let text = String::from_utf8(proxy.running().metrics().render()).expect("UTF-8");
    let line = text
        .lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no series {series}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("bad line {line}")) as i64
}

fn connections(proxy: &TestProxy, transport: &str, version: &str) -> i64 {
    metric(
        proxy,
        &format!(
            "pushbridge_connections_open{{http_version=\"{version}\",transport=\"{transport}\"}}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_shows_routes_streams_transports_and_a_reconnecting_upstream() {
    let scene = scene().await;
    let proxy = &scene.proxy;
    let s = status(proxy.admin()).await;

    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        s["config"]["hash"].as_str().map(str::len),
        Some(16),
        "{s:#}"
    );
    assert_eq!(s["listeners"][0]["address"], proxy.addr().to_string());
    assert_eq!(s["listeners"][1]["kind"], "admin");
    for (transport, version, want) in [
        ("ws", "http1", 1),
        ("sse", "http1", 2),
        ("sse", "http2", 1),
        ("long-poll", "http2", 1),
    ] {
        assert_eq!(
            s["connections"][transport][version], want,
            "{transport} {version}: {s:#}"
        );
        assert_eq!(connections(proxy, transport, version), want);
    }
    assert_eq!(s["streams_open"], metric(proxy, "pushbridge_streams_open"));
    assert_eq!(s["streams_open"], 3);
    assert!(s["redis"].is_null(), "no route uses Redis: {s:#}");

    let ticks = route(&s, "ticks");
    assert_eq!(ticks["path"], "/ticks/{channel}");
    assert_eq!(ticks["upstream_kind"], "sse");
    assert_eq!(ticks["streams"], 2);
    assert_eq!(
        ticks["upstreams_up"],
        metric(proxy, "pushbridge_upstream_up{route=\"ticks\"}")
    );
    assert_eq!(ticks["upstream_states"]["connected"], 2);
    let busiest = &ticks["busiest"][0];
    assert_eq!(busiest["params"]["channel"], "a");
    assert_eq!(
        busiest["subscribers"],
        serde_json::json!({"ws": 1, "sse": 1, "long-poll": 1})
    );
    assert_eq!(busiest["events_buffered"], 3);
    assert!(
        busiest["oldest_event_age_seconds"]
            .as_f64()
            .is_some_and(|a| a >= 0.0)
    );
    assert!(busiest["last_event_at"].as_f64().is_some_and(|t| t > 1.7e9));
    assert_eq!(ticks["busiest"][1]["params"]["channel"], HTML_KEY_TEXT);

    let feed = route(&s, "feed");
    assert_eq!(feed["upstreams_up"], 0);
    let lobby = &feed["busiest"][0];
    assert_eq!(lobby["upstream"], "reconnecting");
    assert_eq!(lobby["subscribers"]["sse"], 1);
    let failure = &lobby["upstream_failure"];
    assert!(
        failure["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{lobby:#}"
    );
    let next = failure["next_retry_in_seconds"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=10.0).contains(&next), "{lobby:#}");

    // The HTML page: the key is text, never markup; and the page is never cached.
    let (code, html) = get_text(proxy.admin(), "/status").await;
    assert_eq!(code, 200);
    assert!(
        html.contains("channel=&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(!html.contains("<img"), "{html}");
    // The status page is on the admin listener only.
    let (code, _) = get_text(proxy.addr(), "/status.json").await;
    assert_ne!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_chromium_matches_metrics() {
    let chromium = std::env::var_os("PUSHBRIDGE_CHROMIUM")
        .map_or("/usr/bin/chromium".into(), std::path::PathBuf::from);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push("chromium (/usr/bin/chromium)");
    }
    if !harness::node_runs() {
        missing.push("node");
    }
    if !root
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (playwright-core)");
    }
    if harness::skip_or_fail(&missing) {
        return;
    }
    let scene = scene().await;
    let proxy = &scene.proxy;
    let screenshot = root.join("target/status-page.png");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(root.join("tests/browser/status.mjs"))
            .arg(format!("http://{}/status", proxy.admin()))
            .arg(&screenshot)
            .current_dir(root.join("tests/browser"))
            .output(),
    )
    .await
    .expect("the browser finished in time")
    .expect("node runs");
    let line = String::from_utf8_lossy(&out.stdout);
    let dom: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
        panic!(
            "driver output: {line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(dom["ok"], true, "{dom:#}");
    assert!(screenshot.exists());
    println!("status page screenshot: {}", screenshot.display());

    // The refreshed page's numbers are the metrics' numbers.
    let cell = |id: &str| -> i64 {
        dom["cells"][id]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no number in #{id}: {dom:#}"))
    };
    for transport in ["ws", "sse", "long-poll"] {
        for version in ["http1", "http2"] {
            assert_eq!(
                cell(&format!("conn-{transport}-{version}")),
                connections(proxy, transport, version),
                "{transport} {version}"
            );
        }
    }
    assert_eq!(
        cell("streams-open"),
        metric(proxy, "pushbridge_streams_open")
    );
    assert_eq!(cell("gaps"), metric(proxy, "pushbridge_resume_gaps_total"));
    assert_eq!(
        cell("refusals-global"),
        metric(proxy, "pushbridge_stream_refusals_total{limit=\"global\"}")
    );
    let ticks = &dom["routes"]["ticks"];
    assert_eq!(ticks["streams"], "2");
    assert_eq!(
        ticks["ups"].as_str(),
        Some(
            metric(proxy, "pushbridge_upstream_up{route=\"ticks\"}")
                .to_string()
                .as_str()
        )
    );
    let a = &ticks["rows"][0];
    assert_eq!(
        (&a["key"], &a["ws"], &a["sse"], &a["long-poll"]),
        (&"channel=a".into(), &"1".into(), &"1".into(), &"1".into()),
        "{dom:#}"
    );
    assert_eq!(a["buffered"], "3");
    // The HTML key shows as text: no element came out of it.
    assert_eq!(ticks["rows"][1]["key"], format!("channel={HTML_KEY_TEXT}"));
    assert_eq!(dom["injected"], 0);
    let feed = &dom["routes"]["feed"];
    assert_eq!(feed["ups"], "0");
    assert_eq!(feed["states"]["reconnecting"], "1");
    assert!(
        feed["rows"][0]["upstream"]
            .as_str()
            .is_some_and(|u| u.starts_with("reconnecting: ")),
        "{dom:#}"
    );
    let console = dom["console"].as_array().map_or(0, Vec::len);
    assert_eq!(console, 0, "the page logged: {dom:#}");
}

/// `generated_at` of a `/status.json` body (in full), or the `data-generated` of a `/status` page (two decimals).
fn generated(body: &str, json: bool) -> String {
    if json {
        let s: Value = serde_json::from_str(body).expect("status.json is JSON");
        s["generated_at"].to_string()
    } else {
        let at = body.find("data-generated=\"").expect("data-generated") + 16;
        body[at..].split('"').next().unwrap_or_default().to_owned()
    }
}

fn publish_config(extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0", max_connections: 128 }}
publish: {{ address: "127.0.0.1:0", token: "s3cret-publish-token" }}
streams:
  - name: events
    path: /events/{{channel}}
    upstream: {{ kind: publish }}
{extra}"#
    )
}

/// A flood of viewers shares one snapshot (built at most once per second, deliveries/s measured between builds);
/// the publish listener is listed; the config hash is keyed per process (not the plain hash of the config), stable
/// across a reload of the same config and different after one that changes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_a_snapshot_keyed_hash_and_publish_listener() {
    let yaml = publish_config("");
    let proxy = proxy::start(&yaml).await;
    let admin = proxy.admin();

    const VIEWERS: usize = 48;
    let started = std::time::Instant::now();
    let views: Vec<_> = (0..VIEWERS)
        .map(|i| {
            let path = if i % 4 == 0 {
                "/status"
            } else {
                "/status.json"
            };
            tokio::spawn(async move { (path, get_text(admin, path).await) })
        })
        .collect();
    let (mut json, mut html) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for view in views {
        let (path, (code, body)) = view.await.expect("viewer");
        assert_eq!(code, 200, "{body}");
        let json_view = path == "/status.json";
        let seen = if json_view { &mut json } else { &mut html };
        seen.insert(generated(&body, json_view));
    }
    let elapsed = started.elapsed();
    // One build per second at most: over `elapsed`, no more than its whole seconds plus one.
    for (form, snapshots) in [("json", &json), ("html", &html)] {
        assert!(
            snapshots.len() <= elapsed.as_secs() as usize + 1,
            "{VIEWERS} viewers in {elapsed:?} saw {} {form} snapshots: {snapshots:?}",
            snapshots.len()
        );
    }

    let first = status(admin).await;
    let publish = proxy.running().publish_addr().expect("publish listener");
    let listeners = first["listeners"].as_array().expect("listeners");
    assert!(
        listeners.contains(&serde_json::json!({"kind": "publish", "address": publish.to_string()})),
        "{first:#}"
    );
    let (_, html) = get_text(admin, "/status").await;
    assert!(html.contains(&format!("publish {publish}")), "{html}");

    // Keyed: not what anyone could compute from a guessed config.
    let hash = first["config"]["hash"].as_str().expect("hash").to_owned();
    let config = pushbridge::config::Config::parse("test.yaml", &yaml).expect("config");
    let unkeyed = {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        format!("{config:?}").hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    assert_ne!(hash, unkeyed);

    // The same config again: the same hash, seen in the next snapshot (a second or more later).
    proxy.running().apply(config).expect("reload");
    let at = |s: &Value| s["generated_at"].as_f64().unwrap_or_default();
    let seen = std::sync::Mutex::new(Value::Null);
    eventually("a new snapshot", || async {
        let s = status(admin).await;
        let new = at(&s) != at(&first);
        *seen.lock().expect("lock") = s;
        new
    })
    .await;
    let next = seen.into_inner().expect("lock");
    assert!(
        at(&next) - at(&first) >= 0.99,
        "{} then {}",
        at(&first),
        at(&next)
    );
    assert_eq!(next["config"]["hash"], hash.as_str());
    assert!(next["deliveries_per_second"].is_number(), "{next:#}");

    let changed =
        publish_config("  - name: more\n    path: /more/{x}\n    upstream: { kind: publish }\n");
    let changed = pushbridge::config::Config::parse("test.yaml", &changed).expect("config");
    proxy.running().apply(changed).expect("reload");
    eventually("a changed hash", || async {
        status(admin).await["config"]["hash"] != hash.as_str()
    })
    .await;
}

/// An upstream's error text comes from the network: the page shows it with URLs redacted, at most 256 bytes, and
/// as text, never markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_text_is_redacted_cut_and_escaped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up = listener.local_addr().expect("addr");
    let content_type = format!(
        "text/html <b>oops</b> see http://user:hunter2@app.internal/cb?token=s3cret {}",
        "x".repeat(600)
    );
    let app = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(n @ 1..) => head.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tcp.write_all(response.as_bytes()).await;
        }
    });
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - name: bad
    path: /bad/{{room}}
    upstream: {{ url: "http://{up}/bad/{{room}}", reconnect: {{ initial: 5s, max: 10s }} }}
"#
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let admin = proxy.admin();
    let mut h1 = client::connect(addr, Proto::H1).await;
    let _sse = h1.sse(addr, "/bad/x", None).await;
    eventually("the upstream's failure shows", || async move {
        route(&status(admin).await, "bad")["busiest"][0]["upstream_failure"].is_object()
    })
    .await;
    let s = status(admin).await;
    let error = route(&s, "bad")["busiest"][0]["upstream_failure"]["error"]
        .as_str()
        .expect("error text")
        .to_owned();
    assert!(error.len() <= 256 && error.len() > 200, "{error}");
    assert!(error.contains("see http://app.internal/cb?… x"), "{error}");
    assert!(
        !error.contains("hunter2") && !error.contains("s3cret"),
        "{error}"
    );
    let (_, html) = get_text(admin, "/status").await;
    assert!(html.contains("&lt;b&gt;oops&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>") && !html.contains("hunter2"), "{html}");
    app.abort();
}
