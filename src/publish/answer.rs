//! The publish API's answers: `200 {"published": N, "ids": [...], "subscribers": K}`, or an error
//! `{"error": "..."}` with its status and the `result` label it is counted under in `pushbridge_published_total`.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::{Body, full_body};

pub use crate::metrics::PUBLISH_RESULTS as RESULTS;

/// Why a request published nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// The `result` label.
    pub result: &'static str,
    /// Said to the caller; never holds the body or the token.
    pub message: String,
    /// `Retry-After` seconds (503).
    pub retry_after: Option<u32>,
}

impl Refusal {
    pub fn new(status: StatusCode, result: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            result,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`: try again (the message says whether anything may have been published).
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> Refusal {
        Refusal {
            retry_after: Some(retry_after),
            ..Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut response = json(self.status, body.into_bytes());
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// The `200` body for events published with `ids`, `subscribers` of them on this replica.
pub fn published(ids: &[impl AsRef<str>], subscribers: usize) -> Vec<u8> {
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    serde_json::json!({ "published": ids.len(), "ids": ids, "subscribers": subscribers })
        .to_string()
        .into_bytes()
}

/// A JSON response that no cache keeps.
pub fn json(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut response = Response::new(full_body(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
