//! Starts the real pushbridge server in-process from a YAML config (listeners on 127.0.0.1:0).

use std::net::SocketAddr;

use pushbridge::app::{self, Running};
use pushbridge::config::Config;

pub struct TestProxy {
    running: Running,
}

/// Parses and validates `yaml` exactly as `pushbridge run` would, then starts serving.
pub async fn start(yaml: &str) -> TestProxy {
    let config =
        Config::parse("test.yaml", yaml).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    let running = app::start(config)
        .await
        .unwrap_or_else(|e| panic!("proxy did not start: {e}"));
    TestProxy { running }
}

impl TestProxy {
    /// The first client listener.
    pub fn addr(&self) -> SocketAddr {
        self.running.listen_addrs()[0]
    }

    /// The n-th client listener (config order).
    pub fn addr_at(&self, n: usize) -> SocketAddr {
        self.running.listen_addrs()[n]
    }

    pub fn admin(&self) -> SocketAddr {
        self.running
            .admin_addr()
            .expect("config has an admin listener")
    }

    pub fn running(&self) -> &Running {
        &self.running
    }

    /// Drains; true when it finished within the grace period.
    pub async fn shutdown(self) -> bool {
        self.running.shutdown().await
    }
}
