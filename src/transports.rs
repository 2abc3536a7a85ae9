//! Client transports: one file per transport, each the same shape — a negotiated request and its stream context
//! in, a [`Served`] out. This file holds only the shared context and that answer type, which either connection
//! path (hyper, or the direct HTTP/1.1 path of `listener::direct`) turns into bytes on the wire.

pub mod ends;
pub mod longpoll;
pub use crate::route::messages;
pub mod sse;
pub mod ws;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Response;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, StreamKey};
use crate::metrics::Metrics;
use crate::route::{ConnGuard, Route};
use crate::{Body, full_body};

/// A stream route's answer to a reader.
pub enum Served {
    /// A complete response (a refusal, an immediate long-poll answer).
    Now(Response<Body>),
    /// SSE: the head now, then the feed's bytes (boxed, as the WebSocket: the enum stays small).
    Sse(Box<Response<sse::Feed>>),
    /// A held long-poll: its response once answered (boxed, so a waiting poll costs only its own state), and the
    /// headers to add to it then.
    Held(
        Pin<Box<dyn Future<Output = Response<Body>> + Send>>,
        http::HeaderMap,
    ),
    /// WebSocket: the handshake answer, then the session on the connection.
    Ws(Box<Response<ws::Upgrade>>),
}

impl Served {
    /// Adds `extra` to the response's headers (for a held poll: once it is answered).
    pub fn with_headers(self, extra: http::HeaderMap) -> Served {
        if extra.is_empty() {
            return self;
        }
        match self {
            Served::Now(mut r) => {
                r.headers_mut().extend(extra);
                Served::Now(r)
            }
            Served::Sse(mut r) => {
                r.headers_mut().extend(extra);
                Served::Sse(r)
            }
            Served::Ws(mut r) => {
                r.headers_mut().extend(extra);
                Served::Ws(r)
            }
            Served::Held(held, mut headers) => {
                headers.extend(extra);
                Served::Held(held, headers)
            }
        }
    }

    /// The answer as a hyper response. A WebSocket session starts on `upgrade` (hyper's pending upgrade of the
    /// request) as a task of the connection.
    pub async fn into_hyper(
        self,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        guard: &ConnGuard,
    ) -> Response<Body> {
        match self {
            Served::Now(r) => r,
            Served::Sse(r) => r.map(sse::Feed::into_body),
            Served::Held(held, headers) => {
                let mut r = held.await;
                r.headers_mut().extend(headers);
                r
            }
            Served::Ws(r) => {
                let (head, session) = r.into_parts();
                match upgrade {
                    Some(upgrade) => guard.spawn(async move {
                        match upgrade.await {
                            Ok(upgraded) => {
                                session.run(hyper_util::rt::TokioIo::new(upgraded)).await
                            }
                            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
                        }
                    }),
                    None => tracing::debug!("WebSocket answer without a pending upgrade"),
                }
                Response::from_parts(head, full_body(""))
            }
        }
    }
}

/// What every transport needs to serve one client of one stream.
pub struct StreamContext {
    pub route: Arc<Route>,
    pub hub: Arc<Hub>,
    pub key: StreamKey,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server drains.
    pub drain: CancellationToken,
    /// Cancelled to drop this client's connection (slow consumer).
    pub kick: CancellationToken,
    /// Spawns session tasks that outlive the HTTP exchange (WebSocket) inside the connection limit and drain.
    pub guard: ConnGuard,
    /// `http1` or `http2` (metrics label).
    pub http_version: &'static str,
}

/// Keeps `pushbridge_connections_open` right for one client session: the labelled series itself (its labels are
/// never removed), so a session keeps 8 bytes for it and its end costs no label lookup.
pub struct OpenGauge(prometheus::IntGauge);

impl OpenGauge {
    pub fn new(
        metrics: &Arc<Metrics>,
        transport: &'static str,
        http_version: &'static str,
    ) -> OpenGauge {
        metrics
            .connections_total
            .with_label_values(&[transport])
            .inc();
        let open = metrics
            .connections_open
            .with_label_values(&[transport, http_version]);
        open.inc();
        OpenGauge(open)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
