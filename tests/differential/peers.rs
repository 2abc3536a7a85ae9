//! The differential suite's peers as child processes: the third-party applications (py_apps.py, node_apps.mjs,
//! nginx, grpc_peer.py), the line-driven client drivers (client_driver.py, browser.mjs) and pushbridge itself (the
//! real binary, one plain and one TLS listener, a pass-through route per application). Every child runs in its own
//! process group, killed on drop; start-up is awaited by its first line or by polling its port, within bounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

use crate::support::binary::{self, Binary};
use crate::support::certs::{KeyKind, TestCa, tls_listener};

pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/differential");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Bound on any peer's start-up.
const START: Duration = Duration::from_secs(40);
const SKIP_ENV: &str = "PUSHBRIDGE_SKIP_DIFFERENTIAL";

/// The virtualenv `.ci/diff-deps` makes.
pub fn python() -> PathBuf {
    Path::new(ROOT).join(".ci/.venv/bin/python")
}

/// Whether everything the suite needs is installed; fails naming `.ci/diff-deps` when not, unless [`SKIP_ENV`]=1
/// (then prints a skip line and returns false).
pub fn available() -> bool {
    let mut missing = Vec::new();
    if !python().exists() {
        missing.push(".ci/.venv (the virtualenv)");
    }
    if !Path::new(DIR).join("node_modules/ws/package.json").exists() {
        missing.push("tests/differential/node_modules (ws)");
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
        || !Path::new("/usr/bin/chromium").exists()
    {
        missing.push("chromium and tests/browser/node_modules (playwright-core)");
    }
    if nginx_path().is_none() {
        missing.push("nginx");
    }
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("curl");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var(SKIP_ENV).is_ok_and(|v| v == "1"),
        "the differential suite needs {}: run `bash .ci/diff-deps` (or set {SKIP_ENV}=1 to skip it)",
        missing.join(", ")
    );
    println!(
        "differential suite skipped ({SKIP_ENV}=1): missing {}",
        missing.join(", ")
    );
    false
}

fn nginx_path() -> Option<PathBuf> {
    crate::support::nginx::path()
}

/// A child process in its own process group; the group is killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, mut command: Command) -> Proc {
        command
            .process_group(0)
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start ({e}): run `bash .ci/diff-deps`"));
        Proc {
            name: name.to_owned(),
            child,
        }
    }

    /// The first stdout line, as JSON.
    async fn first_line(&mut self) -> Value {
        let stdout = self.child.stdout.as_mut().expect("piped stdout");
        let mut line = Vec::new();
        let read = timeout(START, async {
            let mut byte = [0u8; 1];
            loop {
                match stdout.read(&mut byte).await {
                    Ok(1) if byte[0] == b'\n' => return true,
                    Ok(1) => line.push(byte[0]),
                    _ => return false,
                }
            }
        })
        .await;
        let name = &self.name;
        assert!(
            matches!(read, Ok(true)),
            "{name} printed no start-up line within {START:?} (see its stderr above)"
        );
        serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "{name} said {:?} instead of JSON: {e}",
                String::from_utf8_lossy(&line)
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The whole group: gunicorn's worker, nginx, the Chromium of the browser driver.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// Waits until `addr` answers an HTTP/1.1 request (any status), or only accepts connections when `h2c_only`.
async fn wait_ready(name: &str, addr: SocketAddr, h2c_only: bool) {
    let ready = timeout(START, async {
        loop {
            if let Ok(mut tcp) = TcpStream::connect(addr).await {
                if h2c_only {
                    return;
                }
                let request = format!(
                    "GET /ready/echo HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                );
                if tcp.write_all(request.as_bytes()).await.is_ok() {
                    let mut head = [0u8; 12];
                    let read = timeout(Duration::from_secs(5), tcp.read_exact(&mut head)).await;
                    if matches!(read, Ok(Ok(_))) && head.starts_with(b"HTTP/1.") {
                        return;
                    }
                }
            }
            // Polls for readiness; nothing is ordered by this pause.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "{name} not ready on {addr} within {START:?}");
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn port_of(info: &Value, key: &str) -> u16 {
    info[key]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no port {key:?} in {info}"))
}

/// One of py_apps.py's servers; returns it and its port.
pub async fn python_app(server: &str) -> (Proc, u16) {
    let mut command = Command::new(python());
    command.arg(Path::new(DIR).join("py_apps.py")).arg(server);
    let mut proc = Proc::spawn(server, command);
    let port = port_of(&proc.first_line().await, "port");
    if server != "websockets" {
        wait_ready(server, addr(port), false).await;
    }
    (proc, port)
}

/// node_apps.mjs; returns it and its (HTTP/1.1, h2c) ports.
pub async fn node_apps() -> (Proc, u16, u16) {
    let mut command = Command::new("node");
    command.arg(Path::new(DIR).join("node_apps.mjs"));
    let mut proc = Proc::spawn("node_apps.mjs", command);
    let info = proc.first_line().await;
    (proc, port_of(&info, "h1"), port_of(&info, "h2c"))
}

/// grpc_peer.py's server; returns it and its port.
pub async fn grpc_app() -> (Proc, u16) {
    let mut command = Command::new(python());
    command
        .arg(Path::new(DIR).join("grpc_peer.py"))
        .arg("server");
    let mut proc = Proc::spawn("grpc_peer.py", command);
    let port = port_of(&proc.first_line().await, "port");
    (proc, port)
}

/// nginx as the application (nginx_app.conf.in): one server on an HTTP/1.1 port and an h2c port.
pub struct Nginx {
    _proc: Proc,
    _dir: tempfile::TempDir,
    pub h1: u16,
    pub h2c: u16,
}

pub async fn nginx_app() -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    // nginx cannot report a port it chose: free ports, bound right away (a clash fails start-up loudly).
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (h1, h2c) = (free(), free());
    let conf = std::fs::read_to_string(Path::new(DIR).join("nginx_app.conf.in"))
        .unwrap()
        .replace("{{DIR}}", &dir.path().display().to_string())
        .replace("{{H1}}", &h1.to_string())
        .replace("{{H2C}}", &h2c.to_string());
    let command = crate::support::nginx::command(&nginx_path().expect("nginx"), dir.path(), &conf);
    let proc = Proc::spawn("nginx", command);
    wait_ready("nginx", addr(h1), false).await;
    wait_ready("nginx (h2c)", addr(h2c), true).await;
    Nginx {
        _proc: proc,
        _dir: dir,
        h1,
        h2c,
    }
}

/// A line-driven driver: one JSON command per line in, one JSON answer per line out.
pub struct Driver {
    proc: Proc,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub ready: Value,
}

impl Driver {
    async fn start(name: &str, command: Command) -> Driver {
        let mut proc = Proc::spawn(name, command);
        let stdin = proc.child.stdin.take().unwrap();
        let lines = BufReader::new(proc.child.stdout.take().unwrap()).lines();
        let mut driver = Driver {
            proc,
            stdin,
            lines,
            ready: Value::Null,
        };
        driver.ready = driver.read(Duration::from_secs(60)).await;
        assert_eq!(driver.ready["ready"], true, "{name}: {}", driver.ready);
        driver
    }

    /// client_driver.py (httpx, Python websockets).
    pub async fn python() -> Driver {
        let mut command = Command::new(python());
        command.arg(Path::new(DIR).join("client_driver.py"));
        Driver::start("client_driver.py", command).await
    }

    /// browser.mjs (Chromium).
    pub async fn chromium() -> Driver {
        let mut command = Command::new("node");
        command.arg(Path::new(DIR).join("browser.mjs"));
        Driver::start("browser.mjs", command).await
    }

    async fn read(&mut self, within: Duration) -> Value {
        let name = &self.proc.name;
        let line = timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name} did not answer within {within:?}"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name} exited (see its stderr above)"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name} said {line:?}: {e}"))
    }

    pub async fn call(&mut self, command: &Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        self.read(Duration::from_secs(60)).await
    }
}

/// A pass-through route of the suite's pushbridge: `prefix` to `127.0.0.1:port` over `h2c` or HTTP/1.1.
pub struct Route {
    pub prefix: String,
    pub port: u16,
    pub h2c: bool,
}

/// pushbridge with a plain and a TLS listener (a fresh test CA; `ca_file` is its PEM for the clients).
pub struct Pushbridge {
    _binary: Binary,
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn pushbridge(routes: &[Route]) -> Pushbridge {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    // Requests no route takes go to a closed port: 502, never a wrong application.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\n{}log: {{ format: json }}\npassthrough:\n  upstream: \"http://{closed}\"\n  routes:\n",
        tls_listener(&cert, &key)
    );
    for route in routes {
        let protocol = if route.h2c { "h2c" } else { "http1" };
        yaml.push_str(&format!(
            "    - {{ prefix: \"{}\", upstream: \"http://127.0.0.1:{}\", protocol: {protocol} }}\n",
            route.prefix, route.port
        ));
    }
    let binary = binary::start(dir.path(), &yaml, 2, false);
    Pushbridge {
        plain: binary.listen[0],
        tls: binary.listen[1],
        _binary: binary,
        ca_file,
        _dir: dir,
    }
}
