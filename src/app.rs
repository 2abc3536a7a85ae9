//! Wiring: builds the listeners, the admin listener, the hub and the routes (with their upstream starters) from a
//! [`Config`], and owns drain.

pub mod reload;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Empty;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::StartError;
use crate::hub::{Hub, Settings, StartUpstream, Stream};
use crate::listener::{self, Shared};
use crate::metrics::Metrics;
use crate::passthrough::Passthrough;
use crate::route::Route;
use crate::server::Router;
use crate::shutdown::Drain;
use crate::tls::ServerTls;
use crate::transports::messages::Forwarder;
use crate::upstream::{self, Backoff, UpstreamSpec};

/// A started server.
pub struct Running {
    listen_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    publish_addr: Option<SocketAddr>,
    drain: Drain,
    connections: TaskTracker,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    router: Arc<ArcSwap<Router>>,
    /// The config in force (for reload diffs).
    config: Mutex<Config>,
    /// Every TLS listener's certificate (for reload).
    tls: Vec<Arc<ServerTls>>,
    /// The config in force as the status page shows it (hash, load time).
    stamp: crate::admin::status::ConfigStamp,
}

/// Everything [`start`] builds before it binds a socket: `check` and the config fuzz target run this too, so
/// they accept exactly what `run` accepts.
pub struct Prepared {
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    drain: Drain,
    router: Arc<ArcSwap<Router>>,
    /// Per client listener, in config order: its TLS, if any.
    tls: Vec<Option<Arc<ServerTls>>>,
    /// The publish listener's TLS, if any.
    publish_tls: Option<Arc<ServerTls>>,
    permits: Arc<Semaphore>,
    config: Config,
}

/// Builds the metrics, hub, routes (upstream clients, auth checks, forwarders) and listener TLS of `config`,
/// and its connection permits. Needs a Tokio runtime (it does not bind or connect anything).
pub fn prepare(config: Config) -> Result<Prepared, StartError> {
    let route_names: Vec<String> = config.streams.iter().map(|s| s.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&route_names)?);
    let hub = Hub::new(metrics.clone());
    hub.set_max_buffer_bytes(config.limits.max_buffer_bytes);
    hub.set_max_streams(config.limits.max_streams);
    hub.set_negative_cache_ttl(config.limits.negative_cache_ttl);
    let drain = Drain::new();
    let router = Arc::new(ArcSwap::from_pointee(build_router(
        &config, &hub, &metrics, &drain,
    )?));
    let mut tls = Vec::new();
    for listen in &config.listen {
        tls.push(match &listen.tls {
            Some(files) => Some(Arc::new(ServerTls::load(&files.cert, &files.key)?)),
            None => None,
        });
    }
    let publish_tls = match config.publish.as_ref().and_then(|p| p.tls.as_ref()) {
        Some(files) => Some(Arc::new(ServerTls::load(&files.cert, &files.key)?)),
        None => None,
    };
    // Validation caps max_connections far below the semaphore's limit; this keeps a panic impossible anyway.
    let permits = config.limits.max_connections.min(Semaphore::MAX_PERMITS);
    Ok(Prepared {
        metrics,
        hub,
        drain,
        router,
        tls,
        publish_tls,
        permits: Arc::new(Semaphore::new(permits)),
        config,
    })
}

/// `pushbridge check` after validation: runs [`prepare`] (on a small runtime of its own) and drops the result;
/// `Ok` holds the warnings `run` would log about this process (the open-file limit) and its layout (internal URLs
/// of the application a client can reach through the pass-through).
pub fn check(config: Config) -> Result<Vec<String>, crate::BoxError> {
    let warnings = crate::fds::start_warning(&config.limits)
        .into_iter()
        .chain(config.deprecated.iter().cloned())
        .chain(crate::config::internal_url_warnings(&config))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move { prepare(config).map(drop) })?;
    Ok(warnings)
}

/// Binds every listener and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let Prepared {
        metrics,
        hub,
        drain,
        router,
        tls,
        publish_tls,
        permits,
        config,
    } = prepare(config)?;
    crate::logs::library::limit_with(metrics.logs.clone());

    // Bind every address before serving anything: a bad one fails the start.
    let mut bound = Vec::new();
    let tls_all: Vec<Arc<ServerTls>> = tls
        .iter()
        .flatten()
        .chain(publish_tls.iter())
        .cloned()
        .collect();
    for (listen, tls) in config.listen.iter().zip(tls) {
        bound.push((bind(listen.address).await?, tls));
    }
    let admin = match &config.admin {
        Some(admin) => Some((bind(admin.address).await?, admin.clone())),
        None => None,
    };
    let publish = match &config.publish {
        Some(publish) => Some((bind(publish.address).await?, publish.clone())),
        None => None,
    };

    let stamp = Arc::new(Mutex::new(crate::admin::status::Loaded::of(&config)));
    let shared = Shared {
        router: router.clone(),
        permits,
        limits: config.limits,
        metrics: metrics.clone(),
        drain: drain.token(),
        connections: TaskTracker::new(),
    };
    let mut publish_addr = None;
    if let Some((tcp, publish)) = publish {
        let address = tcp.local_addr().map_err(|source| StartError::Bind {
            address: publish.address,
            source,
        })?;
        tracing::info!(%address, tls = publish_tls.is_some(), "Publish listening");
        publish_addr = Some(address);
        let publisher =
            crate::publish::Publisher::new(publish, config.limits, router.clone(), metrics.clone());
        tokio::spawn(publisher.serve(
            tcp,
            publish_tls,
            shared.drain.clone(),
            shared.connections.clone(),
        ));
    }
    let mut listen_addrs = Vec::new();
    for (tcp, tls) in bound {
        let address = tcp.local_addr().map_err(|source| StartError::Bind {
            address: listen_addrs_hint(&tcp),
            source,
        })?;
        tracing::info!(%address, tls = tls.is_some(), version = env!("CARGO_PKG_VERSION"), "Listening");
        listen_addrs.push(address);
        tokio::spawn(listener::serve(tcp, tls, shared.clone()));
    }
    crate::fds::warn_at_start(&config.limits);
    for deprecated in &config.deprecated {
        tracing::warn!("{deprecated}");
    }
    for tls in &tls_all {
        reload::record_expiry(&metrics, tls);
    }
    let admin_addr = match admin {
        Some((tcp, admin_config)) => {
            let address = tcp.local_addr().map_err(|source| StartError::Bind {
                address: listen_addrs_hint(&tcp),
                source,
            })?;
            tracing::info!(%address, "Admin listening");
            let status = crate::admin::status::Status::new(
                router.clone(),
                metrics.clone(),
                stamp.clone(),
                crate::admin::status::Listeners {
                    client: listen_addrs.clone(),
                    publish: publish_addr,
                    admin: address,
                },
            );
            let admin = crate::admin::Admin::new(
                &admin_config,
                metrics.clone(),
                drain.clone(),
                Some(status),
            )?;
            tokio::spawn(admin.serve(tcp));
            Some(address)
        }
        None => None,
    };
    Ok(Running {
        listen_addrs,
        admin_addr,
        publish_addr,
        drain,
        connections: shared.connections,
        hub,
        metrics,
        router,
        config: Mutex::new(config),
        tls: tls_all,
        stamp,
    })
}

fn listen_addrs_hint(tcp: &TcpListener) -> SocketAddr {
    tcp.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

/// The routing table for a config.
pub fn build_router(
    config: &Config,
    hub: &Arc<Hub>,
    metrics: &Arc<Metrics>,
    drain: &Drain,
) -> Result<Router, StartError> {
    let mut routes = Vec::new();
    for stream in &config.streams {
        routes.push(Arc::new(build_route(config, stream, metrics)?));
    }
    let passthrough = match &config.passthrough {
        Some(cfg) => {
            for warning in crate::config::internal_url_warnings(config) {
                tracing::warn!("Internal URL: {warning}");
            }
            let internal = crate::config::internal_urls(config);
            let passthrough = Passthrough::new(cfg, &internal, metrics.clone(), drain.token());
            Some(passthrough.map_err(|e| StartError::Passthrough(e.to_string()))?)
        }
        None => None,
    };
    Ok(Router {
        routes,
        passthrough,
        hub: hub.clone(),
        metrics: metrics.clone(),
        drain: drain.token(),
        max_key_bytes: config.limits.max_key_bytes,
        max_event_bytes: config.limits.max_event_bytes,
    })
}

pub(crate) fn build_route(
    config: &Config,
    stream: &crate::config::StreamConfig,
    metrics: &Arc<Metrics>,
) -> Result<Route, StartError> {
    for risk in crate::auth::cross_origin_risks(stream) {
        tracing::warn!(route = %stream.name, "Cross-origin risk: {risk}");
    }
    let upstream = &stream.upstream;
    let route_error = |message: String| StartError::Route {
        route: stream.name.clone(),
        message,
    };
    let client = upstream::http_client::<Empty<Bytes>>(
        upstream.ca_file.as_deref(),
        upstream.connect_timeout,
    )?;
    let backoff = Backoff::try_new(upstream.reconnect.initial, upstream.reconnect.max)
        .map_err(route_error)?;
    let name: Arc<str> = stream.name.as_str().into();
    metrics.upstream.set_kind(&name, upstream.kind.as_str());
    let template = upstream.url.clone();
    let kind = upstream.kind;
    let connect_timeout = upstream.connect_timeout;
    let options = Arc::new(upstream.clone());
    let heartbeat = stream.heartbeat;
    let idle_timeout = upstream.idle_timeout;
    let max_event_bytes = config.limits.max_event_bytes;
    let start_metrics = metrics.clone();
    let route_name = name.clone();
    // `ws.subprotocols_upstream: pass` (validated: per-client, `kind: ws`): the application's answers reach the
    // waiting clients through this.
    let relay = (stream.ws.subprotocols_upstream == crate::config::SubprotocolsUpstream::Pass)
        .then(|| Arc::new(upstream::Relay::default()));
    let start_relay = relay.clone();
    let start: StartUpstream = if kind == crate::config::UpstreamKind::Publish {
        // No upstream: the publish listener feeds the stream; subscribers see it up.
        Arc::new(|stream: Arc<Stream>, _stop, _headers| {
            stream.set_upstream(crate::hub::UpstreamState::Up)
        })
    } else {
        Arc::new(move |stream: Arc<Stream>, stop, headers: http::HeaderMap| {
            let url = match template.render(&stream.key().params) {
                Ok(url) => url,
                Err(error) => {
                    tracing::error!(%error, stream = %stream.key(), "Cannot build the upstream URL");
                    return;
                }
            };
            let redis = match redis_log(&options, &url, &stream, connect_timeout, max_event_bytes) {
                Ok(redis) => redis,
                Err(error) => {
                    tracing::error!(%error, stream = %stream.key(), "Cannot set up the Redis stream");
                    return;
                }
            };
            if let Some(tee) = &options.tee
                && !stream.has_observer()
            {
                let started = tee.key.render_text(&stream.key().params).and_then(|key| {
                    upstream::Tee::start(
                        tee,
                        key,
                        stream.key().to_string(),
                        backoff,
                        connect_timeout,
                        start_metrics.clone(),
                        stream.stop_token(),
                    )
                });
                match started {
                    Ok(tee) => {
                        stream.set_observer(Arc::new(move |event| tee.offer(event)));
                    }
                    Err(error) => {
                        tracing::error!(%error, stream = %stream.key(), "Cannot set up upstream.tee")
                    }
                }
            }
            let spec = UpstreamSpec {
                route: route_name.clone(),
                url,
                kind,
                headers,
                connect_timeout,
                idle_timeout,
                backoff,
                max_event_bytes,
                options: options.clone(),
                heartbeat,
                redis,
                relay: start_relay.clone(),
            };
            tokio::spawn(upstream::supervise(
                spec,
                client.clone(),
                stream,
                stop,
                start_metrics.clone(),
            ));
        })
    };
    let settings = Settings {
        buffer_events: stream.buffer.events,
        buffer_age: stream.buffer.age,
        buffer_max_bytes: stream.buffer.max_bytes,
        max_streams: stream.max_streams.unwrap_or(usize::MAX),
        client_queue: config.limits.client_queue,
        // A per-client stream serves one client session: it ends with it.
        idle_timeout: match stream.mode {
            crate::config::Mode::Shared => stream.idle_timeout,
            crate::config::Mode::PerClient => Duration::ZERO,
        },
    };
    let messages = match &stream.client_messages {
        Some(cfg) => Some(Forwarder::new(cfg)?),
        None => None,
    };
    let auth_check = match stream.auth.as_ref().and_then(|a| a.check.clone()) {
        Some(url) => Some(crate::auth::AuthCheck::new(url, stream.auth.as_ref())?),
        None => None,
    };
    Ok(Route {
        name,
        config: stream.clone(),
        settings,
        start,
        messages,
        auth_check,
        relay,
    })
}

impl Running {
    /// The bound client listener addresses, in config order.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen_addrs
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound publish listener address, if `publish:` is configured.
    pub fn publish_addr(&self) -> Option<SocketAddr> {
        self.publish_addr
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn router(&self) -> &Arc<ArcSwap<Router>> {
        &self.router
    }

    /// Drains (DESIGN §7): stop accepting, `/readyz` 503, end every stream, let in-flight requests finish.
    /// Returns true when everything finished within `shutdown.grace`.
    pub async fn shutdown(self) -> bool {
        // Read now, so a reloaded `shutdown.grace` applies.
        let grace = crate::hub::lock(&self.config).shutdown.grace;
        tracing::info!(?grace, "Draining");
        self.drain.start();
        self.hub.close_all();
        self.connections.close();
        let finished = tokio::time::timeout(grace, self.connections.wait())
            .await
            .is_ok();
        if finished {
            tracing::info!("Drained");
        } else {
            tracing::warn!(?grace, "Grace period over: closing remaining connections");
        }
        finished
    }
}

/// `pushbridge run`: serve until SIGTERM/SIGINT, then drain. SIGHUP or a changed config file reloads; changed
/// certificate files are reloaded.
pub async fn run(path: std::path::PathBuf, config: Config) -> Result<(), crate::BoxError> {
    use crate::shutdown::Signal;
    let mut signals = crate::shutdown::signals()?;
    let config_hash = reload::fingerprint(&path);
    let running = start(config).await?;
    let mut changes = reload::watch(path.clone(), config_hash, running.tls_files());
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => {
                    running.reload_from(&path);
                }
                Some(Signal::Drain) | None => break,
            },
            Some(change) = changes.recv() => match change {
                reload::Change::Config => {
                    running.reload_from(&path);
                }
                reload::Change::Certificates => running.reload_certificates(),
            },
        }
    }
    running.shutdown().await;
    Ok(())
}

/// `kind: redis`: the stream's Redis log (also set as the stream's history, for deep resume).
fn redis_log(
    options: &crate::config::UpstreamConfig,
    url: &http::Uri,
    stream: &Arc<Stream>,
    connect_timeout: Duration,
    max_event_bytes: usize,
) -> Result<Option<Arc<upstream::redis::RedisLog>>, String> {
    if options.kind != crate::config::UpstreamKind::Redis {
        return Ok(None);
    }
    // An upstream restarted after dormancy keeps the stream's log (and the last id it read).
    if let Some(history) = stream.history()
        && let Some(redis) = history
            .as_any()
            .downcast_ref::<upstream::redis::RedisHistory>()
    {
        return Ok(Some(redis.0.clone()));
    }
    let key = options
        .key
        .as_ref()
        .ok_or("no `key`")?
        .render_text(&stream.key().params)?;
    let fields = options.fields.clone().unwrap_or_default();
    let log = upstream::redis::RedisLog::new(
        &url.to_string(),
        options.ca_file.as_deref(),
        key,
        fields,
        connect_timeout,
        max_event_bytes,
    )?;
    stream.set_history(Arc::new(upstream::redis::RedisHistory(log.clone())));
    Ok(Some(log))
}
