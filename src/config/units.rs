//! Scalar helpers for the configuration schema: `${ENV_VAR}` expansion, durations (`"15s"`, `"1h 30m"`,
//! humantime), sizes (`"64KiB"`, `"1MiB"`, `"1000"`, parse-size), and the other string-typed values (addresses,
//! URIs, paths, header names). Each value is parsed inside a serde visitor, so serde_yaml attaches the
//! scalar's line and column to any error and serde_path_to_error its field path.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Expands `${NAME}` with the value of the environment variable `NAME`; `$${` stands for a literal `${`.
/// An unset (or non-UTF-8) variable and an unterminated `${` are errors that name the variable.
pub fn expand_env(input: &str) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("unterminated `${` (write `$${` for a literal `${`)".to_owned());
            };
            let name = &after[..end];
            if !is_env_name(name) {
                return Err(format!(
                    "invalid environment variable name {:?}",
                    clip(name)
                ));
            }
            match std::env::var(name) {
                Ok(value) => out.push_str(&value),
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("environment variable {name} is not set"));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("environment variable {name} is not valid UTF-8"));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a duration such as `"15s"`, `"250ms"`, `"5m"` or `"1h 30m"` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "invalid duration {:?}: {e} (e.g. \"15s\", \"250ms\", \"1h 30m\")",
            clip(text)
        )
    })
}

/// Parses a byte size such as `"64KiB"`, `"1MiB"` or `"1000"` (parse-size syntax; `KB` is 1000, `KiB` 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = parse_size::parse_size(text.trim()).map_err(|e| {
        format!(
            "invalid size {:?}: {e} (e.g. \"64KiB\", \"1MiB\", \"1000\")",
            clip(text)
        )
    })?;
    usize::try_from(bytes).map_err(|_| format!("size {:?} is too large", clip(text)))
}

/// Shortens a user-supplied value for an error message, so a message never echoes a large part of the file.
pub fn clip(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Deserializes a scalar as text (serde_yaml hands numbers and booleans over verbatim), expands `${VAR}`,
/// then applies `parse`. `expecting` names the kind of value for type errors.
pub fn parse_scalar<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct ScalarVisitor<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
        out: PhantomData<T>,
    }
    impl<T> Visitor<'_> for ScalarVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let expanded = expand_env(v).map_err(E::custom)?;
            (self.parse)(&expanded).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(ScalarVisitor {
        expecting,
        parse,
        out: PhantomData,
    })
}

/// Declares a newtype whose `Deserialize` goes through [`parse_scalar`], and optionally a `fn` for
/// `#[serde(deserialize_with)]` returning the inner value.
macro_rules! scalar {
    ($newtype:ident, $ty:ty, $expecting:literal, $parse:expr $(, $one:ident)?) => {
        struct $newtype($ty);
        impl<'de> Deserialize<'de> for $newtype {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parse_scalar(d, $expecting, $parse).map($newtype)
            }
        }
        $(pub fn $one<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            $newtype::deserialize(d).map(|v| v.0)
        })?
    };
}

scalar!(Text, String, "a string", |s| Ok(s.to_owned()), string);
scalar!(
    NonEmpty,
    String,
    "a non-empty string",
    |s| if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    },
    non_empty
);
scalar!(
    Dur,
    Duration,
    "a duration such as \"15s\"",
    parse_duration,
    duration
);
scalar!(
    Size,
    usize,
    "a size such as \"64KiB\" or 1000",
    parse_size,
    size
);
scalar!(
    Addr,
    SocketAddr,
    "a socket address such as \"0.0.0.0:8443\"",
    |s| s.trim().parse::<SocketAddr>().map_err(|e| format!(
        "invalid socket address {:?}: {e} (e.g. \"0.0.0.0:8443\", \"[::]:8443\")",
        clip(s)
    )),
    socket_addr
);
scalar!(
    UriVal,
    http::Uri,
    "a URL such as \"http://127.0.0.1:8080\"",
    |s| s.trim().parse::<http::Uri>().map_err(|e| format!(
        "invalid URL {:?}: {e}",
        clip(&crate::redact::redact_text(s))
    )),
    uri
);
scalar!(
    PathVal,
    PathBuf,
    "a file path",
    |s| if s.is_empty() {
        Err("file path must not be empty".to_owned())
    } else {
        Ok(PathBuf::from(s))
    },
    path
);
scalar!(HeaderNameVal, String, "an HTTP header name", |s| {
    let lower = s.trim().to_ascii_lowercase();
    http::HeaderName::from_bytes(lower.as_bytes())
        .map(|_| lower)
        .map_err(|_| format!("invalid header name {:?}", clip(s)))
});

/// `Option<Uri>`: `~`/`null` or absent is `None`.
pub fn opt_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Option<http::Uri>, D::Error> {
    Option::<UriVal>::deserialize(d).map(|v| v.map(|v| v.0))
}

/// `Option<String>`: `~`/`null` or absent is `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<Text>::deserialize(d).map(|v| v.map(|v| v.0))
}

/// `Option<PathBuf>`: `~`/`null` or absent is `None`.
pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Option::<PathVal>::deserialize(d).map(|v| v.map(|v| v.0))
}

/// A list of strings, each `${VAR}`-expanded.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<Text>::deserialize(d).map(|v| v.into_iter().map(|v| v.0).collect())
}

/// A list of HTTP header names, lower-cased.
pub fn header_name_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<HeaderNameVal>::deserialize(d).map(|v| v.into_iter().map(|v| v.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("15 parsecs")
                .unwrap_err()
                .starts_with("invalid duration \"15 parsecs\"")
        );
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn env_expansion() {
        // SAFETY: the variable name is unique to this test; no other code reads or writes it.
        unsafe { std::env::set_var("PUSHBRIDGE_UNITS_TEST_VAR", "v") };
        assert_eq!(
            expand_env("a${PUSHBRIDGE_UNITS_TEST_VAR}b").as_deref(),
            Ok("avb")
        );
        assert_eq!(expand_env("$${X} $5 $").as_deref(), Ok("${X} $5 $"));
        let unset = expand_env("${PUSHBRIDGE_UNITS_TEST_UNSET}").unwrap_err();
        assert!(
            unset.contains("PUSHBRIDGE_UNITS_TEST_UNSET is not set"),
            "{unset}"
        );
        assert!(expand_env("${OPEN").is_err());
        assert!(expand_env("${1BAD}").is_err());
    }

    #[test]
    fn clip_is_char_safe() {
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 61);
        assert_eq!(clip("short"), "short");
    }
}
