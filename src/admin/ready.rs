//! `admin.ready_check`: a GET to the application's health URL with a timeout; 2xx is ready. The answer is
//! cached for [`CACHE_FOR`] and concurrent probes share one request, so probes cannot multiply load on the app.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::upstream::HttpClient;

/// How long one answer of the health URL is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

pub struct ReadyCheck {
    url: http::Uri,
    timeout: Duration,
    client: HttpClient<Empty<Bytes>>,
    metrics: Arc<Metrics>,
    /// The last answer and when it was taken; the lock also makes concurrent probes wait for one request.
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl ReadyCheck {
    pub fn new(
        url: http::Uri,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<ReadyCheck, crate::tls::TlsError> {
        Ok(ReadyCheck {
            url,
            timeout,
            client: crate::upstream::http_client(None, timeout)?,
            metrics,
            last: Mutex::new(None),
        })
    }

    /// `Ok` when the application answered 2xx (now or within [`CACHE_FOR`]); otherwise why not.
    pub async fn ready(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < CACHE_FOR
        {
            return answer.clone();
        }
        let answer = self.ask().await;
        let result = if answer.is_ok() { "ok" } else { "error" };
        self.metrics.ready_checks.with_label_values(&[result]).inc();
        if let Err(reason) = &answer {
            tracing::warn!(%reason, "Application health check failed; /readyz is 503");
        }
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn ask(&self) -> Result<(), String> {
        let request = http::Request::get(self.url.clone())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(format!("status {}", response.status().as_u16())),
            Ok(Err(error)) => Err(format!("request failed: {}", crate::error::chain(&error))),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}
