//! pushbridge: a reverse-proxy sidecar that re-exposes an application's event streams as SSE, WebSocket or
//! long-poll, with automatic downgrade and loss-free resume.
//!
//! Layout, bytes to sockets:
//! - [`sse`]: WHATWG event-stream decoder and encoder (pure).
//! - [`event`]: the hub's `Event` and its once-encoded, shared wire frames.
//! - [`upstream`]: connector supervisor and one decoder per upstream kind (Redis Streams and the tee included).
//! - [`hub`]: streams: ids, ring buffer (count, age and byte bounds), fan-out, resume (deep resume from a durable
//!   log), replay window, idle teardown.
//! - [`negotiate`]: request + route policy → client transport (pure).
//! - [`transports`]: one client transport per file (SSE, WebSocket, long-poll).
//! - [`passthrough`]: reverse proxy for every other request (routes, h2c/ALPN, WebSocket relay); [`auth`]: Origin,
//!   CORS, forwarded headers.
//! - [`route`]: the stream route, connection guard and refusal shared by [`server`] and [`transports`], and the
//!   route's client-message forwarder.
//! - [`server`]: per-request routing; [`listener`]: accept loop and TLS handshake; [`tls`]: rustls set-up.
//! - [`config`]: YAML schema, defaults, load and validation; [`app`]: wiring and drain; [`shutdown`]: signals.
//! - [`metrics`], [`admin`]: Prometheus registry (a leaf: its closed label sets live with it) and the admin
//!   listener (metrics, status page); [`error`]: boundary error types; [`redact`]: URL redaction for logs;
//!   [`logs`]: the log output, its escaping and the rate limit of log lines clients, upstreams or libraries can
//!   trigger; [`fds`]: the open-file limit and the descriptors a new stream needs.
//! - [`publish`]: the publish listener: the application POSTs events to `kind: publish` streams or Redis routes.
//! - [`demo`]: the self-contained `demo` subcommand.

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
pub mod event;
pub mod fds;
pub mod hub;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod negotiate;
pub mod passthrough;
pub mod publish;
pub mod redact;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod tls;
pub mod transports;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Task-level error plumbing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response pushbridge produces.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
