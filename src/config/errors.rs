//! Located configuration errors: every problem names the file, line, column and dotted field path, and a
//! [`ConfigError`] carries all of them at once. Messages never echo more than a clipped value of the input.

use std::fmt;

use super::spans::Spans;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file's name as given (or the `origin` passed to `Config::parse`).
    pub file: String,
    /// 1-based line of the offending value; 0 when the problem concerns the whole file (e.g. unreadable).
    pub line: usize,
    /// 1-based column of the offending value; 0 with `line` 0.
    pub column: usize,
    /// Dotted field path, e.g. `streams[1].upstream.url`; empty for the top level.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem located at `(line, column)`.
    pub fn at(
        file: &str,
        (line, column): (usize, usize),
        path: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        // A message may quote a URL the user wrote: user-info, query and fragment are secrets.
        write!(f, ": {}", crate::redact::redact_urls(&self.message))
    }
}

/// A configuration that cannot be used; `Display` gives one line per problem
/// (`FILE:LINE:COL: field.path: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ConfigError {
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<Problem> for ConfigError {
    fn from(problem: Problem) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

/// Turns a serde_yaml error, tracked by serde_path_to_error, into a located problem. The location is the
/// one serde_yaml knows (the offending scalar or key), else the field path's entry in `spans`.
pub fn from_serde(
    file: &str,
    spans: &Spans,
    error: serde_path_to_error::Error<serde_yaml::Error>,
) -> Problem {
    let mut path = error.path().to_string();
    if path == "." {
        path.clear();
    }
    let inner = error.inner();
    let mut message = inner.to_string();
    let located = inner.location().map(|loc| (loc.line(), loc.column()));
    if let Some((line, column)) = located {
        // serde_yaml appends " at line L column C" and may prefix its own copy of the path.
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    if let Some(rest) = strip_path_prefix(&message, &path) {
        message = rest.to_owned();
    }
    // serde names the unknown key in the message; the tracked path may stop at the parent: name the key.
    let mut at = located;
    if let Some(key) = unknown_field(&message) {
        let last = path.rsplit(['.', ']']).next().unwrap_or("");
        if last != key {
            path = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
        }
        at = at.or(Some(spans.key(&path)));
    }
    let at = at.unwrap_or_else(|| spans.value(&path));
    Problem::at(file, at, &path, clip_message(message))
}

/// serde_yaml prefixes its own copy of the field path, which may stop at an ancestor of the tracked one.
fn strip_path_prefix<'m>(message: &'m str, path: &str) -> Option<&'m str> {
    let mut candidate = path;
    while !candidate.is_empty() {
        if let Some(rest) = message
            .strip_prefix(candidate)
            .and_then(|r| r.strip_prefix(": "))
        {
            return Some(rest);
        }
        candidate = &candidate[..candidate.rfind(['.', '[']).unwrap_or(0)];
    }
    None
}

/// The key named by serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// Keeps a message on one line and bounded: serde's type errors quote the offending value, which may be long.
fn clip_message(message: String) -> String {
    const MAX: usize = 400;
    let message = message.replace(['\n', '\r'], " ");
    match message.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message,
    }
}
