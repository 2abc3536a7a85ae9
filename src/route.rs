//! Types shared by the router (`server.rs`), the client transports and the pass-through, kept below all of them
//! so that none imports another's parent: a configured stream [`Route`], the client connection's [`ConnInfo`]
//! with its [`ConnGuard`] (keeps upgraded sessions inside the connection limit and the drain), and the short
//! [`plain`] refusal every layer answers with; and [`messages`], the forwarder of client → application messages a
//! route holds.

pub mod messages;

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::StreamConfig;
use crate::hub::{Settings, StartUpstream};
use crate::{Body, full_body};
use messages::Forwarder;

/// One configured stream route, ready to serve.
pub struct Route {
    pub name: Arc<str>,
    pub config: StreamConfig,
    pub settings: Settings,
    /// Starts the upstream of a new stream of this route.
    pub start: StartUpstream,
    /// Delivers client → application messages, when `client_messages` is configured.
    pub messages: Option<Forwarder>,
    /// The authorization sub-request, when `auth.check` is configured.
    pub auth_check: Option<auth::AuthCheck>,
    /// `ws.subprotocols_upstream: pass`: where a client's handshake waits for its upstream's answer.
    pub relay: Option<Arc<crate::upstream::Relay>>,
}

/// Facts about the client connection a request arrived on.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Cancelled to drop the connection (slow consumer).
    pub kick: CancellationToken,
    /// Keeps an upgraded (WebSocket) session inside the connection limit and the drain: the session task holds it.
    pub guard: ConnGuard,
}

/// The connection permit and the drain tracker, for sessions that outlive hyper's connection (upgrades).
#[derive(Clone)]
pub struct ConnGuard {
    pub permit: Arc<tokio::sync::OwnedSemaphorePermit>,
    pub tasks: tokio_util::task::TaskTracker,
}

impl ConnGuard {
    /// Spawns `task` as part of this connection: counted by the drain and holding the connection permit.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let permit = self.permit.clone();
        self.tasks.spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

/// A short plain-text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
