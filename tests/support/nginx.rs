//! nginx as a reverse proxy in front of pushbridge (or any loopback server): a child process with its own temp
//! dir, config from nginx.conf.in with the scenario's proxy directives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const NGINX_CONF: &str = include_str!("nginx.conf.in");

/// The nginx binary, where Debian (or a local build) puts it.
pub fn path() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.exists())
}

/// An nginx command in the foreground with `conf` written to `dir` (also its prefix, error log and temp files).
pub fn command(nginx: &Path, dir: &Path, conf: &str) -> Command {
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"]);
    command
}

/// nginx as a child process in its own temp dir (config, pid, logs, temp files), killed on drop.
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in front of `upstream` with the `proxy` directives, on `port` (or a free one).
    pub async fn start(
        nginx: &Path,
        upstream: SocketAddr,
        proxy: &str,
        port: Option<u16>,
    ) -> Nginx {
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
        let mut child = command(nginx, dir.path(), &conf)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nginx did not start ({e}): install nginx (`bash .ci/browser-deps`)")
            });
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

    pub fn addr(&self) -> SocketAddr {
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
