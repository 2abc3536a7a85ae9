//! Upstream-kind options (issue 10): the JSON-pointer `map` from a JSON document to an event, `resume` (where a
//! `ws`/`ndjson`/`poll` upstream is told the position to resume from), `poll` and the WebSocket `binary` rule.
//! Pointers are RFC 6901 and refused at parse time when malformed; which key fits which kind is `validate.rs`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::units;

/// Poll: pause between two requests (0 for a long-poll endpoint that holds the request).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// An RFC 6901 JSON pointer: `""` (the whole document) or `/a/b/0`, with `~0` for `~` and `~1` for `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JsonPointer(String);

impl JsonPointer {
    /// Refuses text that is not empty and does not start with `/`, and a `~` not followed by `0` or `1`.
    pub fn parse(text: &str) -> Result<JsonPointer, String> {
        if !text.is_empty() && !text.starts_with('/') {
            return Err(format!(
                "invalid JSON pointer {:?}: must be empty or start with \"/\" (e.g. \"/data\")",
                units::clip(text)
            ));
        }
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "invalid JSON pointer {:?}: \"~\" must be followed by 0 or 1 (RFC 6901)",
                    units::clip(text)
                ));
            }
        }
        Ok(JsonPointer(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value the pointer selects in `doc`, if any.
    pub fn select<'a>(&self, doc: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        doc.pointer(&self.0)
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        units::parse_scalar(d, "a JSON pointer such as \"/data\"", JsonPointer::parse)
    }
}

/// Where the id, event name and data of an event are in a JSON document; each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapConfig {
    /// The event id (a string or a number); absent or not found: the hub numbers the event.
    pub id: Option<JsonPointer>,
    /// The event name (a string); absent or not found: no name (`message`).
    pub event: Option<JsonPointer>,
    /// The data: a string is sent as is, anything else as its JSON text; absent: the whole document.
    pub data: Option<JsonPointer>,
}

/// How the position to resume from is sent upstream: exactly one of `query` and `header`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeConfig {
    /// Query parameter name, e.g. `since` for `?since=ID`.
    #[serde(deserialize_with = "opt_text")]
    pub query: Option<String>,
    /// Request header name, e.g. `X-Resume-After`.
    #[serde(deserialize_with = "opt_text")]
    pub header: Option<String>,
}

/// A polled JSON endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollConfig {
    /// Pause after each response before the next request; 0 for a long-poll endpoint.
    #[serde(deserialize_with = "units::duration")]
    pub interval: Duration,
    /// Where the array of events is in each response; `""` (default): the response is the array.
    pub events: JsonPointer,
    /// Where the cursor is in each response (sent back through `resume`); absent: the newest event id is sent.
    pub cursor: Option<JsonPointer>,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: DEFAULT_POLL_INTERVAL,
            events: JsonPointer::default(),
            cursor: None,
        }
    }
}

/// What a `ws` upstream's binary messages become.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BinaryMode {
    /// Dropped and counted in `pushbridge_upstream_malformed_total`.
    #[default]
    Refuse,
    /// Standard base64 of the bytes becomes the data.
    Base64,
}

impl BinaryMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            BinaryMode::Refuse => "refuse",
            BinaryMode::Base64 => "base64",
        }
    }
}

/// Tee: most entries kept in the Redis stream (`XADD … MAXLEN ~`).
pub const DEFAULT_TEE_MAXLEN: usize = 100_000;
/// Tee: most events waiting to be written to Redis; more are dropped and counted.
pub const DEFAULT_TEE_QUEUE: usize = 1024;

/// `redis`: the entry fields mapped to an event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisFields {
    /// Field holding the event name; absent from an entry: `message`.
    #[serde(deserialize_with = "units::string")]
    pub event: String,
    /// Field holding the data; an entry without it is counted as malformed and skipped.
    #[serde(deserialize_with = "units::string")]
    pub data: String,
}

impl Default for RedisFields {
    fn default() -> Self {
        RedisFields {
            event: "event".to_owned(),
            data: "data".to_owned(),
        }
    }
}

/// Writes every event of a non-`redis` upstream into a Redis stream as well.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeConfig {
    /// `redis://` or `rediss://` URL (credentials from `${ENV}`).
    #[serde(deserialize_with = "units::uri")]
    pub url: http::Uri,
    /// The stream key, which may use the path's `{params}`.
    pub key: super::UrlTemplate,
    /// Approximate most entries kept (`MAXLEN ~`); at least 1.
    #[serde(default = "tee_maxlen")]
    pub maxlen: usize,
    /// Most events waiting to be written; at least 1. Beyond it events are not teed (counted), never blocking.
    #[serde(default = "tee_queue")]
    pub queue: usize,
    /// Entry field names.
    #[serde(default)]
    pub fields: RedisFields,
    /// CA certificates (PEM) a `rediss://` server's certificate must chain to, instead of the webpki roots.
    #[serde(default, deserialize_with = "units::opt_path")]
    pub ca_file: Option<std::path::PathBuf>,
}

fn tee_maxlen() -> usize {
    DEFAULT_TEE_MAXLEN
}

fn tee_queue() -> usize {
    DEFAULT_TEE_QUEUE
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    units::opt_string(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_follow_rfc_6901() {
        for good in ["", "/", "/a/b", "/a~0b/~1c", "/0"] {
            assert!(JsonPointer::parse(good).is_ok(), "{good}");
        }
        for bad in ["a", "a/b", "/a~", "/a~2", "#/a"] {
            assert!(JsonPointer::parse(bad).is_err(), "{bad}");
        }
        let doc = serde_json::json!({"a/b": {"~": [1, 2]}});
        let p = JsonPointer::parse("/a~1b/~0/1").unwrap();
        assert_eq!(p.select(&doc), Some(&serde_json::json!(2)));
    }
}
