//! The status page of the admin listener: `GET /status` (one self-contained HTML page, no external assets; it
//! works without JavaScript and refreshes itself every 2 s with it) and `GET /status.json` (the same data,
//! docs/metrics.md "Status page"). The data — the hub's [`Hub::snapshot`], the metrics' current values, the config
//! stamp — is read when a request arrives, at most once per second: one [`Snapshot`] serves every viewer until it is
//! a second old (a flood of viewers costs one build per second, not one each; each form is rendered once per build),
//! and nothing is done while nobody looks. Stream keys and upstream error text are client or network input: they are
//! escaped in the HTML (and by serde in the JSON); error text is also redacted and cut.

use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::config::Config;
use crate::hub::{RouteView, StreamView, lock};
use crate::metrics::{HTTP_VERSIONS, Metrics, TRANSPORTS};
use crate::server::Router;

/// How many streams of each route are shown in full (the busiest).
pub const BUSIEST: usize = 50;
/// Longest upstream error text shown, in bytes (cut on a character boundary).
const ERROR_BYTES: usize = 256;
/// How long one snapshot serves every viewer.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// How often the page refreshes itself (with JavaScript).
const REFRESH_MS: u64 = 2000;

/// Which configuration is in force: a hash of it as parsed, and when it was loaded (start or reload). The hash is
/// keyed with a random key made once per process, so it tells configs apart within the process (a reload that
/// changed something changes it) but cannot be used to confirm a guessed config (which may hold tokens) offline.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub hash: String,
    pub at: SystemTime,
}

/// Shared with the reloader, which stamps each config it applies.
pub type ConfigStamp = Arc<Mutex<Loaded>>;

impl Loaded {
    pub fn of(config: &Config) -> Loaded {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        let hash = KEY
            .get_or_init(RandomState::new)
            .hash_one(format!("{config:?}"));
        Loaded {
            hash: format!("{hash:016x}"),
            at: SystemTime::now(),
        }
    }
}

/// The bound listeners the page lists.
pub struct Listeners {
    pub client: Vec<SocketAddr>,
    pub publish: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// What the status page reads.
pub struct Status {
    router: Arc<ArcSwap<Router>>,
    metrics: Arc<Metrics>,
    stamp: ConfigStamp,
    listeners: Listeners,
    started: Instant,
    /// The snapshot viewers share; held while one is built, so viewers arriving meanwhile wait for it.
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// The latest snapshot (one at most, bounded as the page is).
    current: Option<Arc<Snapshot>>,
    /// The delivery counter at the previous build: deliveries/s is the rate since then.
    previous: Option<(Instant, u64)>,
}

/// One build of the status document, served to every viewer for [`FRESH_FOR`]; each form is rendered once.
pub struct Snapshot {
    built: Instant,
    data: Value,
    json: OnceLock<Bytes>,
    html: OnceLock<Bytes>,
}

impl Snapshot {
    /// `/status.json`'s body.
    pub fn json(&self) -> Bytes {
        let render = || Bytes::from(serde_json::to_vec_pretty(&self.data).unwrap_or_default());
        self.json.get_or_init(render).clone()
    }

    /// `/status`'s body.
    pub fn html(&self) -> Bytes {
        let render = || Bytes::from(render_html(&self.data));
        self.html.get_or_init(render).clone()
    }
}

impl Status {
    pub fn new(
        router: Arc<ArcSwap<Router>>,
        metrics: Arc<Metrics>,
        stamp: ConfigStamp,
        listeners: Listeners,
    ) -> Status {
        Status {
            router,
            metrics,
            stamp,
            listeners,
            started: Instant::now(),
            cache: tokio::sync::Mutex::default(),
        }
    }

    /// The current snapshot: the shared one while it is fresh, else a new one (built once for all who wait).
    pub async fn snapshot(&self) -> Arc<Snapshot> {
        let mut cache = self.cache.lock().await;
        if let Some(current) = &cache.current
            && current.built.elapsed() < FRESH_FOR
        {
            return current.clone();
        }
        let built = Instant::now();
        let data = self.build(built, &mut cache.previous);
        let snapshot = Arc::new(Snapshot {
            built,
            data,
            json: OnceLock::new(),
            html: OnceLock::new(),
        });
        cache.current = Some(snapshot.clone());
        snapshot
    }

    /// The status document (`/status.json`), as of `now`; `previous` is the delivery count at the previous build.
    fn build(&self, now: Instant, previous: &mut Option<(Instant, u64)>) -> Value {
        let router = self.router.load();
        let m = &self.metrics;
        let loaded = lock(&self.stamp).clone();
        let mut connections = serde_json::Map::new();
        for transport in TRANSPORTS {
            let mut by = serde_json::Map::new();
            for version in HTTP_VERSIONS {
                let open = m
                    .connections_open
                    .with_label_values(&[transport, version])
                    .get();
                by.insert(version.into(), open.into());
            }
            connections.insert(transport.into(), by.into());
        }
        let delivered: u64 = TRANSPORTS
            .iter()
            .map(|t| m.events_delivered.with_label_values(&[t]).get())
            .sum();
        let rate = previous.and_then(|(at, count)| {
            let secs = now.duration_since(at).as_secs_f64();
            (secs > 0.0).then(|| delivered.saturating_sub(count) as f64 / secs)
        });
        *previous = Some((now, delivered));
        let by_label = |vec: &prometheus::IntCounterVec, labels: &[&str]| -> Value {
            labels
                .iter()
                .map(|l| ((*l).to_owned(), vec.with_label_values(&[l]).get().into()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let snapshot = router.hub.snapshot(BUSIEST);
        let routes: Vec<Value> = router
            .routes
            .iter()
            .map(|route| {
                let view = snapshot
                    .iter()
                    .find(|(name, _)| **name == *route.name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                route_json(route, &view, m)
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "generated_at": unix(SystemTime::now()),
            "config": { "hash": loaded.hash, "loaded_at": unix(loaded.at) },
            "uptime_seconds": now.duration_since(self.started).as_secs(),
            "listeners": self.listeners_json(),
            "connections": connections,
            "streams_open": m.streams_open.get(),
            "buffer_bytes": m.buffer_bytes.get(),
            "deliveries_total": delivered,
            "deliveries_per_second": rate,
            "gap_notices_total": m.resumes_gap.get(),
            "slow_consumer_evictions_total": by_label(&m.slow_consumers, &TRANSPORTS),
            "stream_refusals_total": by_label(&m.stream_refusals, &["global", "route", "pattern", "fds", "key_bytes"]),
            "routes": routes,
            "redis": redis_json(&router, m),
        })
    }

    /// `{kind, address}` per listener: the client ones, the publish one (if configured), the admin one.
    fn listeners_json(&self) -> Vec<Value> {
        let l = &self.listeners;
        let kinds = l.client.iter().map(|a| ("client", a));
        let kinds = kinds.chain(l.publish.iter().map(|a| ("publish", a)));
        kinds
            .chain([("admin", &l.admin)])
            .map(|(kind, a)| json!({"kind": kind, "address": a.to_string()}))
            .collect()
    }
}

/// Upstream error text as shown: URLs redacted (it comes from the application or the network, and may carry
/// credentials in a URL), at most [`ERROR_BYTES`], cut on a character boundary.
fn shown_error(error: &str) -> String {
    let mut text = crate::redact::redact_urls(error);
    if text.len() > ERROR_BYTES {
        let mut end = ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// This replica's use of Redis (`kind: redis` routes, `upstream.tee`): `null` when no route uses it.
fn redis_json(router: &Router, m: &Metrics) -> Value {
    let routes: Vec<&str> = router
        .routes
        .iter()
        .filter(|r| {
            r.config.upstream.kind == crate::config::UpstreamKind::Redis
                || r.config.upstream.tee.is_some()
        })
        .map(|r| &*r.name)
        .collect();
    if routes.is_empty() {
        return Value::Null;
    }
    let operations: serde_json::Map<String, Value> = ["read", "history", "tee"]
        .iter()
        .map(|op| {
            let by = |result: &str| m.upstream.redis_ops.with_label_values(&[op, result]).get();
            (
                (*op).to_owned(),
                json!({"ok": by("ok"), "error": by("error")}),
            )
        })
        .collect();
    json!({
        "routes": routes,
        "operations_total": operations,
        "tee_dropped_total": m.upstream.tee_dropped.get(),
    })
}

fn route_json(route: &crate::route::Route, view: &RouteView, m: &Metrics) -> Value {
    let states = ["connecting", "connected", "reconnecting", "dormant"];
    json!({
        "name": &*route.name,
        "path": route.config.path.to_string(),
        "upstream_kind": route.config.upstream.kind.as_str(),
        "upstreams_up": m.upstream.up.with_label_values(&[&route.name]).get(),
        "streams": view.streams,
        "upstream_states": states.iter().zip(view.states).map(|(s, n)| ((*s).to_owned(), n.into()))
            .collect::<serde_json::Map<String, Value>>(),
        "busiest": view.busiest.iter().map(stream_json).collect::<Vec<_>>(),
    })
}

fn stream_json(s: &StreamView) -> Value {
    let params: serde_json::Map<String, Value> = s
        .key
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let subscribers: serde_json::Map<String, Value> = TRANSPORTS
        .iter()
        .zip(s.subscribers)
        .map(|(t, n)| ((*t).to_owned(), n.into()))
        .collect();
    let failure = s.failure.as_ref().map(|f| {
        let next = f
            .retry_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        json!({
            "error": shown_error(&f.error),
            "next_retry_in_seconds": next.as_secs_f64(),
        })
    });
    json!({
        "params": params,
        "session": s.key.session,
        "upstream": s.upstream.label().0,
        "upstream_failure": failure,
        "subscribers": subscribers,
        "events_buffered": s.buffered,
        "oldest_event_age_seconds": s.oldest_age.map(|a| a.as_secs_f64()),
        "last_event_at": s.last_event.map(unix),
    })
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// HTML-escapes text (element content and quoted attribute values).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as page text: numbers with at most two decimals, `null` as "–".
fn show(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => escape(s),
        Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or_default()),
        other => escape(&other.to_string()),
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td.k,th.k{text-align:left;font-family:monospace}.connected{color:#070}\
.reconnecting{color:#b00}.dormant{color:#777}h2{margin-top:1.5em}small{color:#666}";

/// The page refreshes by fetching itself and swapping `<main>`: one renderer, the server's.
const SCRIPT: &str = "setInterval(async()=>{try{const r=await fetch(location.pathname,{cache:'no-store'});\
const d=new DOMParser().parseFromString(await r.text(),'text/html');\
document.querySelector('main').replaceWith(d.querySelector('main'));}catch(e){}},REFRESH);";

fn render_html(s: &Value) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>pushbridge status</title><style>{STYLE}</style>\
         </head><body><main data-generated=\"{}\"><h1>pushbridge {}</h1><p><small>config <span id=config-hash>{}\
         </span>, loaded at {} (unix); up <span id=uptime>{}</span> s; listeners:",
        show(&s["generated_at"]),
        show(&s["version"]),
        show(&s["config"]["hash"]),
        show(&s["config"]["loaded_at"]),
        show(&s["uptime_seconds"]),
    );
    for l in s["listeners"].as_array().into_iter().flatten() {
        let _ = write!(h, " {} {}", show(&l["kind"]), show(&l["address"]));
    }
    h.push_str("</small></p><h2>Client connections</h2><table><tr><th class=k>transport</th>");
    for v in HTTP_VERSIONS {
        let _ = write!(h, "<th>{v}</th>");
    }
    h.push_str("</tr>");
    for t in TRANSPORTS {
        let _ = write!(h, "<tr><td class=k>{t}</td>");
        for v in HTTP_VERSIONS {
            let _ = write!(
                h,
                "<td id=\"conn-{t}-{v}\">{}</td>",
                show(&s["connections"][t][v])
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h2>Totals</h2><table>");
    for (id, label, v) in [
        ("streams-open", "streams open", &s["streams_open"]),
        ("buffer-bytes", "buffer bytes", &s["buffer_bytes"]),
        ("deliveries", "deliveries", &s["deliveries_total"]),
        (
            "deliveries-rate",
            "deliveries/s",
            &s["deliveries_per_second"],
        ),
        ("gaps", "gap notices", &s["gap_notices_total"]),
    ] {
        let _ = write!(
            h,
            "<tr><th class=k>{label}</th><td id={id}>{}</td></tr>",
            show(v)
        );
    }
    for (key, label, prefix) in [
        (
            "slow_consumer_evictions_total",
            "slow-consumer evictions",
            "evictions",
        ),
        ("stream_refusals_total", "refusals", "refusals"),
    ] {
        for (k, v) in s[key].as_object().into_iter().flatten() {
            let _ = write!(
                h,
                "<tr><th class=k>{label}: {}</th><td id=\"{}-{}\">{}</td></tr>",
                escape(k),
                prefix,
                escape(k),
                show(v)
            );
        }
    }
    h.push_str("</table>");
    if let Some(redis) = s["redis"].as_object() {
        h.push_str("<h2>Redis (this replica)</h2><table><tr><th class=k>operation</th><th>ok</th><th>error</th></tr>");
        for (op, n) in redis["operations_total"].as_object().into_iter().flatten() {
            let op = escape(op);
            let _ = write!(
                h,
                "<tr><td class=k>{op}</td><td id=\"redis-{op}-ok\">{}</td><td id=\"redis-{op}-error\">{}</td></tr>",
                show(&n["ok"]),
                show(&n["error"])
            );
        }
        let _ = write!(
            h,
            "<tr><td class=k>tee dropped</td><td id=redis-tee-dropped colspan=2>{}</td></tr></table>",
            show(&redis["tee_dropped_total"])
        );
    }
    for r in s["routes"].as_array().into_iter().flatten() {
        route_html(&mut h, r);
    }
    let _ = write!(
        h,
        "</main><script>const REFRESH={REFRESH_MS};{SCRIPT}</script></body></html>"
    );
    h
}

fn route_html(h: &mut String, r: &Value) {
    let name = show(&r["name"]);
    let _ = write!(
        h,
        "<section class=route data-route=\"{name}\"><h2>Route {name} <small>{} ← {} upstream; \
         <span class=streams>{}</span> streams, <span class=ups>{}</span> upstreams connected</small></h2><p>",
        show(&r["path"]),
        show(&r["upstream_kind"]),
        show(&r["streams"]),
        show(&r["upstreams_up"]),
    );
    for (state, n) in r["upstream_states"].as_object().into_iter().flatten() {
        let _ = write!(
            h,
            "<span class={0}>{0}: <span class=\"n-{0}\">{1}</span></span> ",
            escape(state),
            show(n)
        );
    }
    h.push_str("</p><table><tr><th class=k>key</th><th class=k>upstream</th>");
    for t in TRANSPORTS {
        let _ = write!(h, "<th>{t}</th>");
    }
    h.push_str("<th>buffered</th><th>oldest age s</th><th>last event (unix)</th></tr>");
    for st in r["busiest"].as_array().into_iter().flatten() {
        let mut key = String::new();
        for (k, v) in st["params"].as_object().into_iter().flatten() {
            let _ = write!(key, "{}={} ", escape(k), show(v));
        }
        if !st["session"].is_null() {
            let _ = write!(key, "session={}", show(&st["session"]));
        }
        let state = show(&st["upstream"]);
        let mut upstream = state.clone();
        if let Some(f) = st["upstream_failure"].as_object() {
            let _ = write!(
                upstream,
                ": {} (next try in {} s)",
                show(&f["error"]),
                show(&f["next_retry_in_seconds"])
            );
        }
        let _ = write!(
            h,
            "<tr class=stream><td class=k>{}</td><td class=\"k {state}\">{upstream}</td>",
            key.trim_end()
        );
        for t in TRANSPORTS {
            let _ = write!(
                h,
                "<td class=\"sub-{t}\">{}</td>",
                show(&st["subscribers"][t])
            );
        }
        let _ = write!(
            h,
            "<td class=buffered>{}</td><td>{}</td><td>{}</td></tr>",
            show(&st["events_buffered"]),
            show(&st["oldest_event_age_seconds"]),
            show(&st["last_event_at"])
        );
    }
    h.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_is_redacted_and_cut_on_a_character_boundary() {
        assert_eq!(
            shown_error("connect failed: http://u:s3cret@h/p?token=t0k"),
            "connect failed: http://h/p?…"
        );
        // 255 bytes then a 2-byte character: the cut falls inside it, so it goes whole.
        let long = format!("{}é{}", "a".repeat(255), "b".repeat(100));
        assert_eq!(shown_error(&long), "a".repeat(255));
        let exact = "c".repeat(300);
        assert_eq!(shown_error(&exact), "c".repeat(ERROR_BYTES));
        assert_eq!(shown_error("short"), "short");
    }
}
