//! Per-request routing: one decision ([`route`]) for both connection paths — the browser client script, a stream
//! route (negotiate, then the chosen transport), or pass-through to the application.

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::{Mode, TransportKind};
use crate::hub::{Hub, Kick, Resume, StreamKey};
use crate::logs::LogKind;
use crate::metrics::Metrics;
use crate::negotiate::{self, Decision, Facts};
use crate::passthrough::Passthrough;
use crate::route::{ConnInfo, Route, plain};
use crate::transports::messages::MessageError;
use crate::transports::{self, Served, StreamContext};
use crate::{Body, full_body};

/// Header naming the transport chosen for a stream response.
pub const TRANSPORT_HEADER: &str = "x-pushbridge-transport";

/// Everything a request needs; swapped whole on reload.
pub struct Router {
    pub routes: Vec<Arc<Route>>,
    pub passthrough: Option<Passthrough>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub drain: CancellationToken,
    /// `limits.max_key_bytes`.
    pub max_key_bytes: usize,
    /// `limits.max_event_bytes` (the publish listener's bound per event; a reload applies it).
    pub max_event_bytes: usize,
}

/// `Retry-After` (seconds) of a 503 for a stream limit.
const STREAM_LIMIT_RETRY_AFTER: &str = "5";

/// Session numbers of per-client streams.
static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where the browser client is served.
pub const CLIENT_JS_PATH: &str = "/_pushbridge/client.js";
const CLIENT_JS: &str = include_str!("client/pushbridge.js");

/// Where a request goes. [`route`] decides it for both connection paths (hyper's and the direct HTTP/1.1 path), so
/// the same request gets the same answer whichever path reads it.
pub enum Routing {
    /// The browser client script: a `GET` or `HEAD` of [`CLIENT_JS_PATH`], before any stream route.
    ClientScript,
    /// A stream route and the path parameters the request gave it.
    Stream(RouteMatch),
    /// A stream route's refusal of a parameter value it never serves.
    Refused(Response<Body>),
    /// Everything else: the application (pass-through), or `404` without one.
    PassThrough,
}

/// The routing decision for a request's method and path.
pub fn route(router: &Router, method: &Method, path: &str) -> Routing {
    if path == CLIENT_JS_PATH && (method == Method::GET || method == Method::HEAD) {
        return Routing::ClientScript;
    }
    match stream_route(router, path) {
        Some(Ok(found)) => Routing::Stream(found),
        Some(Err(refusal)) => Routing::Refused(refusal),
        None => Routing::PassThrough,
    }
}

/// The browser client script.
fn client_script() -> Response<Body> {
    let mut response = Response::new(full_body(CLIENT_JS));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Serves one request.
pub async fn handle(router: Arc<Router>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let (route, params) = match route(&router, req.method(), req.uri().path()) {
        Routing::ClientScript => return client_script(),
        Routing::Refused(refusal) => return refusal,
        // Boxed: a proxied request's future is many times a stream reader's (hyper's client), and this one is as
        // large as its largest branch (kept whole while an HTTP/2 stream's long-poll waits).
        Routing::PassThrough => return Box::pin(passthrough(&router, req, &conn)).await,
        Routing::Stream(found) => found,
    };
    if matches!(*req.method(), Method::OPTIONS | Method::POST) {
        return stream(&router, route, params, req, conn).await;
    }
    // A reader needs no body: the request head alone, and hyper's pending upgrade for a WebSocket.
    let (mut parts, _body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let guard = conn.guard.clone();
    let served = reader(&router, route, params, Request::from_parts(parts, ()), conn).await;
    served.into_hyper(upgrade, &guard).await
}

/// A request for the application (counted by status class), or `404` without one.
async fn passthrough(router: &Router, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
    let Some(passthrough) = &router.passthrough else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let response = passthrough.handle(req, conn).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    router
        .metrics
        .passthrough
        .requests
        .with_label_values(&[class])
        .inc();
    response
}

/// A stream route and the path parameters a request gave it.
pub type RouteMatch = (Arc<Route>, Vec<(String, String)>);

/// The stream route serving `path`, with its path parameters; `Err` is the refusal of a parameter value the route
/// never serves (no stream, no auth check, no upstream request).
fn stream_route(router: &Router, path: &str) -> Option<Result<RouteMatch, Response<Body>>> {
    let route = router.routes.iter().find_map(|route| {
        let params = route.config.path.matches(path)?;
        Some((route, params))
    });
    let (route, params) = route?;
    if let Some(reason) = params
        .iter()
        .find_map(|(_, v)| crate::config::refuse_param(v))
    {
        return Some(Err(plain(StatusCode::BAD_REQUEST, reason)));
    }
    let key_bytes: usize = params.iter().map(|(_, v)| v.len()).sum();
    if key_bytes > router.max_key_bytes {
        router
            .metrics
            .stream_refusals
            .with_label_values(&["key_bytes"])
            .inc();
        crate::log_limited!(
            router.metrics.logs,
            LogKind::Refused,
            "key_bytes",
            info!(route = %route.name, key_bytes, max = router.max_key_bytes, "Stream key too long (limits.max_key_bytes): 414")
        );
        return Some(Err(plain(
            StatusCode::URI_TOO_LONG,
            "stream key too long\n",
        )));
    }
    if !crate::config::params_admitted(&route.config.params, &params) {
        router
            .metrics
            .stream_refusals
            .with_label_values(&["pattern"])
            .inc();
        return Some(Err(plain(StatusCode::NOT_FOUND, "not found\n")));
    }
    Some(Ok((route.clone(), params)))
}

/// The checks every request to a stream route passes first: the origin, then the authorization check (not for a
/// preflight). `Ok` is the stream's key.
async fn gate<B>(
    router: &Router,
    route: &Route,
    params: Vec<(String, String)>,
    req: &Request<B>,
    scheme: &str,
) -> Result<StreamKey, Response<Body>> {
    if !auth::origin_allowed(&route.config, req.headers()) && !auth::same_origin(req, scheme) {
        let origin = req.headers().get(http::header::ORIGIN).map(|o| {
            let text = crate::error::redact_text(&String::from_utf8_lossy(o.as_bytes()));
            text.chars().take(100).collect::<String>()
        });
        crate::log_limited!(
            router.metrics.logs,
            LogKind::Refused,
            route.name,
            info!(route = %route.name, origin = origin.as_deref().unwrap_or(""), "Cross-origin request refused (not same-origin, not in origins)")
        );
        return Err(plain(StatusCode::FORBIDDEN, "origin not allowed\n"));
    }
    let key = StreamKey {
        route: route.name.clone(),
        params,
        session: None,
    };
    if req.method() != Method::OPTIONS
        && let Some(check) = &route.auth_check
    {
        let forwarded = auth::forwarded_headers(&route.config, req.headers());
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Err(denied) = check.check(&key, forwarded, req.method(), target).await {
            let mut response = denied_response(&router.metrics, &key, denied);
            auth::add_cors(&route.config, req.headers(), response.headers_mut());
            return Err(response);
        }
    }
    Ok(key)
}

/// A preflight or a client message (`POST`) to a stream route.
async fn stream(
    router: &Router,
    route: Arc<Route>,
    params: Vec<(String, String)>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<Body> {
    let key = match gate(router, &route, params, &req, conn.scheme).await {
        Ok(key) => key,
        Err(refusal) => return refusal,
    };
    let request_headers = req.headers().clone();
    let mut response = match *req.method() {
        Method::OPTIONS => {
            let mut response = plain(StatusCode::NO_CONTENT, "");
            auth::add_preflight(&route.config, response.headers_mut());
            response
        }
        _ => client_message(router, &route, &key, req).await,
    };
    auth::add_cors(&route.config, &request_headers, response.headers_mut());
    response
}

/// A reader of a stream route (any method but `OPTIONS` and `POST`; only its head is needed): the gate, then
/// negotiation and the chosen transport. Both connection paths serve readers through this.
pub async fn reader(
    router: &Router,
    route: Arc<Route>,
    params: Vec<(String, String)>,
    req: Request<()>,
    conn: ConnInfo,
) -> Served {
    match gate(router, &route, params, &req, conn.scheme).await {
        Ok(key) => read(router, route, key, req, conn).await,
        Err(refusal) => Served::Now(refusal),
    }
}

/// Serves a reader: negotiate, then the chosen transport.
async fn read(
    router: &Router,
    route: Arc<Route>,
    key: StreamKey,
    req: Request<()>,
    conn: ConnInfo,
) -> Served {
    let protocol = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    let query = req.uri().query().map(str::to_owned);
    let facts = Facts::of(
        req.method(),
        req.version(),
        req.headers(),
        query.as_deref(),
        protocol.as_deref(),
    );
    if req.method() != Method::GET && !facts.websocket {
        let mut response = method_not_allowed(
            "method not allowed on a stream route\n",
            "GET, POST, OPTIONS",
        );
        auth::add_cors(&route.config, req.headers(), response.headers_mut());
        return Served::Now(response);
    }
    let (transport, downgraded_from) = match negotiate::decide(&facts, &route.config.transports) {
        Decision::Serve {
            transport,
            downgraded_from,
        } => (transport, downgraded_from),
        Decision::Refuse { status, reason } => {
            let mut response = Response::new(full_body(reason));
            *response.status_mut() = status;
            let content_type = if status == StatusCode::NOT_ACCEPTABLE {
                "application/json"
            } else {
                "text/plain"
            };
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            auth::add_cors(&route.config, req.headers(), response.headers_mut());
            return Served::Now(response);
        }
    };
    if let Some(from) = downgraded_from {
        router
            .metrics
            .downgrades
            .with_label_values(&[from.as_str(), transport.as_str()])
            .inc();
    }
    let last_event_id = last_event_id(&req);
    let request_headers = req.headers().clone();
    let (key, mut upstream_headers) = match route.config.mode {
        Mode::Shared => (key, http::HeaderMap::new()),
        // Each client session gets its own stream and upstream connection, with the client's credentials.
        Mode::PerClient => {
            let session = NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (
                StreamKey {
                    session: Some(session),
                    ..key
                },
                auth::forwarded_headers(&route.config, &request_headers),
            )
        }
    };
    // `ws.subprotocols_upstream: pass` (a per-client route): the client's offer goes to its upstream handshake, and
    // the answer waits for that handshake's result. Registered before the upstream connection starts.
    let waiting = match (&route.relay, key.session) {
        (Some(relay), Some(session)) if transport == TransportKind::Ws => {
            match transports::ws::passed_offer(&req) {
                Ok(offer) => {
                    upstream_headers.remove(http::header::SEC_WEBSOCKET_PROTOCOL);
                    if let Some(offer) = offer {
                        upstream_headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, offer);
                    }
                }
                Err(refusal) => return Served::Now(*refusal),
            }
            Some(relay.wait(session))
        }
        _ => None,
    };
    // A key the upstream refused moments ago gets the same answer at once (existing subscribers stay).
    if let Some((status, remaining)) = router.hub.refused(&key) {
        let mut response = plain(status, "refused by the application\n");
        let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        auth::add_cors(&route.config, &request_headers, response.headers_mut());
        return Served::Now(response);
    }
    // A new stream (and its upstream connection) only within the stream limits and the file descriptors left.
    // The reader is subscribed before an upstream connection it opens starts: it gets that connection's first
    // events.
    // A long-poll client sends back the cursor its previous answer gave (a plain id only while unambiguous).
    let resume = match last_event_id.as_deref() {
        None => Resume::Live,
        Some(cursor) if transport == TransportKind::LongPoll => Resume::Cursor(cursor),
        Some(id) => Resume::After(id),
    };
    let kick = Kick {
        token: conn.kick.clone(),
        transport: transport.as_str(),
    };
    let admitted = if router.hub.get(&key).is_none()
        && !crate::fds::room_for_stream(&router.metrics, &router.routes)
    {
        Err("fds")
    } else {
        router
            .hub
            .admit(
                key.clone(),
                &route.settings,
                &route.start,
                upstream_headers,
                resume,
                Some(kick),
            )
            .map_err(|limit| limit.as_str())
    };
    let mut subscription = match admitted {
        Ok(subscription) => subscription,
        Err(limit) => {
            tracing::debug!(stream = %key, limit, "Stream refused: limit reached");
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "too many streams\n");
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from_static(STREAM_LIMIT_RETRY_AFTER),
            );
            auth::add_cors(&route.config, &request_headers, response.headers_mut());
            return Served::Now(response);
        }
    };
    // A fresh Redis stream: the connector's start position comes before the SSE headers or the WebSocket open, so
    // an entry appended once the client is told it is subscribed is never before it (long-poll: `settle`).
    if transport != TransportKind::LongPoll {
        let _ = tokio::time::timeout(
            route.config.upstream.connect_timeout,
            subscription.settle_start(),
        )
        .await;
    }
    let ctx = StreamContext {
        key,
        route: route.clone(),
        hub: router.hub.clone(),
        metrics: router.metrics.clone(),
        drain: router.drain.clone(),
        kick: conn.kick,
        guard: conn.guard,
        http_version: if req.version() == http::Version::HTTP_2 {
            "http2"
        } else {
            "http1"
        },
    };
    let served = match transport {
        TransportKind::Sse => {
            let announce = query
                .as_deref()
                .and_then(|q| negotiate::query_param(q, "open"))
                .is_some_and(|v| v == "1");
            let mut response = transports::sse::serve(ctx, subscription, announce);
            // An HTTP/1.0 stream is delimited by the close: hyper then says nothing of keep-alive (as the direct
            // path), where it would otherwise answer a `Connection: keep-alive` request with one.
            if req.version() == http::Version::HTTP_10 {
                *response.version_mut() = http::Version::HTTP_10;
            }
            Served::Sse(Box::new(response))
        }
        TransportKind::Ws => match waiting {
            None => transports::ws::serve(ctx, subscription, &req, None),
            Some(waiting) => match transports::ws::passed(&ctx, waiting).await {
                Ok(passed) => transports::ws::serve(ctx, subscription, &req, Some(passed)),
                // Dropping the subscription ends the client's per-client stream and its upstream connection.
                Err(refusal) => Served::Now(*refusal),
            },
        },
        TransportKind::LongPoll => transports::longpoll::serve(ctx, subscription, query.as_deref()),
    };
    // Room for the transport and CORS headers only: a held poll keeps this map while it waits.
    let mut extra = http::HeaderMap::with_capacity(2);
    extra.insert(
        TRANSPORT_HEADER,
        HeaderValue::from_static(transport.as_str()),
    );
    auth::add_cors(&route.config, &request_headers, &mut extra);
    served.with_headers(extra)
}

/// A `POST` to the stream path: a client → application message (SSE and long-poll clients).
async fn client_message(
    router: &Router,
    route: &Route,
    key: &StreamKey,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(forwarder) = &route.messages else {
        let response = method_not_allowed(
            "client messages are not enabled on this route\n",
            "GET, OPTIONS",
        );
        router
            .metrics
            .client_messages
            .with_label_values(&["refused"])
            .inc();
        return response;
    };
    let forwarded = auth::forwarded_headers(&route.config, req.headers());
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let transport = req
        .uri()
        .query()
        .and_then(|q| negotiate::query_param(q, "transport"))
        .and_then(|t| negotiate::transport_named(&t))
        .map_or("http", |t| t.as_str());
    let limited = http_body_util::Limited::new(req.into_body(), forwarder.max_bytes());
    let body = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            router
                .metrics
                .client_messages
                .with_label_values(&["error"])
                .inc();
            return if error.is::<http_body_util::LengthLimitError>() {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n")
            } else {
                plain(StatusCode::BAD_REQUEST, "message body could not be read\n")
            };
        }
    };
    match forwarder
        .forward(key, transport, forwarded, content_type, body)
        .await
    {
        Ok(status) => {
            router
                .metrics
                .client_messages
                .with_label_values(&["ok"])
                .inc();
            let mut response = Response::new(full_body(""));
            *response.status_mut() = status;
            response
        }
        Err(error) => {
            router
                .metrics
                .client_messages
                .with_label_values(&["error"])
                .inc();
            crate::log_limited!(
                router.metrics.logs,
                LogKind::ClientMessage,
                key,
                warn!(%error, stream = %key, "Client message not delivered")
            );
            match error {
                MessageError::TooLarge { .. } => {
                    plain(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n")
                }
                MessageError::Timeout(_) => {
                    plain(StatusCode::GATEWAY_TIMEOUT, "application timed out\n")
                }
                MessageError::Unreachable(_) => {
                    plain(StatusCode::BAD_GATEWAY, "application unreachable\n")
                }
            }
        }
    }
}

/// The answer to a client the authorization service did not admit.
fn denied_response(metrics: &Metrics, key: &StreamKey, denied: auth::Denied) -> Response<Body> {
    match denied {
        auth::Denied::Refused {
            status,
            www_authenticate,
        } => {
            let mut response = plain(status, "not authorized\n");
            if let Some(value) = www_authenticate {
                response
                    .headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, value);
            }
            response
        }
        auth::Denied::Unavailable(error) => {
            crate::log_limited!(
                metrics.logs,
                LogKind::AuthCheck,
                key,
                warn!(%error, stream = %key, "Authorization check failed")
            );
            plain(
                StatusCode::BAD_GATEWAY,
                "authorization service unavailable\n",
            )
        }
    }
}

/// The client's resume position: the `Last-Event-ID` header, else the `last_event_id` query parameter.
fn last_event_id<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            req.uri()
                .query()
                .and_then(|q| negotiate::query_param(q, "last_event_id"))
        })
        .filter(|id| !id.is_empty())
}

/// A 405 naming the methods the route takes.
fn method_not_allowed(text: &'static str, allow: &'static str) -> Response<Body> {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, text);
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}
