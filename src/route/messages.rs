//! Client → application messages: WebSocket frames, and `POST`s to the stream path from SSE and long-poll clients,
//! delivered as HTTP POSTs to the route's `client_messages.forward` URL, with the stream identity and the
//! client's forwarded headers.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http_body_util::Full;

use crate::config::ClientMessagesConfig;
use crate::hub::StreamKey;
use crate::upstream::{HttpClient, http_client};

pub use crate::auth::{PARAMS_HEADER, STREAM_HEADER};
/// Header naming the client transport a message came from.
pub const TRANSPORT_HEADER: &str = "x-pushbridge-transport";
/// How long the application may take to accept a message.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("application unreachable: {0}")]
    Unreachable(String),
    #[error("application did not answer within {0:?}")]
    Timeout(Duration),
}

/// Delivers client messages of one route.
pub struct Forwarder {
    url: http::Uri,
    max_bytes: usize,
    client: HttpClient<Full<Bytes>>,
}

impl Forwarder {
    pub fn new(cfg: &ClientMessagesConfig) -> Result<Forwarder, crate::tls::TlsError> {
        Ok(Forwarder {
            url: cfg.forward.clone(),
            max_bytes: cfg.max_bytes,
            client: http_client(None, Duration::from_secs(5))?,
        })
    }

    /// Largest message accepted.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// POSTs one message; returns the application's status.
    pub async fn forward(
        &self,
        key: &StreamKey,
        transport: &'static str,
        forwarded: HeaderMap,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Result<http::StatusCode, MessageError> {
        if body.len() > self.max_bytes {
            return Err(MessageError::TooLarge {
                limit: self.max_bytes,
            });
        }
        let mut request = http::Request::post(self.url.clone())
            .body(Full::new(body))
            .map_err(|e| MessageError::Unreachable(e.to_string()))?;
        let headers = request.headers_mut();
        headers.extend(forwarded);
        headers.insert(
            CONTENT_TYPE,
            content_type.unwrap_or_else(|| HeaderValue::from_static("text/plain; charset=utf-8")),
        );
        if let Ok(route) = HeaderValue::from_str(&key.route) {
            headers.insert(STREAM_HEADER, route);
        }
        let params = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&key.params)
            .finish();
        if let Ok(params) = HeaderValue::from_str(&params) {
            headers.insert(PARAMS_HEADER, params);
        }
        headers.insert(TRANSPORT_HEADER, HeaderValue::from_static(transport));
        let response = tokio::time::timeout(FORWARD_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| MessageError::Timeout(FORWARD_TIMEOUT))?
            .map_err(|e| MessageError::Unreachable(crate::error::chain(&e)))?;
        Ok(response.status())
    }
}
