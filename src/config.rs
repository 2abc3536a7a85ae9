//! Configuration: the YAML schema, its defaults, and the three-step load (pingora `ServerConf` style):
//! [`Config::load`] reads the file, `from_yaml` deserializes strictly (serde_yaml + serde_path_to_error), and
//! `validate` rejects what serde accepts but the server cannot, reporting every problem at once with file,
//! line, column and field path ([`ConfigError`]). All YAML access in the crate lives in this module.
//! The reference table for users is `docs/config.md`; `config.example.yaml` is a complete example.
//!
//! Layout: `schema` (structs and `DEFAULT_*` consts; `schema/stream` a route's behaviour blocks, `schema/process`
//! limits, shutdown and log; `passthrough` holds the `passthrough:` part), `units`
//! (durations, sizes, `${ENV}`), `route` ([`RoutePattern`], [`UrlTemplate`]), `params` (per-parameter rules), `spans` (field path →
//! line/column), `errors`, `validate`, `kinds` (upstream-kind options: JSON pointers, resume, poll), `internal` (the
//! application URLs pushbridge requests itself, which the pass-through refuses to clients).

mod errors;
mod internal;
mod kinds;
mod params;
mod passthrough;
mod publish;
mod route;
mod schema;
mod spans;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use errors::{ConfigError, Problem};
pub use internal::{
    InternalUrl, Origin, internal_urls, passthrough_origins, warnings as internal_url_warnings,
};
pub use kinds::*;
pub use params::{ParamPattern, ParamRule, ParamRules, params_admitted};
pub use passthrough::*;
pub use publish::*;
pub use route::{RoutePattern, UrlTemplate, refuse_param};
pub use schema::*;
pub use units::{expand_env, parse_duration, parse_size};
pub use validate::RESERVED_PREFIX;

use spans::{RootKind, Spans};

/// The annotated example configuration shipped with pushbridge (`config.example.yaml`).
pub const EXAMPLE_YAML: &str = include_str!("../config.example.yaml");

impl Config {
    /// Reads the file (an error names the file), then `from_yaml`, then `validate`. Relative TLS and CA file
    /// paths are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Problem {
            file: file.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        })?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Self::parse_in(&file, &text, Some(base))
    }

    /// Parses and validates `text`; `origin` is the file name used in messages. Relative paths are left as
    /// they are (relative to the working directory).
    pub fn parse(origin: &str, text: &str) -> Result<Config, ConfigError> {
        Self::parse_in(origin, text, None)
    }

    fn parse_in(origin: &str, text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let spans = Spans::index(text);
        let mut config = Self::from_yaml(origin, text, &spans)?;
        config.normalize(base);
        if config.limits.wake_pacing.is_some() {
            let (line, col) = spans.key("limits.wake_pacing");
            config.deprecated.push(format!(
                "{origin}:{line}:{col}: limits.wake_pacing is deprecated and has no effect: events go out in \
                 natural batches (docs/config.md); remove it"
            ));
        }
        let problems = validate::validate(&config, origin, &spans);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Strict deserialization: the first syntax, type or unknown-key error, located.
    fn from_yaml(origin: &str, text: &str, spans: &Spans) -> Result<Config, Problem> {
        let found = match spans.root() {
            Some(RootKind::Mapping) | None => None,
            Some(RootKind::Empty) => Some("the file is empty"),
            Some(RootKind::Sequence) => Some("found a sequence"),
            Some(RootKind::Scalar) => Some("found a single value"),
        };
        if let Some(found) = found {
            let message =
                format!("the top level must be a mapping with at least `listen:`; {found}");
            return Err(Problem::at(origin, spans.value(""), "", message));
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer)
            .map_err(|e| errors::from_serde(origin, spans, e))
    }

    /// Fills derived defaults (stream name = path), resolves relative file paths against `base`, and
    /// lower-cases origins without a trailing `/`.
    fn normalize(&mut self, base: Option<&Path>) {
        let resolve = |path: &mut PathBuf| {
            if let Some(base) = base.filter(|_| path.is_relative()) {
                *path = base.join(&*path);
            }
        };
        let publish_tls = self.publish.as_mut().and_then(|p| p.tls.as_mut());
        for tls in self
            .listen
            .iter_mut()
            .filter_map(|l| l.tls.as_mut())
            .chain(publish_tls)
        {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        if let Some(ca) = self.passthrough.as_mut().and_then(|p| p.ca_file.as_mut()) {
            resolve(ca);
        }
        for stream in &mut self.streams {
            if stream.name.is_empty() {
                stream.name = stream.path.as_str().to_owned();
            }
            if let Some(ca) = stream.upstream.ca_file.as_mut() {
                resolve(ca);
            }
            for origin in &mut stream.origins {
                *origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            }
        }
    }
}
