//! Per-request routing: a stream route (negotiate, then the chosen transport), the browser client script, or
//! pass-through to the application.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::config::{StreamConfig, TransportKind};
use crate::hub::{Hub, Settings, StartUpstream, StreamKey};
use crate::metrics::Metrics;
use crate::negotiate::{self, Decision, Facts};
use crate::pt_shim::Passthrough;
use crate::transports::{self, StreamContext};
use crate::{Body, full_body};

/// Header naming the transport chosen for a stream response.
pub const TRANSPORT_HEADER: &str = "x-pushbridge-transport";

/// One configured stream route, ready to serve.
pub struct Route {
    pub name: Arc<str>,
    pub config: StreamConfig,
    pub settings: Settings,
    /// Starts the upstream of a new stream of this route.
    pub start: StartUpstream,
}

/// Everything a request needs; swapped whole on reload.
pub struct Router {
    pub routes: Vec<Arc<Route>>,
    pub passthrough: Option<Passthrough>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub drain: CancellationToken,
}

/// Facts about the client connection a request arrived on.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Cancelled to drop the connection (slow consumer).
    pub kick: CancellationToken,
}

/// Serves one request.
pub async fn handle(router: Arc<Router>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let path = req.uri().path();
    for route in &router.routes {
        if let Some(params) = route.config.path.matches(path) {
            let route = route.clone();
            return stream(&router, route, params, req, conn);
        }
    }
    match &router.passthrough {
        Some(passthrough) => passthrough.handle(req, conn.peer, conn.scheme).await,
        None => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn stream(
    router: &Router,
    route: Arc<Route>,
    params: Vec<(String, String)>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<Body> {
    let protocol = req.extensions().get::<hyper::ext::Protocol>().map(|p| p.as_str().to_owned());
    let query = req.uri().query();
    let facts = Facts::of(req.method(), req.version(), req.headers(), query, protocol.as_deref());
    let is_read = req.method() == http::Method::GET || facts.websocket;
    if !is_read {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on a stream route\n");
        response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let (transport, downgraded_from) = match negotiate::decide(&facts, &route.config.transports) {
        Decision::Serve { transport, downgraded_from } => (transport, downgraded_from),
        Decision::Refuse { status, reason } => {
            let mut response = Response::new(full_body(reason));
            *response.status_mut() = status;
            let content_type = if status == StatusCode::NOT_ACCEPTABLE { "application/json" } else { "text/plain" };
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            return response;
        }
    };
    if let Some(from) = downgraded_from {
        router.metrics.downgrades.with_label_values(&[from.as_str(), transport.as_str()]).inc();
    }
    let last_event_id = last_event_id(&req);
    let ctx = StreamContext {
        key: StreamKey { route: route.name.clone(), params, session: None },
        route,
        hub: router.hub.clone(),
        metrics: router.metrics.clone(),
        drain: router.drain.clone(),
        kick: conn.kick,
        http_version: if req.version() == http::Version::HTTP_2 { "http2" } else { "http1" },
    };
    let mut response = match transport {
        TransportKind::Sse => transports::sse::serve(ctx, last_event_id.as_deref()),
        TransportKind::Ws | TransportKind::LongPoll => {
            plain(StatusCode::NOT_IMPLEMENTED, "transport not implemented yet\n")
        }
    };
    response.headers_mut().insert(TRANSPORT_HEADER, HeaderValue::from_static(transport.as_str()));
    response
}

/// The client's resume position: the `Last-Event-ID` header, else the `last_event_id` query parameter.
fn last_event_id<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().query().and_then(|q| negotiate::query_param(q, "last_event_id")))
        .filter(|id| !id.is_empty())
}

/// A short plain-text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
