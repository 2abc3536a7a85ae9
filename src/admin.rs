//! The admin listener (plain HTTP/1.1): `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (listeners bound and no live stream whose last upstream attempt failed; 503 while draining).

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::Drain;
use crate::{Body, full_body};

/// Serves admin requests until the process exits (it keeps answering `/readyz` 503 during a drain).
pub async fn serve(listener: TcpListener, hub: Arc<Hub>, metrics: Arc<Metrics>, drain: Drain) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "Admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (hub, metrics, drain) = (hub.clone(), metrics.clone(), drain.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &hub, &metrics, &drain);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(error) = conn.await {
                tracing::debug!(%error, "Admin connection error");
            }
        });
    }
}

fn respond(req: &Request<Incoming>, hub: &Hub, metrics: &Metrics, drain: &Drain) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(full_body(metrics.render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if drain.is_started() {
                return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
            }
            let down: Vec<String> = hub
                .all()
                .iter()
                .filter(|s| s.upstream() == crate::hub::UpstreamState::Down)
                .map(|s| format!("upstream down: {}\n", s.key()))
                .collect();
            if down.is_empty() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, down.concat())
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
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
