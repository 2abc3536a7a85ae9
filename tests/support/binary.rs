//! Runs the real `pushbridge` binary with a config file and finds its bound addresses from its log (JSON or text).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Binary {
    pub child: Child,
    pub listen: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The publish listener, when configured (logged before the client listeners).
    pub publish: Option<SocketAddr>,
    /// Every later log line.
    pub log: mpsc::Receiver<String>,
    /// The log lines read while waiting for the listeners.
    pub startup: Vec<String>,
}

/// Starts `pushbridge run -c <dir>/config.yaml` with `yaml` (which should set `log: {format: json}`).
pub fn start(dir: &Path, yaml: &str, listeners: usize, admin: bool) -> Binary {
    start_with_log(dir, yaml, listeners, admin, "info")
}

/// [`start`] with `RUST_LOG` set to `rust_log`.
pub fn start_with_log(
    dir: &Path,
    yaml: &str,
    listeners: usize,
    admin: bool,
    rust_log: &str,
) -> Binary {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    start_at(&path, listeners, admin, rust_log)
}

/// [`start`] under an open-file limit of `nofile` (via util-linux `prlimit`, which execs the binary).
pub fn start_with_fd_limit(
    dir: &Path,
    yaml: &str,
    listeners: usize,
    admin: bool,
    nofile: u32,
) -> Binary {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_pushbridge"));
    spawn(command, &path, listeners, admin, "info")
}

/// Starts `pushbridge run -c <path>` with the config file already in place.
pub fn start_at(path: &Path, listeners: usize, admin: bool, rust_log: &str) -> Binary {
    spawn(
        Command::new(env!("CARGO_BIN_EXE_pushbridge")),
        path,
        listeners,
        admin,
        rust_log,
    )
}

fn spawn(
    mut command: Command,
    path: &Path,
    listeners: usize,
    admin: bool,
    rust_log: &str,
) -> Binary {
    let mut child = command
        .args(["run", "-c"])
        .arg(path)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pushbridge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut listen = Vec::new();
    let mut admin_addr = None;
    let mut publish = None;
    let mut startup = Vec::new();
    while listen.len() < listeners || (admin && admin_addr.is_none()) {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("pushbridge start-up log");
        startup.push(line);
        match listening(&startup[startup.len() - 1]) {
            Some(("Listening", address)) => listen.push(address),
            Some(("Admin listening", address)) => admin_addr = Some(address),
            Some(("Publish listening", address)) => publish = Some(address),
            _ => {}
        }
    }
    Binary {
        child,
        listen,
        admin: admin_addr,
        publish,
        log: rx,
        startup,
    }
}

/// The message and address of a `Listening` / `Admin listening` line, JSON or text (colour codes ignored).
fn listening(line: &str) -> Option<(&'static str, SocketAddr)> {
    let (message, address) = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(value) => {
            let fields = &value["fields"];
            (
                fields["message"].as_str()?.to_owned(),
                fields["address"].as_str()?.to_owned(),
            )
        }
        Err(_) => {
            let plain = strip_ansi(line);
            let message = if plain.contains(" Admin listening ") {
                "Admin listening"
            } else if plain.contains(" Publish listening ") {
                "Publish listening"
            } else if plain.contains(" Listening ") {
                "Listening"
            } else {
                return None;
            };
            let address = plain
                .split_whitespace()
                .find_map(|w| w.strip_prefix("address="))?
                .to_owned();
            (message.to_owned(), address)
        }
    };
    let address = address.parse().ok()?;
    ["Listening", "Admin listening", "Publish listening"]
        .into_iter()
        .find(|m| *m == message)
        .map(|m| (m, address))
}

/// `line` without ANSI SGR sequences (`ESC [ … m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Binary {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Every remaining log line, up to the end of the output (call after the process exited).
    pub fn drain_log(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(10)) {
            lines.push(line);
        }
        lines
    }

    /// Waits (blocking) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(error) => panic!("no log line with {needle:?} within {limit:?}: {error}"),
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (up to `limit`); returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pushbridge did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary serving `yaml` (JSON logs added) from a fresh directory, with one listener.
pub struct Started {
    pub binary: Binary,
    _dir: tempfile::TempDir,
}

impl Started {
    /// The (first) listener.
    pub fn addr(&self) -> SocketAddr {
        self.binary.listen[0]
    }
}

/// Starts the binary with `yaml`, which must have one listener and no `log` key.
pub fn started(yaml: &str) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("{yaml}\nlog: {{ format: json }}\n");
    let binary = start(dir.path(), &yaml, 1, false);
    Started { binary, _dir: dir }
}

/// A local SSE upstream (with `published` already sent) and the binary in front of it: one listener, an admin
/// listener, JSON logs, the route `/events/{channel}`, plus `extra` top-level YAML. The directory holds the
/// binary's config while it runs.
pub async fn with_sse_upstream(
    extra: &str,
    published: &[&str],
) -> (super::upstream::SseUpstream, tempfile::TempDir, Binary) {
    with_sse_route("/events/{channel}", extra, published).await
}

/// [`with_sse_upstream`] with the stream route at `path` (its upstream is `/up` followed by `path`).
pub async fn with_sse_route(
    path: &str,
    extra: &str,
    published: &[&str],
) -> (super::upstream::SseUpstream, tempfile::TempDir, Binary) {
    let upstream = super::upstream::SseUpstream::start(true).await;
    for data in published {
        upstream.publish(*data);
    }
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
streams:
  - path: {path}
    upstream: {{ url: "http://{}/up{path}" }}
{extra}
"#,
        upstream.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = start(dir.path(), &yaml, 1, true);
    (upstream, dir, binary)
}
