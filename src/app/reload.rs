//! Hot reload. A watcher polls the config file and every TLS certificate/key by content (so a Kubernetes
//! ConfigMap or Secret update, which swaps a `..data` symlink, is seen like an edit in place). A changed config is
//! validated first: a bad one is refused and logged while the old one keeps serving. Routes whose definition did not
//! change keep their streams, subscribers and buffers; changed or removed routes' streams end (clients reconnect
//! and resume). Certificates swap for new handshakes; open connections keep theirs.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Running, build_route};
use crate::config::Config;
use crate::error::StartError;
use crate::passthrough::Passthrough;
use crate::server::Router;

/// How often the watched files are read.
pub const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// What the watcher saw change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Config,
    Certificates,
}

/// Polls `config` and the TLS files of `running` until the receiver is dropped. `config_hash` is the
/// [`fingerprint`] of the config as loaded (taken before the listeners start, so an edit made as soon as they
/// are up is seen).
pub fn watch(
    config: PathBuf,
    config_hash: Option<u64>,
    tls_files: Vec<PathBuf>,
) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut config_hash = config_hash;
        let mut tls_hash = fingerprint_all(&tls_files);
        let mut ticks = tokio::time::interval(WATCH_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // An unreadable file (mid-swap, out of file descriptors) is no change: keep the last good hash, so a
            // transient read error neither counts a failed reload nor triggers a spurious one once it clears.
            let now = fingerprint(&config);
            if now.is_some() && now != config_hash {
                config_hash = now;
                if tx.send(Change::Config).await.is_err() {
                    return;
                }
            }
            let now = fingerprint_all(&tls_files);
            if now.iter().all(Option::is_some) && now != tls_hash {
                tls_hash = now;
                if tx.send(Change::Certificates).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// A hash of the file's content (`None` when unreadable, e.g. mid-swap).
pub fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

fn fingerprint_all(paths: &[PathBuf]) -> Vec<Option<u64>> {
    paths.iter().map(|p| fingerprint(p)).collect()
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Routes kept as they were (with their live streams).
    pub kept: Vec<String>,
    /// Routes added or rebuilt.
    pub rebuilt: Vec<String>,
    /// Routes removed.
    pub removed: Vec<String>,
    /// Settings that only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Running {
    /// Applies a validated config: swaps the routing table, keeping unchanged routes and their streams.
    pub fn apply(&self, config: Config) -> Result<Outcome, StartError> {
        let mut current = crate::hub::lock(&self.config);
        let old_router = self.router.load_full();
        let old_routes: HashMap<&str, _> =
            old_router.routes.iter().map(|r| (&*r.name, r)).collect();
        let mut outcome = Outcome::default();
        let mut routes = Vec::new();
        // Every upstream reads max_event_bytes when it starts: a change rebuilds every route (clients resume).
        let limits_same = config.limits.max_event_bytes == current.limits.max_event_bytes;
        for stream in &config.streams {
            let fresh = build_route(&config, stream, &self.metrics)?;
            match old_routes.get(stream.name.as_str()) {
                Some(old)
                    if limits_same
                        && old.config == fresh.config
                        && old.settings == fresh.settings =>
                {
                    outcome.kept.push(stream.name.clone());
                    routes.push((*old).clone());
                }
                _ => {
                    outcome.rebuilt.push(stream.name.clone());
                    routes.push(Arc::new(fresh));
                }
            }
        }
        outcome.removed = old_routes
            .keys()
            .filter(|name| !config.streams.iter().any(|s| s.name == **name))
            .map(|name| name.to_string())
            .collect();
        // The internal URLs the pass-through refuses come from the streams: a change there rebuilds it too.
        let internal = crate::config::internal_urls(&config);
        let passthrough = match (&config.passthrough, &current.passthrough) {
            (new, old) if new == old && internal == crate::config::internal_urls(&current) => {
                old_router.passthrough.clone()
            }
            (Some(cfg), _) => {
                for warning in crate::config::internal_url_warnings(&config) {
                    tracing::warn!("Internal URL: {warning}");
                }
                let passthrough = Passthrough::new(
                    cfg,
                    &internal,
                    self.metrics.clone(),
                    old_router.drain.clone(),
                );
                Some(passthrough.map_err(|e| StartError::Passthrough(e.to_string()))?)
            }
            (None, _) => None,
        };
        if config.listen != current.listen {
            outcome.needs_restart.push("listen");
        }
        if config.publish != current.publish {
            outcome.needs_restart.push("publish");
        }
        if config.admin != current.admin {
            outcome.needs_restart.push("admin");
        }
        // client_queue and max_event_bytes apply through the rebuilt routes, shutdown.grace at the drain; the
        // listener's limits are fixed when it starts.
        let (new, old) = (&config.limits, &current.limits);
        if new.max_connections != old.max_connections
            || new.handshake_timeout != old.handshake_timeout
            || new.idle_connection_timeout != old.idle_connection_timeout
            || new.keepalive_interval != old.keepalive_interval
            || new.h2_max_streams_per_connection != old.h2_max_streams_per_connection
            || new.h2_send_buffer != old.h2_send_buffer
        {
            outcome.needs_restart.push(
                "limits.max_connections/handshake_timeout/idle_connection_timeout/keepalive_interval/h2_*",
            );
        }
        if config.log != current.log {
            outcome.needs_restart.push("log");
        }
        let names: Vec<String> = config.streams.iter().map(|s| s.name.clone()).collect();
        self.metrics.add_routes(&names);
        self.router.store(Arc::new(Router {
            routes,
            passthrough,
            hub: self.hub.clone(),
            metrics: self.metrics.clone(),
            drain: self.drain.token(),
            max_key_bytes: config.limits.max_key_bytes,
            max_event_bytes: config.limits.max_event_bytes,
        }));
        self.hub.set_max_streams(config.limits.max_streams);
        self.hub
            .set_max_buffer_bytes(config.limits.max_buffer_bytes);
        self.hub
            .set_negative_cache_ttl(config.limits.negative_cache_ttl);
        for deprecated in &config.deprecated {
            tracing::warn!("{deprecated}");
        }
        let kept = outcome.kept.clone();
        self.hub
            .retain_routes(|route| kept.iter().any(|k| k == route));
        *crate::hub::lock(&self.stamp) = crate::admin::status::Loaded::of(&config);
        *current = config;
        Ok(outcome)
    }

    /// Reads, validates and applies the config file; a bad file is refused and logged, the old config stays.
    pub fn reload_from(&self, path: &Path) -> bool {
        let result = Config::load(path)
            .map_err(StartError::from)
            .and_then(|config| self.apply(config));
        match result {
            Ok(outcome) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(
                    config = %path.display(), kept = ?outcome.kept, rebuilt = ?outcome.rebuilt,
                    removed = ?outcome.removed, "Config reloaded"
                );
                if !outcome.needs_restart.is_empty() {
                    tracing::warn!(settings = ?outcome.needs_restart, "Changed settings take effect after a restart");
                }
                true
            }
            Err(error) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(config = %path.display(), "Config reload refused; the old config keeps serving:\n{error}");
                false
            }
        }
    }

    /// Re-reads every listener's certificate and key; a failure keeps that listener's old certificate.
    pub fn reload_certificates(&self) {
        for tls in &self.tls {
            let Some((cert, _)) = tls.paths() else {
                continue;
            };
            match tls.reload() {
                Ok(()) => {
                    record_expiry(&self.metrics, tls);
                    tracing::info!(cert = %cert.display(), "Certificate reloaded")
                }
                Err(error) => {
                    tracing::error!(%error, "Certificate reload failed; keeping the old certificate")
                }
            }
        }
    }

    /// The TLS files to watch.
    pub fn tls_files(&self) -> Vec<PathBuf> {
        self.tls
            .iter()
            .filter_map(|tls| tls.paths())
            .flat_map(|(cert, key)| [cert.to_path_buf(), key.to_path_buf()])
            .collect()
    }
}

/// Sets `pushbridge_tls_cert_expiry_timestamp_seconds` for the certificate `tls` serves now.
pub(crate) fn record_expiry(metrics: &crate::metrics::Metrics, tls: &crate::tls::ServerTls) {
    let leaf = tls.current().cert.first().cloned();
    if let (Some((cert, _)), Some(at)) = (tls.paths(), leaf.and_then(|l| crate::tls::not_after(&l)))
    {
        metrics.cert_expiry(cert, at);
    }
}
