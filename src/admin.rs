//! The admin listener (plain HTTP/1.1): `/metrics` (Prometheus text), `/status` and `/status.json` (the
//! operator's page: [`status`]), `/healthz` (the process is alive) and
//! `/readyz` (pushbridge can serve: listeners bound, config loaded, not draining, and — when `admin.ready_check`
//! is set — the application's health URL answers 2xx). Client-chosen stream keys never affect readiness: a
//! stream's upstream failures show in metrics and logs only. The listener has its own small connection cap (at
//! the cap a new connection evicts the oldest idle one: [`evict`]), a request-head and idle timeout, and the
//! client listener's accept back-off.

mod evict;
mod ready;
pub mod status;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::AdminConfig;
use crate::error::StartError;
use crate::listener::watch::{self, Acceptor, Activity, Close};
use crate::metrics::Metrics;
use crate::shutdown::Drain;
use crate::{Body, full_body};
use ready::ReadyCheck;

/// The admin listener's state.
pub struct Admin {
    config: AdminConfig,
    metrics: Arc<Metrics>,
    drain: Drain,
    ready: Option<ReadyCheck>,
    status: Option<status::Status>,
}

impl Admin {
    pub fn new(
        config: &AdminConfig,
        metrics: Arc<Metrics>,
        drain: Drain,
        status: Option<status::Status>,
    ) -> Result<Admin, StartError> {
        let ready = match &config.ready_check {
            Some(url) => Some(ReadyCheck::new(
                url.clone(),
                config.ready_check_timeout,
                metrics.clone(),
            )?),
            None => None,
        };
        Ok(Admin {
            config: config.clone(),
            metrics,
            drain,
            ready,
            status,
        })
    }

    /// Serves admin requests until the process exits (it keeps answering `/readyz` 503 during a drain).
    pub async fn serve(self, listener: TcpListener) {
        let admin = Arc::new(self);
        let permits = Arc::new(Semaphore::new(admin.config.max_connections));
        let connections = Arc::new(evict::Connections::default());
        let mut acceptor = Acceptor::new(listener, permits.clone(), "admin", admin.metrics.clone());
        loop {
            // Accept first: a probe is never left in the kernel's queue behind idle sockets.
            let (tcp, _) = acceptor.accept().await;
            let Some(permit) = room(&permits, &connections, &mut acceptor).await else {
                return;
            };
            let first_by = Instant::now() + admin.config.timeout;
            // Registered here, in accept order: the oldest idle connection is the one accepted first.
            let permit = Arc::new(permit);
            let registration = connections.register(&permit);
            tokio::spawn(
                admin
                    .clone()
                    .connection(tcp, permit, registration, first_by),
            );
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        permit: Arc<tokio::sync::OwnedSemaphorePermit>,
        registration: evict::Registration,
        first_by: Instant,
    ) {
        let (activity, requests) = Activity::new(permit.clone());
        let admin = self.clone();
        let service = service_fn(move |req| {
            requests.arrived();
            let (admin, permit) = (admin.clone(), permit.clone());
            async move {
                let response = admin.respond(&req).await;
                Ok::<_, Infallible>(response.map(|body| watch::hold(body, permit)))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.timeout)
            .serve_connection(TokioIo::new(tcp), service);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = registration.evicted.cancelled() => {
                return crate::listener::closed(&self.metrics, "admin", Close::Evicted);
            }
            reason = activity.watch(first_by, self.config.timeout) => {
                crate::listener::closed(&self.metrics, "admin", reason);
                if reason == Close::HandshakeTimeout {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        match result {
            // hyper's header read timeout, racing the watch's first-request deadline (same length).
            Err(error) if error.is_timeout() => {
                crate::listener::closed(&self.metrics, "admin", Close::HandshakeTimeout);
            }
            Err(error) => tracing::debug!(%error, "Admin connection error"),
            Ok(()) => {}
        }
    }

    async fn respond(&self, req: &Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/metrics" => {
                let mut response = Response::new(full_body(self.metrics.render()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/status" | "/status.json" => match &self.status {
                Some(status) => status_page(status, req.uri().path() == "/status.json").await,
                None => text(StatusCode::NOT_FOUND, "not found\n".into()),
            },
            "/readyz" => {
                if self.drain.is_started() {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
                }
                match &self.ready {
                    Some(check) => match check.ready().await {
                        Ok(()) => text(StatusCode::OK, "ready\n".into()),
                        Err(reason) => text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("application not ready: {reason}\n"),
                        ),
                    },
                    None => text(StatusCode::OK, "ready\n".into()),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

/// How often a connection waiting for a permit looks again for an idle connection to evict (busy ones that
/// finished their request but stay open).
const RECHECK: Duration = Duration::from_millis(50);

/// A permit for a new admin connection: a free one, else the one the oldest idle connection gives up; only while
/// every connection is busy does it wait (counted as the limit reached). `None`: the permits closed.
async fn room(
    permits: &Arc<Semaphore>,
    connections: &evict::Connections,
    acceptor: &mut Acceptor,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    let mut evicted = connections.evict_idle();
    if !evicted {
        acceptor.limit_reached();
    }
    let acquire = permits.clone().acquire_owned();
    let mut acquire = std::pin::pin!(acquire);
    loop {
        tokio::select! {
            permit = acquire.as_mut() => return permit.ok(),
            () = tokio::time::sleep(RECHECK), if !evicted => evicted = connections.evict_idle(),
        }
    }
}

/// `/status` (HTML) or `/status.json`, from the snapshot all viewers share: never cached by the browser; the page's
/// own script and style only.
async fn status_page(status: &status::Status, json: bool) -> Response<Body> {
    let snapshot = status.snapshot().await;
    let (body, content_type) = if json {
        (snapshot.json(), "application/json")
    } else {
        (snapshot.html(), "text/html; charset=utf-8")
    };
    let mut response = Response::new(full_body(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
