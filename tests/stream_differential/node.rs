//! The node process of `reader.mjs` (node `eventsource` 4.x, and Chromium's EventSource on request): one per test,
//! killed on drop; each reader's lines are routed to its own channel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::normalize::{Expected, RefItem};

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>;

pub struct Node {
    child: Child,
    commands: mpsc::UnboundedSender<String>,
    routes: Routes,
    next: AtomicUsize,
}

/// The directory of reader.mjs and its node_modules.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stream_differential")
}

impl Node {
    /// Starts `node reader.mjs`; fails naming `.ci/stream-diff-deps` when `eventsource` is not installed.
    pub async fn start() -> Node {
        let dir = dir();
        assert!(
            dir.join("node_modules/eventsource/package.json").exists(),
            "node_modules missing in {}: run `bash .ci/stream-diff-deps`",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("reader.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node on PATH (`bash .ci/stream-diff-deps`)");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("reader.mjs starts")
            .expect("reader.mjs output")
            .expect("reader.mjs ready line");
        let ready: Value = serde_json::from_str(&ready).expect("ready JSON");
        assert_eq!(ready["ready"], true, "{ready}");
        let version = ready["eventsource"].as_str().unwrap_or_default().to_owned();
        assert!(version.starts_with("4."), "eventsource 4.x, got {version}");
        let routes: Routes = Arc::default();
        let shared = routes.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let id = value["id"].as_str().unwrap_or_default().to_owned();
                let routes = shared.lock().unwrap();
                if let Some(tx) = routes.get(&id) {
                    let _ = tx.send(value);
                } else if value["kind"] == "error" {
                    eprintln!("reader.mjs: {value}");
                }
            }
        });
        let (commands, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            commands,
            routes,
            next: AtomicUsize::new(0),
        }
    }

    /// Closes stdin so reader.mjs closes its readers and Chromium (reaping its processes) and exits; killed after
    /// 15 s. Dropping a `Node` kills it at once instead.
    pub async fn close(mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.commands, closed));
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    fn register(&self) -> (String, mpsc::UnboundedReceiver<Value>) {
        let id = format!("r{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap().insert(id.clone(), tx);
        (id, rx)
    }

    fn send(&self, command: Value) {
        let _ = self.commands.send(format!("{command}\n"));
    }

    /// A node `eventsource` reading `url`, listening for `names` (once each).
    pub fn open(&self, url: &str, names: &[&str]) -> Reader {
        let names = distinct(names);
        let (id, rx) = self.register();
        self.send(json!({"op": "open", "id": id, "url": url, "names": names}));
        Reader {
            id,
            rx,
            commands: self.commands.clone(),
        }
    }

    /// Chromium's EventSource on `page` (served by the stream's origin) reading `url`.
    pub fn browser(&self, page: &str, url: &str, names: &[&str]) -> Reader {
        let names = distinct(names);
        let (id, rx) = self.register();
        self.send(json!({"op": "browser", "id": id, "page": page, "url": url, "names": names}));
        Reader {
            id,
            rx,
            commands: self.commands.clone(),
        }
    }
}

/// `names` without repeats: a second listener for a name would report each event twice.
fn distinct<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for name in names {
        if !out.contains(name) {
            out.push(name);
        }
    }
    out
}

/// One EventSource in the node process; closed on drop.
pub struct Reader {
    id: String,
    rx: mpsc::UnboundedReceiver<Value>,
    commands: mpsc::UnboundedSender<String>,
}

/// What a reader got until the end event (or the deadline).
#[derive(Debug, Default)]
pub struct ReaderLog {
    pub items: Vec<RefItem>,
    /// The end event arrived.
    pub complete: bool,
    pub errors: Vec<String>,
}

impl Reader {
    /// Waits for the first `open` (the response headers arrived).
    pub async fn opened(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) if v["kind"] == "open" => return Ok(()),
                Ok(Some(v)) if v["kind"] == "error" && v["message"] != "" => {
                    return Err(format!("reader error: {v}"));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("reader process gone".into()),
                Err(_) => return Err(format!("no open within {limit:?}")),
            }
        }
    }

    /// Reads until an event named or with data `end` arrives, or `limit` passes. The first `open` is the one
    /// [`Reader::opened`] consumed, when it was called.
    pub async fn collect(&mut self, end: &str, limit: Duration, opened: bool) -> ReaderLog {
        let mut log = ReaderLog::default();
        if opened {
            log.items.push(RefItem::Open);
        }
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            match v["kind"].as_str() {
                Some("open") => log.items.push(RefItem::Open),
                Some("event") => {
                    let event = Expected {
                        event: text("event"),
                        data: text("data"),
                        id: text("lastEventId"),
                    };
                    let done = event.event == end || event.data.contains(end);
                    log.items.push(RefItem::Event(event));
                    if done {
                        log.complete = true;
                        break;
                    }
                }
                Some("error") if !text("message").is_empty() => log.errors.push(text("message")),
                _ => {}
            }
        }
        log
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self
            .commands
            .send(format!("{}\n", json!({"op": "close", "id": self.id})));
    }
}
