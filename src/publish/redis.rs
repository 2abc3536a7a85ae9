//! Publishing on a `kind: redis` route with `publish: true`: one Lua script `XADD`s every event of a request to the
//! route's key (`MAXLEN ~` [`MAXLEN`], the route's `fields`) and, with an `Idempotency-Key`, stores the answer
//! under `<key>:pushbridge-idempotency:<Idempotency-Key>` (`SET … PX buffer.age NX`) — atomically, so a retry on
//! any replica sees either nothing published or the first answer. Every replica's connector reads the entries with
//! `XREAD`, so every replica delivers them. A Redis that cannot be reached gets 503 with `Retry-After`, saying
//! "not published" only when the connection failed before the command was sent; once it may have been sent (a
//! timeout or an I/O error after the write) the outcome is unknown and the answer says so: a retry with the same
//! `Idempotency-Key` then publishes once either way.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::answer::Refusal;
use crate::config::{RedisFields, StreamConfig};
use crate::hub::Published;
use crate::metrics::Metrics;

/// The approximate length Redis trims a published stream to (`XADD … MAXLEN ~`), as `upstream.tee.maxlen`'s default.
pub const MAXLEN: usize = crate::config::DEFAULT_TEE_MAXLEN;
/// `Retry-After` seconds when Redis cannot be reached.
pub const RETRY_AFTER: u32 = 1;
/// Most Redis servers (rendered URLs) one process keeps a publishing connection to; more: the cache starts over.
const MAX_SERVERS: usize = 64;

/// KEYS: the stream, then the idempotency key (optional). ARGV: maxlen, ttl ms, subscribers, event count, then per
/// event its field count and fields.
const SCRIPT: &str = r#"
local idem = KEYS[2]
if idem then
  local seen = redis.call('GET', idem)
  if seen then return {1, seen} end
end
local ids = {}
local at = 5
for e = 1, tonumber(ARGV[4]) do
  local n = tonumber(ARGV[at])
  local cmd = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
  for f = 1, n do cmd[6 + f] = ARGV[at + f] end
  at = at + n + 1
  ids[e] = redis.call(unpack(cmd))
end
if idem then
  redis.call('SET', idem, ARGV[3] .. ' ' .. table.concat(ids, ' '), 'PX', ARGV[2], 'NX')
end
return {0, ids}
"#;

/// The 503 when the connection to Redis failed before the command was sent.
pub const NOT_SENT: &str = "Redis could not be reached: the events were not published; retry (with the same Idempotency-Key, if any)";
/// The 503 once the command may have been sent: Redis may have run it.
pub const UNKNOWN: &str = "Redis did not answer (the command may have reached it): the events may or may not have \
     been published; retry with the same Idempotency-Key";

/// Why a command has no answer.
enum Failure {
    /// No connection: the command was surely not sent.
    NotSent(redis::RedisError),
    /// A timeout or an error once the command was handed to the connection: it may have been run.
    Unknown(redis::RedisError),
}

/// What Redis answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Published with these entry ids.
    Published(Vec<String>),
    /// The idempotency key was seen: the first answer's subscribers and ids.
    Duplicate(usize, Vec<String>),
}

struct Server {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

/// A Redis server: its URL and CA file.
type ServerKey = (String, Option<PathBuf>);

/// The publishing connections, one per Redis server.
#[derive(Default)]
pub struct Publishers {
    servers: std::sync::Mutex<HashMap<ServerKey, Arc<Server>>>,
}

impl Publishers {
    /// Publishes `events` on `route`'s key for `params`; `subscribers` is stored with an idempotency key.
    pub async fn publish(
        &self,
        route: &StreamConfig,
        params: &[(String, String)],
        events: &[Published],
        idempotency: Option<&str>,
        subscribers: usize,
        metrics: &Metrics,
    ) -> Result<Outcome, Refusal> {
        let upstream = &route.upstream;
        let internal = |e: String| Refusal::unavailable(e, RETRY_AFTER);
        let url = upstream.url.render(params).map_err(internal)?.to_string();
        let key = upstream
            .key
            .as_ref()
            .ok_or_else(|| internal("no `key`".into()))?
            .render_text(params)
            .map_err(internal)?;
        let server = self.server(url, upstream.ca_file.clone())?;
        let fields = upstream.fields.clone().unwrap_or_default();
        let mut invocation = redis::cmd("EVAL");
        invocation
            .arg(SCRIPT)
            .arg(if idempotency.is_some() { 2 } else { 1 })
            .arg(&key);
        if let Some(idem) = idempotency {
            invocation.arg(format!("{key}:pushbridge-idempotency:{idem}"));
        }
        let ttl = route.buffer.age.as_millis().max(1);
        invocation
            .arg(MAXLEN)
            .arg(u64::try_from(ttl).unwrap_or(u64::MAX))
            .arg(subscribers)
            .arg(events.len());
        for event in events {
            add_fields(&mut invocation, &fields, event);
        }
        let timeout = upstream.connect_timeout;
        let result = server.run(&invocation, timeout).await;
        metrics.upstream.redis_op("publish", result.is_ok());
        let value = result.map_err(|failure| {
            let (error, message) = match failure {
                Failure::NotSent(error) => (error, NOT_SENT),
                Failure::Unknown(error) => (error, UNKNOWN),
            };
            crate::log_limited!(
                metrics.logs,
                crate::logs::LogKind::UpstreamFailed,
                route.name,
                warn!(%error, route = %route.name, "Publish: Redis failed; answered 503")
            );
            Refusal::unavailable(message, RETRY_AFTER)
        })?;
        outcome(&value).ok_or_else(|| {
            Refusal::unavailable(
                "Redis gave an unexpected answer: the events may or may not have been published; retry with \
                 the same Idempotency-Key",
                RETRY_AFTER,
            )
        })
    }

    fn server(&self, url: String, ca_file: Option<PathBuf>) -> Result<Arc<Server>, Refusal> {
        let mut servers = crate::hub::lock(&self.servers);
        let key = (url, ca_file);
        if let Some(server) = servers.get(&key) {
            return Ok(server.clone());
        }
        let client = crate::upstream::redis::client(&key.0, key.1.as_deref())
            .map_err(|e| Refusal::unavailable(e, RETRY_AFTER))?;
        if servers.len() >= MAX_SERVERS {
            servers.clear();
        }
        let server = Arc::new(Server {
            client,
            connection: tokio::sync::Mutex::new(None),
        });
        servers.insert(key, server.clone());
        Ok(server)
    }
}

impl Server {
    /// Runs `cmd` on the shared connection (opened on first use, dropped after an error).
    async fn run(&self, cmd: &redis::Cmd, timeout: Duration) -> Result<Value, Failure> {
        let mut connection = {
            let mut slot = self.connection.lock().await;
            match slot.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    let connection = self
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(Failure::NotSent)?;
                    *slot = Some(connection.clone());
                    connection
                }
            }
        };
        let result = cmd.query_async::<Value>(&mut connection).await;
        if let Err(error) = &result
            && !matches!(error.kind(), redis::ErrorKind::Server(_))
        {
            *self.connection.lock().await = None;
        }
        result.map_err(Failure::Unknown)
    }
}

/// The field count and fields of one event: the name (if any) and the data.
fn add_fields(cmd: &mut redis::Cmd, fields: &RedisFields, event: &Published) {
    match &event.event {
        Some(name) => cmd
            .arg(4)
            .arg(&fields.event)
            .arg(name)
            .arg(&fields.data)
            .arg(&event.data),
        None => cmd.arg(2).arg(&fields.data).arg(&event.data),
    };
}

/// `{0, {ids}}` or `{1, "subscribers id id …"}`.
fn outcome(value: &Value) -> Option<Outcome> {
    let Value::Array(parts) = value else {
        return None;
    };
    let text = |v: &Value| redis::from_redis_value_ref::<String>(v).ok();
    match parts.as_slice() {
        [Value::Int(0), Value::Array(ids)] => ids
            .iter()
            .map(text)
            .collect::<Option<_>>()
            .map(Outcome::Published),
        // Lua's empty table is an empty array: no events (never sent).
        [Value::Int(0)] => Some(Outcome::Published(Vec::new())),
        [Value::Int(1), stored] => {
            let stored = text(stored)?;
            let mut words = stored.split(' ');
            let subscribers = words.next()?.parse().ok()?;
            Some(Outcome::Duplicate(
                subscribers,
                words.map(str::to_owned).collect(),
            ))
        }
        _ => None,
    }
}
