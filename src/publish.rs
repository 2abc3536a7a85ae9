//! The publish listener (issue 18; docs/protocol.md, "Publishing"): the application POSTs events to a stream
//! route's public path on its own address (plaintext or TLS, never a client listener). It owns the accept loop
//! (a fixed connection cap, 8 HTTP/2 streams per connection, the client listeners' request-head and idle timeouts,
//! drain), the bearer token (SHA-256 digests compared in constant time, never logged), the budget of request bodies
//! in flight (`inflight.rs`), the request checks in the order a caller needs them (token, method,
//! route, body), and the dispatch: `kind: publish` routes append to the hub stream (created on first use, counted
//! in `limits.max_streams`), `kind: redis` routes with `publish: true` XADD to Redis (`redis.rs`). A request
//! publishes every event or none. Body parsing: `body.rs`; answers: `answer.rs`; `Idempotency-Key`:
//! `idempotency.rs` (per replica) and `redis.rs` (in Redis).

mod answer;
mod body;
mod idempotency;
mod inflight;
mod redis;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Body;
use crate::config::{LimitsConfig, PublishConfig, UpstreamKind};
use crate::hub::{Published, StreamKey};
use crate::listener::streams::{CONNECTION_WINDOW, STREAM_WINDOW, Streams};
use crate::listener::watch::{Acceptor, Activity, Close};
use crate::logs::LogKind;
use crate::metrics::Metrics;
use crate::route::Route;
use crate::server::Router;
use crate::tls::ServerTls;
pub use answer::{RESULTS, Refusal};
pub use body::{Bounds, Format, MAX_EVENTS, MAX_ID_BYTES, parse};
pub use idempotency::{MAX_KEY_LEN as MAX_IDEMPOTENCY_KEY_LEN, MAX_KEYS as MAX_IDEMPOTENCY_KEYS};
pub use inflight::MAX_BYTES as MAX_BODY_BYTES_IN_FLIGHT;
pub use redis::MAXLEN as REDIS_MAXLEN;

/// Most connections the publish listener serves at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most requests in flight on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS; more: REFUSED_STREAM).
pub const MAX_H2_STREAMS: u32 = 8;
/// Time allowed for a request body to arrive (then 408).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `Retry-After` seconds of a 503 at a stream limit.
const STREAM_LIMIT_RETRY_AFTER: u32 = 5;
/// The header naming a retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The publish listener's state.
pub struct Publisher {
    config: PublishConfig,
    /// SHA-256 of `publish.token`: the presented token's digest is compared with it in constant time, so neither
    /// the comparison's time nor its length depends on the token.
    token: Option<ring::digest::Digest>,
    limits: LimitsConfig,
    router: Arc<ArcSwap<Router>>,
    metrics: Arc<Metrics>,
    /// First answers of `Idempotency-Key`s on `kind: publish` routes.
    seen: Mutex<idempotency::Seen>,
    redis: redis::Publishers,
    /// Request body bytes in flight, all requests together.
    bodies: inflight::Budget,
}

impl Publisher {
    pub fn new(
        config: PublishConfig,
        limits: LimitsConfig,
        router: Arc<ArcSwap<Router>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Publisher> {
        let token = config.token.as_ref().map(|t| sha256(t.as_bytes()));
        let bodies = inflight::Budget::new(metrics.publish.body_bytes.clone());
        Arc::new(Publisher {
            config,
            token,
            limits,
            router,
            metrics,
            seen: Mutex::default(),
            redis: redis::Publishers::default(),
            bodies,
        })
    }

    /// Accepts until the drain starts; every connection is a task of `connections` (the drain waits for them).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<ServerTls>>,
        drain: CancellationToken,
        connections: TaskTracker,
    ) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut acceptor = Acceptor::new(listener, permits, "publish", self.metrics.clone());
        loop {
            let (tcp, _peer, permit) = tokio::select! {
                () = drain.cancelled() => return,
                next = acceptor.next() => match next {
                    Some(next) => next,
                    None => return,
                },
            };
            let _ = tcp.set_nodelay(true);
            let first_by = Instant::now() + self.limits.handshake_timeout;
            let publisher = self.clone();
            let (tls, drain) = (tls.clone(), drain.clone());
            connections.spawn(async move {
                let permit = Arc::new(permit);
                match tls {
                    None => publisher.connection(tcp, permit, first_by, drain).await,
                    Some(tls) => {
                        let accepted =
                            tokio::time::timeout_at(first_by, tls.acceptor().accept(tcp)).await;
                        match accepted {
                            Ok(Ok(stream)) => {
                                publisher.connection(stream, permit, first_by, drain).await
                            }
                            Ok(Err(error)) => {
                                publisher
                                    .metrics
                                    .tls_failures
                                    .with_label_values(&["error"])
                                    .inc();
                                tracing::debug!(%error, "Publish listener: TLS handshake failed");
                            }
                            Err(_) => {
                                publisher
                                    .metrics
                                    .tls_failures
                                    .with_label_values(&["timeout"])
                                    .inc();
                                crate::listener::closed(
                                    &publisher.metrics,
                                    "publish",
                                    Close::HandshakeTimeout,
                                );
                            }
                        }
                    }
                }
            });
        }
    }

    /// Serves one connection (HTTP/1.1 or HTTP/2) until it ends, idles out or drains.
    async fn connection<IO>(
        self: Arc<Self>,
        io: IO,
        permit: Arc<tokio::sync::OwnedSemaphorePermit>,
        first_by: Instant,
        drain: CancellationToken,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (activity, requests) = Activity::new(permit.clone());
        let publisher = self.clone();
        let streams = Streams::new(MAX_H2_STREAMS, "publish listener: 8 per connection");
        let service = service_fn(move |req: Request<Incoming>| {
            requests.arrived();
            let slot =
                (req.version() == http::Version::HTTP_2).then(|| streams.open(&publisher.metrics));
            let (publisher, permit) = (publisher.clone(), permit.clone());
            async move {
                let response = Box::pin(publisher.handle(req)).await;
                drop(slot);
                Ok::<_, Infallible>(response.map(|b| crate::listener::watch::hold(b, permit)))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .max_buf_size(crate::listener::MAX_HEAD_BYTES)
            .header_read_timeout(self.limits.handshake_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.limits.keepalive_interval)
            .keep_alive_timeout(self.limits.handshake_timeout)
            .max_concurrent_streams(MAX_H2_STREAMS)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let watch = activity.watch(first_by, self.limits.idle_connection_timeout);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            reason = watch => {
                crate::listener::closed(&self.metrics, "publish", reason);
                if reason == Close::HandshakeTimeout {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = drain.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "Publish connection error");
        }
    }

    /// Answers one request, counts it in `pushbridge_published_total` and logs a refusal (rate-limited; never the
    /// body or the token).
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let router = self.router.load_full();
        let found = router.routes.iter().find_map(|route| {
            let params = route.config.path.matches(req.uri().path())?;
            Some((route.clone(), params))
        });
        let label: Arc<str> = found
            .as_ref()
            .map_or_else(|| "".into(), |(r, _)| r.name.clone());
        let (result, response) = match self.publish(&router, found, req).await {
            Ok((duplicate, body)) => {
                let result = if duplicate { "duplicate" } else { "ok" };
                if !duplicate {
                    self.metrics
                        .publish
                        .latency
                        .with_label_values(&[&label])
                        .observe(started.elapsed().as_secs_f64());
                }
                (result, answer::json(StatusCode::OK, body))
            }
            Err(refusal) => {
                crate::log_limited!(
                    self.metrics.logs,
                    LogKind::Refused,
                    format!("publish {label}"),
                    info!(route = %label, status = refusal.status.as_u16(), reason = %refusal.message, "Publish refused")
                );
                (refusal.result, refusal.response())
            }
        };
        self.metrics
            .publish
            .requests
            .with_label_values(&[&label, result])
            .inc();
        response
    }

    /// The checks, then the publish: `Ok((duplicate, answer body))`.
    async fn publish(
        &self,
        router: &Router,
        found: Option<crate::server::RouteMatch>,
        req: Request<Incoming>,
    ) -> Result<(bool, Bytes), Refusal> {
        self.authorize(req.headers())?;
        if req.method() != Method::POST {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only POST publishes",
            ));
        }
        let Some((route, params)) = found else {
            return Err(Refusal::not_found("no stream route matches this path"));
        };
        let kind = route.config.upstream.kind;
        let redis = kind == UpstreamKind::Redis && route.config.publish;
        if kind != UpstreamKind::Publish && !redis {
            return Err(Refusal::not_found(
                "this stream route does not accept publishes (kind: publish, or kind: redis with publish: true)",
            ));
        }
        if let Some(reason) = params
            .iter()
            .find_map(|(_, v)| crate::config::refuse_param(v))
        {
            return Err(Refusal::bad_request(reason.trim_end()));
        }
        if params.iter().map(|(_, v)| v.len()).sum::<usize>() > router.max_key_bytes {
            return Err(Refusal::bad_request(
                "stream key too long (limits.max_key_bytes)",
            ));
        }
        if !crate::config::params_admitted(&route.config.params, &params) {
            return Err(Refusal::not_found(
                "a path parameter fails the route's params rules",
            ));
        }
        let idempotency = match req.headers().get(IDEMPOTENCY_KEY) {
            None => None,
            Some(value) if idempotency::valid(value.as_bytes()) => {
                Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
            }
            Some(_) => {
                return Err(Refusal::bad_request(format!(
                    "Idempotency-Key must be 1 to {} visible ASCII characters",
                    idempotency::MAX_KEY_LEN
                )));
            }
        };
        let format = Format::of(
            req.headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        );
        let query = req.uri().query().map(str::to_owned);
        // Held until the request is answered: the body and its events count in the budget of bodies in flight.
        let (bytes, _held) = self.read_body(req).await?;
        let bounds = body::Bounds {
            max_event_bytes: router.max_event_bytes,
            max_events: body::MAX_EVENTS.min(route.settings.buffer_events),
            max_batch_bytes: route.settings.buffer_max_bytes,
        };
        let events = body::parse(format, &bytes, query.as_deref(), &bounds)?;
        let key = StreamKey {
            route: route.name.clone(),
            params,
            session: None,
        };
        if redis {
            if events.iter().any(|e| e.id.is_some()) {
                return Err(Refusal::bad_request(
                    "an event id cannot be given on a Redis route: the Redis entry id is the event id",
                ));
            }
            return self
                .publish_redis(router, &route, key, &events, idempotency)
                .await;
        }
        self.publish_local(router, &route, key, events, idempotency)
    }

    /// `Authorization: Bearer <token>` when a token is configured (401 otherwise).
    fn authorize(&self, headers: &http::HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| {
                let (scheme, rest) = v.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
            });
        match given {
            Some(given) if bool::from(sha256(given).as_ref().ct_eq(token.as_ref())) => Ok(()),
            Some(_) => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong bearer token",
            )),
            None => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization: Bearer <token> is required",
            )),
        }
    }

    /// The whole body, at most `publish.max_body` bytes (413), within [`BODY_TIMEOUT`] (408), its bytes held in
    /// the budget of bodies in flight (503 past it).
    async fn read_body(&self, req: Request<Incoming>) -> Result<(Bytes, inflight::Held), Refusal> {
        let max = self.config.max_body;
        let too_large = || {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than publish.max_body ({max} bytes)"),
            )
        };
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut held = self.bodies.hold();
        let mut body = Limited::new(req.into_body(), max);
        let read = async {
            let mut bytes = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let data = match frame {
                    Ok(frame) => frame.into_data().unwrap_or_default(),
                    Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                        return Err(too_large());
                    }
                    Err(_) => return Err(Refusal::bad_request("the body could not be read")),
                };
                if !held.take(data.len()) {
                    self.metrics.publish.body_budget_refusals.inc();
                    return Err(Refusal::unavailable(
                        format!(
                            "too many request bodies in flight (over {} MiB together): nothing was published",
                            inflight::MAX_BYTES >> 20
                        ),
                        inflight::RETRY_AFTER,
                    ));
                }
                bytes.extend_from_slice(&data);
            }
            Ok(bytes.freeze())
        };
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Err(_) => Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "bad_request",
                "the body did not arrive in time",
            )),
            Ok(Ok(bytes)) => Ok((bytes, held)),
            Ok(Err(refusal)) => Err(refusal),
        }
    }

    /// `kind: publish`: into the hub stream, under the idempotency cache's lock (a retry racing its first try
    /// waits for its answer).
    fn publish_local(
        &self,
        router: &Router,
        route: &Route,
        key: StreamKey,
        events: Vec<Published>,
        idempotency: Option<String>,
    ) -> Result<(bool, Bytes), Refusal> {
        let mut seen = crate::hub::lock(&self.seen);
        let now = std::time::Instant::now();
        let remembered = idempotency.map(|idem| (key.clone(), idem));
        if let Some(answer) = remembered.as_ref().and_then(|k| seen.get(k, now)) {
            return Ok((true, answer));
        }
        let count = events.len() as u64;
        let delivered = router
            .hub
            .publish(key, &route.settings, &route.start, events)
            .map_err(|_| {
                Refusal::unavailable(
                    "stream limit reached (limits.max_streams or the route's max_streams): nothing was published",
                    STREAM_LIMIT_RETRY_AFTER,
                )
            })?;
        self.metrics
            .upstream
            .events_received
            .with_label_values(&[&route.name])
            .inc_by(count);
        let body = Bytes::from(answer::published(&delivered.ids, delivered.subscribers));
        if let Some(k) = remembered {
            let evicted = seen.insert(k, body.clone(), route.settings.buffer_age, now);
            if evicted > 0 {
                self.metrics
                    .publish
                    .idempotency_evictions
                    .inc_by(evicted as u64);
            }
        }
        Ok((false, body))
    }

    /// `kind: redis` with `publish: true`: XADD (with the idempotency key stored in Redis).
    async fn publish_redis(
        &self,
        router: &Router,
        route: &Route,
        key: StreamKey,
        events: &[Published],
        idempotency: Option<String>,
    ) -> Result<(bool, Bytes), Refusal> {
        let subscribers = router.hub.get(&key).map_or(0, |s| s.subscriber_count());
        let outcome = self
            .redis
            .publish(
                &route.config,
                &key.params,
                events,
                idempotency.as_deref(),
                subscribers,
                &self.metrics,
            )
            .await?;
        Ok(match outcome {
            // Counted in `events_received` by every replica's connector as it reads them.
            redis::Outcome::Published(ids) => {
                (false, Bytes::from(answer::published(&ids, subscribers)))
            }
            redis::Outcome::Duplicate(first, ids) => {
                (true, Bytes::from(answer::published(&ids, first)))
            }
        })
    }
}

fn sha256(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}
