//! Redis Streams upstream: `XREAD BLOCK` after the newest entry id held, one event per entry (the entry id is the
//! event id, so every replica serves the same ids), and the stream's durable log for deep resume (`XRANGE` in
//! bounded batches, `XINFO STREAM` for trimming; see `hub/history.rs`). Reconnects resume after the last id read:
//! nothing Redis kept is lost, nothing is repeated.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::{Mutex, watch};

use super::map::{Feed, Skip};
use super::{SessionEnd, UpstreamSpec};
use crate::config::RedisFields;
use crate::error::UpstreamError;
use crate::hub::{History, LogEntry, LogId, Published, Stream, Until, UpstreamState};
use crate::metrics::Metrics;

/// Most entries one `XREAD` returns.
pub const READ_BATCH: usize = 256;
/// How long one `XREAD` blocks waiting for entries (then it is issued again; a dead connection shows up then).
pub const READ_BLOCK: Duration = Duration::from_secs(5);

/// One Redis stream (a key on a server): where the connector reads and what deep resume reads from.
pub struct RedisLog {
    client: redis::Client,
    key: String,
    fields: RedisFields,
    connect_timeout: Duration,
    /// Larger data is skipped (`limits.max_event_bytes`).
    max_event_bytes: usize,
    /// The newest id read (or started after); `None` before the first connection.
    frontier: watch::Sender<Option<Arc<str>>>,
    /// The connection for history reads, opened on first use and replaced after an error.
    query: Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisLog {
    /// `url`: `redis://` or `rediss://` (credentials and database in the URL); `ca_file`, see [`client`].
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        key: String,
        fields: RedisFields,
        connect_timeout: Duration,
        max_event_bytes: usize,
    ) -> Result<Arc<RedisLog>, String> {
        let client = client(url, ca_file)?;
        Ok(Arc::new(RedisLog {
            client,
            key,
            fields,
            connect_timeout,
            max_event_bytes,
            frontier: watch::Sender::new(None),
            query: Mutex::new(None),
        }))
    }

    /// A new connection whose replies may take `block` longer than usual (a blocking `XREAD`).
    pub(crate) async fn connect(
        &self,
        block: Duration,
    ) -> Result<MultiplexedConnection, redis::RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout + block));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Runs `f` on the shared query connection, opening it if needed; an error drops it (reopened next time).
    async fn with_query<T>(
        self: Arc<Self>,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut slot = self.query.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self
                .connect(Duration::ZERO)
                .await
                .map_err(|e| e.to_string())?,
        };
        let result = f(&mut connection).await.map_err(|e| e.to_string());
        if result.is_ok() {
            *slot = Some(connection);
        }
        result
    }

    /// Adds `XADD key MAXLEN ~ maxlen * event NAME data DATA` for `event` to `pipe` (no name: no event field).
    pub(crate) fn xadd(
        &self,
        pipe: &mut redis::Pipeline,
        maxlen: usize,
        event: &crate::event::Event,
    ) {
        let cmd = pipe
            .cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(maxlen)
            .arg("*");
        if let Some(name) = &event.event {
            cmd.arg(&self.fields.event).arg(&**name);
        }
        cmd.arg(&self.fields.data).arg(&*event.data).ignore();
    }

    /// The entry's event (id, name, data), or why it is skipped.
    fn event(&self, entry: &StreamId) -> Result<Published, Skip> {
        let text = |field: &str| -> Result<Option<String>, Skip> {
            match entry.map.get(field) {
                None | Some(Value::Nil) => Ok(None),
                Some(value) => redis::from_redis_value_ref::<String>(value)
                    .map(Some)
                    .map_err(|_| Skip::NotUtf8),
            }
        };
        let data = text(&self.fields.data)?.ok_or(Skip::NoData)?;
        if data.len() > self.max_event_bytes {
            return Err(Skip::Oversize(data.len()));
        }
        let event = text(&self.fields.event)?;
        if event
            .as_deref()
            .is_some_and(|e| e.contains(['\n', '\r', '\0']))
        {
            return Err(Skip::Unframeable("event"));
        }
        Ok(Published {
            id: Some(entry.id.clone()),
            event: event.filter(|e| !e.is_empty()),
            data,
        })
    }
}

/// A Redis client for `url`. With `rediss://` and `ca_file`, the server's certificate must chain to a certificate
/// of that PEM file, which replaces the webpki roots (the Redis client takes one trust store); without `ca_file`,
/// the webpki roots. `ca_file` has no effect on `redis://`. `check` calls this too, so it refuses what `run` would.
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, String> {
    let tls = url
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    let Some(path) = ca_file.filter(|_| tls) else {
        return redis::Client::open(url).map_err(|e| e.to_string());
    };
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The same parse (and messages) as the CA files of HTTPS upstreams.
    crate::tls::parse_certs(&pem, path).map_err(|e| e.to_string())?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    redis::Client::build_with_tls(url, certificates).map_err(|e| format!("{}: {e}", path.display()))
}

/// The hub's view of a [`RedisLog`].
pub struct RedisHistory(pub Arc<RedisLog>);

impl History for RedisHistory {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn frontier(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.0.frontier.subscribe()
    }

    fn trimmed_after(&self, after: String) -> BoxFuture<'static, Result<bool, String>> {
        let log = self.0.clone();
        async move {
            let key = log.key.clone();
            let info = log
                .clone()
                .with_query(async |c| {
                    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(c).await?;
                    if !exists {
                        return Ok(None);
                    }
                    let info = redis::cmd("XINFO")
                        .arg("STREAM")
                        .arg(&key)
                        .query_async::<std::collections::HashMap<String, Value>>(c)
                        .await?;
                    let held: StreamRangeReply = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(&after)
                        .arg(&after)
                        .query_async(c)
                        .await?;
                    Ok(Some((info, !held.ids.is_empty())))
                })
                .await?;
            let Some((info, held)) = info else {
                return Ok(false);
            };
            Ok(trimmed(&info, LogId::parse(&after), held))
        }
        .boxed()
    }

    fn range(
        &self,
        after: String,
        until: Until,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<LogEntry>, String>> {
        let log = self.0.clone();
        async move {
            let key = log.key.clone();
            let end = match until {
                Until::Before(id) => format!("({id}"),
                Until::At(id) => id,
            };
            let reply: StreamRangeReply = log
                .clone()
                .with_query(async |c| {
                    redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(format!("({after}"))
                        .arg(&end)
                        .arg("COUNT")
                        .arg(max)
                        .query_async(c)
                        .await
                })
                .await?;
            // A malformed entry (counted when the connector read it) is passed over, not delivered.
            Ok(reply
                .ids
                .iter()
                .map(|entry| LogEntry {
                    id: entry.id.clone(),
                    event: log.event(entry).ok(),
                })
                .collect())
        }
        .boxed()
    }
}

/// One connected session: reads entries after the newest id held until the connection fails.
pub(super) async fn session(
    spec: &UpstreamSpec,
    log: &Arc<RedisLog>,
    stream: &Arc<Stream>,
    feed: &mut Feed,
    metrics: &Metrics,
) -> Result<SessionEnd, UpstreamError> {
    let route = &*spec.route;
    let failed = |error: redis::RedisError| {
        metrics.upstream.redis_op("read", false);
        UpstreamError::Connect(error.to_string())
    };
    let connected = async {
        let mut connection = log.connect(READ_BLOCK).await?;
        // The last id read (past skipped entries too), else the newest held (a dormant stream waking up).
        let frontier = log.frontier.borrow().clone();
        let from = match frontier.or_else(|| stream.newest_id()) {
            Some(id) => id.to_string(),
            // A new stream starts at the log's end; older entries are served by deep resume.
            None => {
                let last: StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(&log.key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection)
                    .await?;
                last.ids
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |e| e.id.clone())
            }
        };
        Ok::<_, redis::RedisError>((connection, from))
    };
    let connected = connected.await;
    super::count_attempt(metrics, route, &connected);
    let (mut connection, mut from) = connected.map_err(failed)?;
    let _up = super::UpGauge::new(metrics, route);
    stream.upstream_connected(Some(&from));
    log.frontier.send_replace(Some(from.as_str().into()));
    stream.set_upstream(UpstreamState::Up);
    tracing::info!(stream = %stream.key(), url = %crate::error::redact(&spec.url), key = %log.key, after = %from, "Upstream connected");
    loop {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_BATCH)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&log.key)
            .arg(&from)
            .query_async(&mut connection)
            .await
            .map_err(failed)?;
        metrics.upstream.redis_op("read", true);
        let Some(reply) = reply else { continue };
        for entry in reply.keys.iter().flat_map(|k| &k.ids) {
            feed.offer(spec, stream, metrics, log.event(entry));
            from.clone_from(&entry.id);
            log.frontier.send_replace(Some(from.as_str().into()));
        }
    }
}

/// Whether entries after `after` were removed, from `XINFO STREAM`: one deleted after it (`max-deleted-entry-id`,
/// XDEL), or — the id itself no longer held and entries removed — the first entry is past it (MAXLEN/MINID trim the
/// head; when only the client's own entry went, a notice is given though nothing was lost: never a silent skip).
fn trimmed(
    info: &std::collections::HashMap<String, Value>,
    after: Option<LogId>,
    held: bool,
) -> bool {
    let id_of = |name: &str| -> Option<LogId> {
        let value = match info.get(name)? {
            Value::Array(entry) => entry.first()?,
            value => value,
        };
        LogId::parse(&redis::from_redis_value_ref::<String>(value).ok()?)
    };
    let number = |name: &str| {
        info.get(name)
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
    };
    if id_of("max-deleted-entry-id").is_some_and(|deleted| after < Some(deleted)) {
        return true;
    }
    let removed = match (number("entries-added"), number("length")) {
        (Some(added), Some(length)) => added > length,
        _ => true,
    };
    !held && removed && id_of("first-entry").is_some_and(|first| after < Some(first))
}
