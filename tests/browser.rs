//! Real-browser end to end (issue 3): Debian's Chromium, driven by playwright-core (`tests/browser/run.mjs`), loads
//! a test page that uses the browser client (`/_pushbridge/client.js`, DESIGN §4), directly and through real nginx
//! set up like the proxies found in the wild. Events are the demo ticker's numbered ticks; every scenario asserts
//! the transport the client settled on and that the ids it received are exactly consecutive.
//!
//! Needs /usr/bin/chromium, nginx and tests/browser/node_modules, which `bash .ci/browser-deps` installs. Without
//! them the test fails, unless `PUSHBRIDGE_SKIP_BROWSER=1` is set: then it prints a skip line and passes.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

use support::proxy;

/// Time between ticks of the upstream.
const TICK: Duration = Duration::from_millis(100);
/// Events each scenario waits for.
const EVENTS: usize = 15;
/// Bound on the whole run (Chromium start-up included).
const WHOLE_RUN: Duration = Duration::from_secs(150);
/// Bound on one wait for events in the page.
const WAIT_MS: u64 = 20_000;
/// Client deadlines used by the test page: short, so downgrades take about a second and a half.
const PAGE_QUERY: &str = "events=tick&openTimeout=3000&silenceTimeout=1500";

const PAGE: &str = include_str!("browser/page.html");
const NGINX_CONF: &str = include_str!("browser/nginx.conf.in");
/// Forwards `Upgrade` and the browser's `Host` (the same-origin check compares `Origin` with it), as a proxy set up
/// for WebSocket does.
const PROXY_UPGRADE: &str = "proxy_http_version 1.1;\n\
    proxy_set_header Host $http_host;\n\
    proxy_set_header Upgrade $http_upgrade;\n\
    proxy_set_header Connection \"upgrade\";\n\
    proxy_buffering off;";
/// nginx's defaults: HTTP/1.0 upstream, no `Upgrade`; buffering on, but `X-Accel-Buffering: no` is honoured.
const PROXY_DEFAULT: &str = "";
/// Buffers responses whatever they say: the SSE flush never reaches the browser.
const PROXY_BUFFERING: &str = "proxy_buffering on;\nproxy_ignore_headers X-Accel-Buffering;";

const SKIP_ENV: &str = "PUSHBRIDGE_SKIP_BROWSER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_picks_and_switches_transports() {
    let Some(tools) = Tools::find() else { return };
    timeout(WHOLE_RUN, run_all(tools))
        .await
        .expect("the browser scenarios finished in time");
}

async fn run_all(tools: Tools) {
    let started = std::time::Instant::now();
    let ticker = pushbridge::demo::ticker::start(SocketAddr::from(([127, 0, 0, 1], 0)), TICK)
        .await
        .unwrap();
    let page = serve_page().await;
    let proxy = proxy::start(&config(ticker, page)).await;
    let direct = proxy.addr();
    let mut browser = Browser::launch(&tools).await;

    // 1. Straight to pushbridge: WebSocket.
    let state = browser.scenario("direct", direct, false, "ws").await;
    assert_eq!(state.transports, ["ws"], "{state:?}");
    browser.close("direct").await;

    // 2. nginx with its defaults does not forward Upgrade: the WebSocket handshake fails, SSE works.
    let nginx = Nginx::start(&tools, direct, PROXY_DEFAULT, None).await;
    let state = browser
        .scenario("nginx-default", nginx.addr(), false, "sse")
        .await;
    assert_eq!(state.transports, ["sse"], "{state:?}");
    browser.close("nginx-default").await;
    drop(nginx);

    // 3. nginx that buffers every response: the SSE stream stays silent, long-poll works.
    let nginx = Nginx::start(&tools, direct, PROXY_BUFFERING, None).await;
    let state = browser
        .scenario("nginx-buffering", nginx.addr(), false, "long-poll")
        .await;
    assert_eq!(state.transports, ["long-poll"], "{state:?}");
    // The page session remembers what worked: after a reload, long-poll at once, nothing else tried.
    browser.reload("nginx-buffering").await;
    let state = browser.wait("nginx-buffering", EVENTS, "long-poll").await;
    assert_consecutive("nginx-buffering, reloaded", &state);
    assert_eq!(state.transports, ["long-poll"], "{state:?}");
    assert!(
        state.errors.is_empty(),
        "only the remembered transport is tried: {state:?}"
    );
    browser.close("nginx-buffering").await;
    drop(nginx);

    // 4. A browser with neither WebSocket nor EventSource: long-poll.
    let state = browser
        .scenario("old-browser", direct, true, "long-poll")
        .await;
    assert_eq!(state.transports, ["long-poll"], "{state:?}");
    browser.close("old-browser").await;

    // 5. Mid-stream, nginx is restarted with a config that forwards no Upgrade and buffers: WebSocket → long-poll,
    // and the ids stay consecutive across the switch.
    let nginx = Nginx::start(&tools, direct, PROXY_UPGRADE, None).await;
    let port = nginx.addr().port();
    let url = page_url(nginx.addr(), "switch");
    browser.open("switch", &url, false).await;
    let before = browser.wait("switch", EVENTS, "ws").await;
    drop(nginx);
    let nginx = Nginx::start(&tools, direct, PROXY_BUFFERING, Some(port)).await;
    let after = browser
        .wait("switch", before.ids.len() + EVENTS, "long-poll")
        .await;
    browser.close("switch").await;
    drop(nginx);
    assert_eq!(
        after.transports.first().map(String::as_str),
        Some("ws"),
        "{after:?}"
    );
    assert_consecutive("switch", &after);
    println!(
        "browser scenario switch: {:?}, {} consecutive ids ({} before the restart), errors seen: {:?}",
        after.transports,
        after.ids.len(),
        before.ids.len(),
        after.errors
    );

    let shutdown = browser.quit();
    timeout(Duration::from_secs(15), shutdown)
        .await
        .expect("the browser driver exits");
    proxy.shutdown().await;
    println!(
        "browser scenarios: 5 passed in {:.1}s (chromium {})",
        started.elapsed().as_secs_f64(),
        browser_version()
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

fn config(ticker: SocketAddr, page: SocketAddr) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
passthrough: {{ upstream: "http://{page}" }}
streams:
  - path: /events/{{channel}}
    upstream:
      url: "http://{ticker}/internal/events/{{channel}}"
      kind: sse
      reconnect: {{ initial: 10ms, max: 100ms }}
    buffer: {{ events: 1000, age: 5m }}
    long_poll: {{ timeout: 5s }}
"#
    )
}

fn page_url(base: SocketAddr, name: &str) -> String {
    format!("http://{base}/?stream=/events/{name}&{PAGE_QUERY}")
}

/// What the page received, as reported by run.mjs.
#[derive(Debug, serde::Deserialize)]
struct PageState {
    transports: Vec<String>,
    ids: Vec<String>,
    events: Vec<String>,
    errors: Vec<String>,
    console: Vec<String>,
}

fn assert_consecutive(scenario: &str, state: &PageState) {
    let ids: Vec<u64> = state
        .ids
        .iter()
        .map(|id| {
            id.parse()
                .unwrap_or_else(|_| panic!("{scenario}: id {id:?} is not a tick number: {state:?}"))
        })
        .collect();
    assert!(ids.len() >= EVENTS, "{scenario}: too few events: {state:?}");
    for pair in ids.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{scenario}: ids not consecutive (lost or repeated): {state:?}"
        );
    }
    assert!(
        state.events.iter().all(|e| e == "tick"),
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

/// The browser and the tools the scenarios run, found on this machine.
struct Tools {
    nginx: PathBuf,
    driver: PathBuf,
}

impl Tools {
    /// Finds Chromium, nginx, node and the driver's node_modules; fails naming `.ci/browser-deps` when one is
    /// missing, unless [`SKIP_ENV`] is set.
    fn find() -> Option<Tools> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let chromium = std::env::var_os("PUSHBRIDGE_CHROMIUM")
            .map_or(PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.exists());
        let mut missing = Vec::new();
        if !chromium.exists() {
            missing.push("chromium (/usr/bin/chromium)");
        }
        if nginx.is_none() {
            missing.push("nginx");
        }
        if !node_runs() {
            missing.push("node");
        }
        if !root
            .join("tests/browser/node_modules/playwright-core/package.json")
            .exists()
        {
            missing.push("tests/browser/node_modules (playwright-core)");
        }
        if skip_or_fail(&missing) {
            return None;
        }
        // Found: nothing is missing.
        nginx.map(|nginx| Tools {
            nginx,
            driver: root.join("tests/browser/run.mjs"),
        })
    }
}

fn node_runs() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// With nothing `missing`, false. Otherwise fails naming `.ci/browser-deps`, or, when [`SKIP_ENV`] is set, prints
/// a skip line and returns true.
fn skip_or_fail(missing: &[&str]) -> bool {
    if missing.is_empty() {
        return false;
    }
    assert!(
        std::env::var(SKIP_ENV).is_ok_and(|v| v == "1"),
        "browser tests need {}: run `bash .ci/browser-deps` as root (or set {SKIP_ENV}=1 to skip them)",
        missing.join(", ")
    );
    println!(
        "browser tests skipped ({SKIP_ENV}=1): missing {}",
        missing.join(", ")
    );
    true
}

/// The test page's own tiny application (pushbridge's pass-through target): `/` is tests/browser/page.html.
async fn serve_page() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let response = if req.uri().path() == "/" {
                        Response::builder()
                            .header("content-type", "text/html; charset=utf-8")
                            .body(Full::new(Bytes::from(PAGE)))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from("not found\n")))
                    };
                    Ok::<_, Infallible>(response.unwrap())
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}

/// nginx as a child process in its own temp dir (config, pid, logs, temp files), killed on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in front of `upstream` with the `proxy` directives, on `port` (or a free one).
    async fn start(tools: &Tools, upstream: SocketAddr, proxy: &str, port: Option<u16>) -> Nginx {
        let port = match port {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        };
        let dir = tempfile::tempdir().unwrap();
        let conf = NGINX_CONF
            .replace("{{DIR}}", &dir.path().display().to_string())
            .replace("{{PORT}}", &port.to_string())
            .replace("{{UPSTREAM}}", &upstream.to_string())
            .replace("{{PROXY}}", proxy);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(&tools.nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("nginx did not start ({e}): run `bash .ci/browser-deps`"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = timeout(Duration::from_secs(10), async {
            loop {
                if TcpStream::connect(addr).await.is_ok() {
                    return Ok(());
                }
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(status);
                }
                // Polls for readiness; no ordering depends on this pause.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if !matches!(ready, Ok(Ok(()))) {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx did not listen on {addr} ({ready:?}); error.log:\n{log}");
        }
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // One process (master_process off): killing it closes every connection and frees the port.
        let _ = self.child.start_kill();
        if let Some(pid) = self.child.id() {
            wait_gone(pid);
        }
    }
}

/// Waits (bounded) until process `pid` has exited, so its port can be bound again.
fn wait_gone(pid: u32) {
    let proc = PathBuf::from(format!("/proc/{pid}/stat"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let state = std::fs::read_to_string(&proc).unwrap_or_default();
        // Gone, or a zombie (its sockets are closed already).
        if state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn browser_version() -> &'static str {
    VERSION.get().map_or("?", String::as_str)
}

/// The driver (node tests/browser/run.mjs) and its Chromium; commands and answers are JSON lines.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    async fn launch(tools: &Tools) -> Browser {
        let mut child = Command::new("node")
            .arg(&tools.driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("node did not start ({e}): run `bash .ci/browser-deps`"));
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut browser = Browser {
            child,
            stdin,
            lines,
        };
        let ready = browser.read(Duration::from_secs(60)).await;
        assert_eq!(
            ready["ready"], true,
            "Chromium did not start (run `bash .ci/browser-deps`): {ready}"
        );
        let _ = VERSION.set(ready["version"].as_str().unwrap_or("?").to_owned());
        browser
    }

    async fn read(&mut self, within: Duration) -> Value {
        let line = timeout(within, self.lines.next_line())
            .await
            .expect("the browser driver answered in time")
            .expect("the browser driver's stdout is readable")
            .expect("the browser driver is still running (see its stderr above)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
    }

    async fn call(&mut self, command: Value, within: Duration) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        self.read(within).await
    }

    async fn open(&mut self, page: &str, url: &str, old_browser: bool) {
        let answer = self
            .call(
                json!({"op": "open", "page": page, "url": url, "old_browser": old_browser}),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(answer["ok"], true, "{page}: page did not load: {answer}");
    }

    /// Waits until the page holds `count` events and its latest transport is `transport`.
    async fn wait(&mut self, page: &str, count: usize, transport: &str) -> PageState {
        let command = json!({"op": "wait", "page": page, "count": count, "transport": transport, "timeout_ms": WAIT_MS});
        let answer = self
            .call(
                command,
                Duration::from_millis(WAIT_MS) + Duration::from_secs(15),
            )
            .await;
        let state: PageState = serde_json::from_value(answer["state"].clone())
            .unwrap_or_else(|e| panic!("{page}: no page state in {answer}: {e}"));
        assert_eq!(
            answer["ok"], true,
            "{page}: wanted {count} events over {transport}: {answer}"
        );
        state
    }

    async fn reload(&mut self, page: &str) {
        let answer = self
            .call(
                json!({"op": "reload", "page": page}),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(answer["ok"], true, "{page}: reload failed: {answer}");
    }

    async fn close(&mut self, page: &str) {
        let answer = self
            .call(
                json!({"op": "close", "page": page}),
                Duration::from_secs(15),
            )
            .await;
        assert_eq!(answer["ok"], true, "{page}: {answer}");
    }

    /// One scenario: open the page on `base`, wait for [`EVENTS`] events over `transport`, check their ids. The
    /// page stays open.
    async fn scenario(
        &mut self,
        name: &str,
        base: SocketAddr,
        old_browser: bool,
        transport: &str,
    ) -> PageState {
        self.open(name, &page_url(base, name), old_browser).await;
        let state = self.wait(name, EVENTS, transport).await;
        assert_consecutive(name, &state);
        println!(
            "browser scenario {name}: {transport}, {} consecutive ids, errors seen: {:?}",
            state.ids.len(),
            state.errors
        );
        state
    }

    /// Closes stdin (the driver then closes Chromium) and waits for the driver to exit.
    async fn quit(self) {
        let Browser {
            mut child,
            stdin,
            lines,
        } = self;
        drop(stdin);
        drop(lines);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "browser driver exited with {status}");
    }
}
