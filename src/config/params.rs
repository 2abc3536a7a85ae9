//! Per-parameter rules of a stream route (`streams[].params`): a regular expression the whole value must match
//! and/or a list of allowed values. Checked before auth and before any stream exists, so a client cannot make
//! pushbridge open a stream (or call the app) for a value the route never serves.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::units;

/// Rules of one path parameter; a value must pass every rule given.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamRule {
    /// A regular expression (Rust `regex` syntax) the whole decoded value must match (implicitly anchored).
    #[serde(default)]
    pub pattern: Option<ParamPattern>,
    /// The only values allowed.
    #[serde(default, deserialize_with = "opt_string_list")]
    pub allow: Option<Vec<String>>,
}

/// Rules by parameter name.
pub type ParamRules = BTreeMap<String, ParamRule>;

/// Most entries of one `allow` list.
pub const MAX_ALLOW: usize = 10_000;
/// Largest compiled `pattern` (bytes of the regex program).
pub const MAX_PATTERN_SIZE: usize = 1 << 20;

/// A compiled `pattern`, anchored to the whole value; compiled once, at load.
#[derive(Debug, Clone)]
pub struct ParamPattern {
    raw: String,
    regex: regex::Regex,
}

impl ParamPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{s})$"))
            .size_limit(MAX_PATTERN_SIZE)
            .build()
            .map_err(|e| format!("invalid regular expression {:?}: {e}", units::clip(s)))?;
        Ok(Self {
            raw: s.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl PartialEq for ParamPattern {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<'de> Deserialize<'de> for ParamPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        units::parse_scalar(d, "a regular expression", ParamPattern::parse)
    }
}

fn opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    units::string_list(d).map(Some)
}

impl ParamRule {
    /// Whether `value` passes every rule.
    pub fn admits(&self, value: &str) -> bool {
        self.pattern.as_ref().is_none_or(|p| p.is_match(value))
            && self
                .allow
                .as_ref()
                .is_none_or(|allow| allow.iter().any(|a| a == value))
    }
}

/// Whether every parameter value passes its rules (parameters without rules pass).
pub fn params_admitted(rules: &ParamRules, params: &[(String, String)]) -> bool {
    params
        .iter()
        .all(|(name, value)| rules.get(name).is_none_or(|rule| rule.admits(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_the_whole_value() {
        let rule = ParamRule {
            pattern: Some(ParamPattern::parse("[a-z]{1,3}").unwrap()),
            allow: None,
        };
        assert!(rule.admits("abc"));
        assert!(!rule.admits("abcd"), "anchored at the end");
        assert!(!rule.admits("1abc"), "anchored at the start");
        assert!(!rule.admits(""));
        let both = ParamRule {
            pattern: Some(ParamPattern::parse("a|b|c").unwrap()),
            allow: Some(vec!["a".into(), "c".into()]),
        };
        assert!(both.admits("a") && !both.admits("b") && !both.admits("x"));
        assert!(ParamPattern::parse("(").is_err());
    }

    /// Bad rules are refused at load, located at the offending value.
    #[test]
    fn bad_rules_are_located() {
        let base = "listen:\n  - address: 127.0.0.1:8080\nstreams:\n  - path: /e/{c}\n    upstream:\n      url: http://127.0.0.1:9/{c}\n    params:\n";
        let cases = [
            (
                "      c: { pattern: \"a(\" }\n",
                "streams[0].params.c.pattern",
                "invalid regular expression",
                8,
            ),
            (
                "      d: { allow: [x] }\n",
                "streams[0].params.d",
                "not a parameter of path",
                8,
            ),
            (
                "      c: {}\n",
                "streams[0].params.c",
                "give pattern, allow or both",
                8,
            ),
            (
                "      c: { allow: [] }\n",
                "streams[0].params.c.allow",
                "at least one value",
                8,
            ),
            (
                "      c: { regex: x }\n",
                "streams[0].params.c",
                "unknown field",
                8,
            ),
        ];
        for (extra, path, fragment, line) in cases {
            let yaml = format!("{base}{extra}");
            let problems = crate::config::Config::parse("t.yaml", &yaml)
                .unwrap_err()
                .problems;
            assert_eq!(problems.len(), 1, "{yaml}: {problems:#?}");
            assert!(problems[0].path.starts_with(path), "{yaml}: {problems:#?}");
            assert!(
                problems[0].message.contains(fragment),
                "{yaml}: {problems:#?}"
            );
            assert_eq!(problems[0].line, line, "{yaml}: {problems:#?}");
            assert!(problems[0].column > 1, "{yaml}: {problems:#?}");
        }
    }
}
