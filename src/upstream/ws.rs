//! WebSocket upstream (RFC 6455): the app's push endpoint over `ws://` or `wss://` (rustls, webpki roots plus
//! `upstream.ca_file`), with the optional `subprotocol`, the forwarded headers of a per-client stream, and the
//! resume position (the newest id held) through `resume`. Each text message becomes an event through `map`
//! (without `map` the text is the data); binary messages are refused and counted, or with `binary: base64`
//! their base64 is the data. A ping every `heartbeat` with no frame back before the next one means the
//! upstream is dead. Messages are bounded by `limits.max_event_bytes` (tungstenite refuses larger ones, which
//! ends the session, counted).
//!
//! With `ws.subprotocols_upstream: pass` (`relay`), the request offers the client's subprotocols, the handshake is
//! ours (`ws/handshake.rs`: the application may select none), the first answer goes to the waiting client
//! (`ws/relay.rs`), and a later connection of the session must select the same (else it fails and is retried).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Uri;
use http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub mod handshake;
pub mod relay;

use super::map::{self, Feed, Skip};
use super::{SessionEnd, UpstreamSpec};
use crate::config::BinaryMode;
use crate::error::UpstreamError;
use crate::hub::Stream;
use crate::metrics::Metrics;

/// Read and write buffers of the upstream connection: small; one connection per stream key.
const BUFFER: usize = 4 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The subprotocol the first handshake of a `subprotocols_upstream: pass` session selected (and the client got):
/// every later handshake of the session must select the same.
#[derive(Debug, Default)]
pub(super) struct Agreed(Option<Option<HeaderValue>>);

pub(super) async fn session(
    spec: &UpstreamSpec,
    stream: &Arc<Stream>,
    feed: &mut Feed,
    agreed: &mut Agreed,
    metrics: &Metrics,
) -> Result<SessionEnd, UpstreamError> {
    let route = &*spec.route;
    let position = map::resume_position(spec, stream);
    let resumed_from = position.as_deref();
    let connected = tokio::time::timeout(spec.connect_timeout, connect(spec, resumed_from))
        .await
        .unwrap_or(Err(UpstreamError::Timeout(spec.connect_timeout)));
    let connected = match connected {
        Ok((ws, selected)) => relayed(spec, stream, agreed, Ok(&selected), metrics).map(|()| ws),
        Err(error) => {
            let _ = relayed(spec, stream, agreed, Err(&error), metrics);
            Err(error)
        }
    };
    super::count_attempt(metrics, route, &connected);
    let mut ws = connected?;
    let _up = super::connected(spec, stream, metrics, resumed_from);

    let heartbeat = spec.heartbeat;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut awaiting_pong = false;
    let mut delivered = false;
    loop {
        tokio::select! {
            message = ws.next() => {
                awaiting_pong = false;
                let message = match message {
                    None | Some(Err(WsError::ConnectionClosed)) => break,
                    Some(Ok(message)) => message,
                    Some(Err(WsError::Capacity(error))) => {
                        feed.skip(spec, stream, metrics, Skip::Oversize(spec.max_event_bytes + 1));
                        return Err(UpstreamError::Body(error.to_string()));
                    }
                    Some(Err(error)) => return Err(UpstreamError::Body(error.to_string())),
                };
                let result = match message {
                    Message::Text(text) => map::from_text(spec.options.map.as_ref(), text.as_str(), false),
                    Message::Binary(bytes) => match spec.options.binary.unwrap_or_default() {
                        BinaryMode::Refuse => Err(Skip::Binary),
                        BinaryMode::Base64 => {
                            let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
                            map::from_text(None, &text, false)
                        }
                    },
                    // tungstenite answers pings and close frames itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => continue,
                };
                delivered |= feed.offer(spec, stream, metrics, result);
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    return Err(UpstreamError::Body(format!("no pong within {heartbeat:?}")));
                }
                awaiting_pong = true;
                // An upstream that stopped reading must not hold the session in a blocked write either.
                tokio::time::timeout(heartbeat, ws.send(Message::Ping(Bytes::new())))
                    .await
                    .map_err(|_| UpstreamError::Body(format!("ping not written within {heartbeat:?}")))?
                    .map_err(|e| UpstreamError::Body(e.to_string()))?;
            }
        }
    }
    Ok(SessionEnd::Closed { delivered })
}

/// Passes a handshake's outcome on under `subprotocols_upstream: pass`: the first one to the waiting client, later
/// ones checked against it. A selected name the client did not offer, or one other than the first, fails the
/// connection (counted; the supervisor logs it, rate-limited).
fn relayed(
    spec: &UpstreamSpec,
    stream: &Stream,
    agreed: &mut Agreed,
    outcome: Result<&Option<HeaderValue>, &UpstreamError>,
    metrics: &Metrics,
) -> Result<(), UpstreamError> {
    use relay::Answer;
    let (Some(relay), Some(session)) = (&spec.relay, stream.key().session) else {
        return Ok(());
    };
    let answer = match outcome {
        Err(UpstreamError::Status(status)) => Answer::Refused(*status),
        Err(_) => Answer::Failed,
        Ok(Some(name)) if !offered(&spec.headers, name) => Answer::Unoffered,
        Ok(selected) => Answer::Selected(selected.clone()),
    };
    if agreed.0.is_none() {
        if let Answer::Selected(selected) = &answer {
            agreed.0 = Some(selected.clone());
        }
        relay.answer(session, answer.clone());
    }
    let (reason, why) = match (&agreed.0, answer) {
        (_, Answer::Unoffered) => (
            "unoffered",
            "the application selected a subprotocol the client did not offer".to_owned(),
        ),
        (Some(first), Answer::Selected(now)) if *first != now => (
            "changed",
            format!("the application selected subprotocol {now:?}, not {first:?} as before"),
        ),
        _ => return Ok(()),
    };
    metrics.ws.subprotocol_relay_failure(reason);
    Err(UpstreamError::Connect(why))
}

/// Whether `name` is one of the subprotocols the request offers.
fn offered(headers: &http::HeaderMap, name: &HeaderValue) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|offer| offer.trim_ascii() == name.as_bytes())
}

async fn connect(
    spec: &UpstreamSpec,
    position: Option<&str>,
) -> Result<(WebSocketStream<Box<dyn Io>>, Option<HeaderValue>), UpstreamError> {
    let request_error = |e: &dyn std::fmt::Display| UpstreamError::Request(e.to_string());
    let (url, header) = map::resume_target(&spec.url, spec.options.resume.as_ref(), position)?;
    let secure = matches!(url.scheme_str(), Some("wss" | "https"));
    let host = url
        .host()
        .ok_or_else(|| UpstreamError::Request("URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let mut parts = url.into_parts();
    parts.scheme = Some(
        if secure { "wss" } else { "ws" }
            .parse()
            .map_err(|e| request_error(&e))?,
    );
    let url = Uri::from_parts(parts).map_err(|e| request_error(&e))?;
    let mut request = url.into_client_request().map_err(|e| request_error(&e))?;
    // User-info goes as `Authorization: Basic`, never into the handshake's Host or a log line.
    crate::upstream::client::move_userinfo(&mut request);
    let headers = request.headers_mut();
    for (name, value) in &spec.headers {
        headers.append(name, value.clone());
    }
    if let Some(protocol) = &spec.options.subprotocol {
        let value = HeaderValue::from_str(protocol).map_err(|e| request_error(&e))?;
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some((name, value)) = header {
        headers.insert(name, value);
    }

    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if secure {
        let tls = crate::tls::client_config(spec.options.ca_file.as_deref())
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let name = ServerName::try_from(host).map_err(|e| request_error(&e))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamError::Connect(format!("TLS: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        .max_message_size(Some(spec.max_event_bytes))
        .max_frame_size(Some(spec.max_event_bytes));
    if spec.relay.is_some() {
        return handshake::open(io, &request, config).await;
    }
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
        .await
        .map_err(|e| match e {
            WsError::Http(response) => UpstreamError::Status(response.status()),
            e => UpstreamError::Connect(format!("WebSocket handshake: {e}")),
        })?;
    Ok((ws, response.headers().get(SEC_WEBSOCKET_PROTOCOL).cloned()))
}
