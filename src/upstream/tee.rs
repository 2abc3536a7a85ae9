//! `upstream.tee`: writes each new event of a non-Redis upstream into a Redis stream (`XADD key MAXLEN ~ n * …`),
//! so replicas with `kind: redis` can read what one sidecar receives. A bounded queue between the hub and the
//! writer: a full queue drops the event from the tee (counted in `pushbridge_tee_dropped_total`, logged at most
//! once per [`WARN_PERIOD`]); Redis failures are retried with backoff, in order, and never block the stream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Backoff;
use super::redis::RedisLog;
use crate::config::TeeConfig;
use crate::event::Event;
use crate::metrics::Metrics;

/// At most one WARN per stream in this period about tee failures or drops.
pub const WARN_PERIOD: Duration = Duration::from_secs(60);
/// Most queued events written in one pipeline.
const WRITE_BATCH: usize = 64;

/// The hub side of a tee: hands events to the writer task without waiting.
pub struct Tee {
    queue: mpsc::Sender<Arc<Event>>,
    metrics: Arc<Metrics>,
    stream: String,
    warned: Mutex<Option<Instant>>,
}

impl Tee {
    /// Starts the writer for the rendered `key`; it stops with `stop` (the stream's end).
    pub fn start(
        config: &TeeConfig,
        key: String,
        stream: String,
        backoff: Backoff,
        connect_timeout: Duration,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<Arc<Tee>, String> {
        let log = RedisLog::new(
            &config.url.to_string(),
            config.ca_file.as_deref(),
            key,
            config.fields.clone(),
            connect_timeout,
            usize::MAX,
        )?;
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let tee = Arc::new(Tee {
            queue,
            metrics: metrics.clone(),
            stream,
            warned: Mutex::new(None),
        });
        let writer = Writer {
            log,
            maxlen: config.maxlen,
            backoff,
            metrics,
            tee: Arc::downgrade(&tee),
        };
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = writer.run(rx) => {}
            }
        });
        Ok(tee)
    }

    /// Queues `event` for Redis; never waits.
    pub fn offer(&self, event: &Arc<Event>) {
        if self.queue.try_send(event.clone()).is_err() {
            self.metrics.upstream.tee_dropped.inc();
            self.warn(
                "Tee queue full: event not written to Redis (upstream.tee.queue)",
                "",
            );
        }
    }

    fn warn(&self, what: &str, error: &str) {
        let now = Instant::now();
        let mut warned = crate::hub::lock(&self.warned);
        if warned.is_none_or(|at| now.duration_since(at) >= WARN_PERIOD) {
            *warned = Some(now);
            tracing::warn!(stream = %self.stream, error, "{what} (logged at most once a minute per stream)");
        }
    }
}

struct Writer {
    log: Arc<RedisLog>,
    maxlen: usize,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    tee: std::sync::Weak<Tee>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Event>>) {
        let mut batch: Vec<Arc<Event>> = Vec::new();
        let mut connection = None;
        let mut attempt = 0u32;
        loop {
            if batch.is_empty() && rx.recv_many(&mut batch, WRITE_BATCH).await == 0 {
                return;
            }
            let result = async {
                if connection.is_none() {
                    connection = Some(self.log.connect(Duration::ZERO).await?);
                }
                let Some(c) = connection.as_mut() else {
                    return Ok(());
                };
                let mut pipe = redis::pipe();
                for event in &batch {
                    self.log.xadd(&mut pipe, self.maxlen, event);
                }
                pipe.query_async::<()>(c).await
            }
            .await;
            match result {
                Ok(()) => {
                    for _ in &batch {
                        self.metrics.upstream.redis_op("tee", true);
                    }
                    batch.clear();
                    attempt = 0;
                }
                Err(error) => {
                    connection = None;
                    self.metrics.upstream.redis_op("tee", false);
                    if let Some(tee) = self.tee.upgrade() {
                        tee.warn("Writing to Redis failed; retrying", &error.to_string());
                    }
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}
