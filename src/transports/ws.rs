//! WebSocket client transport (RFC 6455 over HTTP/1.1 Upgrade, RFC 8441 over HTTP/2 extended CONNECT).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::StreamContext;
use crate::Body;

/// Answers the handshake and serves the upgraded connection in a task.
pub fn serve(_ctx: StreamContext, _req: Request<Incoming>, _last_event_id: Option<String>) -> Response<Body> {
    crate::server::plain(StatusCode::NOT_IMPLEMENTED, "websocket transport not implemented yet\n")
}
