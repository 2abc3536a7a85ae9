//! A real `redis-server` for the Redis upstream tests: started on a free port with an append-only file
//! (`appendfsync always`, so a kill loses nothing it acknowledged), ready once it answers PING, restartable on the
//! same port and data directory, killed on drop; or TLS-only (`rediss://`) with a certificate of a private CA.
//! Plus a small client to append, trim and read entries.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::client::WAIT;

pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    tls: Option<Tls>,
}

/// A TLS-only server's certificate and key, and the CA (PEM) its clients trust.
#[derive(Clone)]
pub struct Tls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca_pem: String,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_with(None).await
    }

    /// A server listening only for TLS (`--tls-port`, clients not asked for certificates).
    pub async fn start_tls(tls: Tls) -> RedisServer {
        RedisServer::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<Tls>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = spawn(port, dir.path(), tls.as_ref());
        let server = RedisServer {
            child,
            port,
            dir,
            tls,
        };
        server.wait_ready().await;
        server
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://localhost:<port>/0` (the certificate's name) for TLS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}/0", self.port),
            Some(_) => format!("rediss://localhost:{}/0", self.port),
        }
    }

    /// Kills the server (SIGKILL: no shutdown save; the AOF has every acknowledged write).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server (SIGSTOP): it keeps its sockets and reads nothing until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Resumes a paused server (SIGCONT): it runs what arrived meanwhile.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Starts it again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.child = spawn(self.port, self.dir.path(), self.tls.as_ref());
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(mut c) = self.try_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server never answered PING"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn try_connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = match &self.tls {
            None => redis::Client::open(self.url())?,
            Some(tls) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.ca_pem.clone().into_bytes()),
                },
            )?,
        };
        client.get_multiplexed_async_connection().await
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.try_connection().await.expect("redis connection")
    }

    /// `XADD key * event E data D`: the new entry's id.
    pub async fn xadd(&self, key: &str, event: &str, data: &str) -> String {
        redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("event")
            .arg(event)
            .arg("data")
            .arg(data)
            .query_async(&mut self.connection().await)
            .await
            .expect("XADD")
    }

    /// `XTRIM key MAXLEN n` (exact).
    pub async fn trim(&self, key: &str, keep: usize) {
        redis::cmd("XTRIM")
            .arg(key)
            .arg("MAXLEN")
            .arg(keep)
            .query_async::<i64>(&mut self.connection().await)
            .await
            .expect("XTRIM");
    }

    /// Every entry of `key` as (id, event, data).
    pub async fn entries(&self, key: &str) -> Vec<(String, String, String)> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.connection().await)
            .await
            .expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|e| {
                let field = |f: &str| e.get::<String>(f).unwrap_or_default();
                (e.id.clone(), field("event"), field("data"))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server is killed as well (SIGKILL works on a stopped process).
        self.kill();
    }
}

fn spawn(port: u16, dir: &std::path::Path, tls: Option<&Tls>) -> Child {
    let mut command = Command::new("redis-server");
    match tls {
        None => command.args(["--port", &port.to_string()]),
        Some(tls) => {
            let ca = dir.join("ca.pem");
            std::fs::write(&ca, &tls.ca_pem).unwrap();
            command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"])
        }
    };
    command
        .args(["--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server) on PATH")
}
