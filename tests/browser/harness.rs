//! The machinery of tests/browser.rs: finding the tools, the test page's tiny application, nginx as a child
//! process, and the driver of Chromium (run.mjs, JSON lines) with the page state it reports.

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
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

const PAGE: &str = include_str!("page.html");
const SKIP_ENV: &str = "PUSHBRIDGE_SKIP_BROWSER";
/// Bound on one wait for a condition in the page.
const WAIT_MS: u64 = 20_000;

/// What the page received, as reported by run.mjs.
#[derive(Debug, serde::Deserialize)]
pub struct PageState {
    pub transports: Vec<String>,
    pub ids: Vec<String>,
    pub events: Vec<String>,
    pub errors: Vec<String>,
    /// What happened when, in ms since the page's `connect()`.
    pub timeline: Vec<Moment>,
    /// The client's `lastEventId()`.
    pub cursor: Option<String>,
    pub console: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Moment {
    pub t: u64,
    /// `live` (a transport went live), `error` (onerror) or `mark` (set by the test).
    pub kind: String,
    pub what: String,
}

impl PageState {
    /// Transport errors reported so far (not gaps, not failed probes).
    pub fn transport_errors(&self) -> usize {
        self.errors
            .iter()
            .filter(|e| e.starts_with("transport "))
            .count()
    }

    /// The timeline after the mark `what`, and the mark's time.
    pub fn after_mark(&self, what: &str) -> (u64, &[Moment]) {
        let at = self
            .timeline
            .iter()
            .position(|m| m.kind == "mark" && m.what == what)
            .unwrap_or_else(|| panic!("no mark {what:?}: {self:?}"));
        (self.timeline[at].t, &self.timeline[at + 1..])
    }
}

/// What [`Browser::wait`] waits for: all of it.
#[derive(Default)]
pub struct Until<'a> {
    /// At least this many events.
    pub count: usize,
    /// The latest transport to go live.
    pub transport: Option<&'a str>,
    /// The client holds a cursor.
    pub cursor: bool,
    /// At least this many transport errors.
    pub transport_errors: usize,
}

impl<'a> Until<'a> {
    pub fn events(count: usize, transport: &'a str) -> Until<'a> {
        Until {
            count,
            transport: Some(transport),
            ..Until::default()
        }
    }
}

pub struct Tools {
    nginx: PathBuf,
    driver: PathBuf,
}

impl Tools {
    pub fn nginx(&self) -> &Path {
        &self.nginx
    }
}

impl Tools {
    /// Finds Chromium, nginx, node and the driver's node_modules; fails naming `.ci/browser-deps` when one is
    /// missing, unless [`SKIP_ENV`] is set.
    pub fn find() -> Option<Tools> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let chromium = std::env::var_os("PUSHBRIDGE_CHROMIUM")
            .map_or(PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        let nginx = crate::support::nginx::path();
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

pub fn node_runs() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// With nothing `missing`, false. Otherwise fails naming `.ci/browser-deps`, or, when [`SKIP_ENV`] is set, prints
/// a skip line and returns true.
pub fn skip_or_fail(missing: &[&str]) -> bool {
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
pub async fn serve_page() -> SocketAddr {
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

static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn browser_version() -> &'static str {
    VERSION.get().map_or("?", String::as_str)
}

/// The driver (node tests/browser/run.mjs) and its Chromium; commands and answers are JSON lines.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    pub async fn launch(tools: &Tools) -> Browser {
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

    pub async fn open(&mut self, page: &str, url: &str, old_browser: bool) {
        let answer = self
            .call(
                json!({"op": "open", "page": page, "url": url, "old_browser": old_browser}),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(answer["ok"], true, "{page}: page did not load: {answer}");
    }

    /// Waits (at most [`WAIT_MS`]) until the page's state meets `until`; panics naming the page otherwise.
    pub async fn wait(&mut self, page: &str, until: Until<'_>) -> PageState {
        let command = json!({
            "op": "wait", "page": page, "count": until.count, "transport": until.transport,
            "cursor": until.cursor, "transport_errors": until.transport_errors, "timeout_ms": WAIT_MS,
        });
        let answer = self
            .call(
                command.clone(),
                Duration::from_millis(WAIT_MS) + Duration::from_secs(15),
            )
            .await;
        let state: PageState = serde_json::from_value(answer["state"].clone())
            .unwrap_or_else(|e| panic!("{page}: no page state in {answer}: {e}"));
        assert_eq!(answer["ok"], true, "{page}: waited for {command}: {answer}");
        state
    }

    /// Adds a mark to the page's timeline (the moment the test did something); returns its time.
    pub async fn mark(&mut self, page: &str, what: &str) -> u64 {
        let answer = self
            .call(
                json!({"op": "mark", "page": page, "what": what}),
                Duration::from_secs(15),
            )
            .await;
        answer["t"]
            .as_u64()
            .unwrap_or_else(|| panic!("{page}: mark failed: {answer}"))
    }

    pub async fn reload(&mut self, page: &str) {
        let answer = self
            .call(
                json!({"op": "reload", "page": page}),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(answer["ok"], true, "{page}: reload failed: {answer}");
    }

    /// Opens a WebSocket to `url` from the page; the driver's answer (negotiated extensions, protocol, first message).
    pub async fn ws_probe(&mut self, page: &str, url: &str) -> Value {
        let answer = self
            .call(
                json!({"op": "ws_probe", "page": page, "url": url}),
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(
            answer["ok"], true,
            "{page}: WebSocket probe of {url}: {answer}"
        );
        answer
    }

    pub async fn close(&mut self, page: &str) {
        let answer = self
            .call(
                json!({"op": "close", "page": page}),
                Duration::from_secs(15),
            )
            .await;
        assert_eq!(answer["ok"], true, "{page}: {answer}");
    }

    /// Closes stdin (the driver then closes Chromium) and waits for the driver to exit.
    pub async fn quit(self) {
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
