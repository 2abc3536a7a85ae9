//! Stream route patterns (`/events/{channel}`) and upstream URL templates
//! (`http://app/internal/events/{channel}`). Percent-encoding follows RFC 3986 §2.1: request segments are
//! decoded before matching; template values are encoded as one path segment (everything but unreserved).

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::units;

/// One segment of a [`RoutePattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the (decoded) request segment.
    Literal(String),
    /// Captures one non-empty request segment.
    Param(String),
}

/// A stream path: `/`-separated literal segments and whole-segment `{params}`, e.g. `/events/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
}

impl RoutePattern {
    /// Parses a pattern; it starts with `/`, has no empty segment, no query, and each `{param}` (an
    /// identifier, used once) fills a whole segment.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(body) = s.strip_prefix('/') else {
            return Err(format!("path {:?} must start with '/'", units::clip(s)));
        };
        if s.contains(['?', '#']) {
            return Err(format!(
                "path {:?} must not contain '?' or '#'",
                units::clip(s)
            ));
        }
        let mut segments = Vec::new();
        for part in body.split('/') {
            if part.is_empty() {
                return Err(format!("path {:?} has an empty segment", units::clip(s)));
            }
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                check_param_name(name)?;
                if segments
                    .iter()
                    .any(|seg| matches!(seg, Segment::Param(p) if p == name))
                {
                    return Err(format!("parameter {{{name}}} is used twice"));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "segment {:?}: a {{param}} must fill a whole segment",
                    units::clip(part)
                ));
            } else {
                let decoded = percent_decode(part).ok_or_else(|| {
                    format!(
                        "segment {:?} has invalid percent-encoding",
                        units::clip(part)
                    )
                })?;
                if part.bytes().any(|b| !is_pchar(b)) {
                    return Err(format!(
                        "segment {:?} has characters not allowed in a URL path",
                        units::clip(part)
                    ));
                }
                segments.push(Segment::Literal(decoded));
            }
        }
        Ok(Self {
            raw: s.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The parameter names, in path order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|seg| match seg {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The pattern with every parameter name erased (`/events/{}`): two patterns with the same shape match
    /// exactly the same paths.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Literal(lit) => out.push_str(&percent_encode_segment(lit)),
                Segment::Param(_) => out.push_str("{}"),
            }
        }
        out
    }

    /// Matches a request path (no query). Params are percent-decoded; a param matches one non-empty segment.
    /// Returns the `(name, value)` pairs in path order, or `None` when the path does not match.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let body = path.strip_prefix('/')?;
        let mut parts = body.split('/');
        // Exactly as many as there are: a stream's key keeps these for as long as it has readers.
        let wanted = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Param(_)))
            .count();
        let mut params = Vec::with_capacity(wanted);
        for seg in &self.segments {
            let decoded = percent_decode(parts.next()?)?;
            match seg {
                Segment::Literal(lit) if *lit == decoded => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if decoded.is_empty() => return None,
                Segment::Param(name) => params.push((name.clone(), decoded)),
            }
        }
        parts.next().is_none().then_some(params)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for RoutePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        units::parse_scalar(
            d,
            "a path such as \"/events/{channel}\"",
            RoutePattern::parse,
        )
    }
}

/// One piece of a [`UrlTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

/// An upstream URL that may use the route's `{params}`, e.g. `http://app:8080/internal/events/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    raw: String,
    pieces: Vec<Piece>,
}

impl UrlTemplate {
    /// Parses a template: text with `{name}` placeholders (identifiers). Whether it renders to a usable URL
    /// is checked by [`render`](Self::render) (and at config validation).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unmatched '}}' in URL {:?}", units::clip(s)));
            }
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                return Err(format!("unmatched '{{' in URL {:?}", units::clip(s)));
            };
            let name = &rest[open + 1..close];
            check_param_name(name)?;
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            pieces.push(Piece::Param(name.to_owned()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self {
            raw: s.to_owned(),
            pieces,
        })
    }

    /// The empty template: an upstream without a URL (`kind: publish`).
    pub fn empty() -> Self {
        Self {
            raw: String::new(),
            pieces: Vec::new(),
        }
    }

    /// Whether the template is empty (no URL was given).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The template as written (after `${VAR}` expansion).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The placeholder names used, in order of appearance (repeats included).
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Param(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Substitute params as they are (no encoding), e.g. for a Redis key.
    pub fn render_text(&self, params: &[(String, String)]) -> Result<String, String> {
        let mut out = String::with_capacity(self.raw.len());
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Param(name) => {
                    let (_, value) = params
                        .iter()
                        .find(|(n, _)| n == name)
                        .ok_or_else(|| format!("no value for {{{name}}}"))?;
                    out.push_str(value);
                }
            }
        }
        Ok(out)
    }

    /// Substitute params (percent-encoding each value as a path segment) and parse as `http::Uri`.
    pub fn render(&self, params: &[(String, String)]) -> Result<http::Uri, String> {
        let mut out = String::with_capacity(self.raw.len());
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Param(name) => {
                    let (_, value) = params
                        .iter()
                        .find(|(n, _)| n == name)
                        .ok_or_else(|| format!("no value for {{{name}}}"))?;
                    out.push_str(&percent_encode_segment(value));
                }
            }
        }
        out.parse::<http::Uri>().map_err(|e| {
            format!(
                "invalid URL {:?}: {e}",
                units::clip(&crate::redact::redact_text(&out))
            )
        })
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for UrlTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        units::parse_scalar(
            d,
            "a URL such as \"http://127.0.0.1:8080/events/{channel}\"",
            UrlTemplate::parse,
        )
    }
}

fn check_param_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "parameter name {:?} must be letters, digits and '_'",
            units::clip(name)
        ))
    }
}

/// Why a decoded path parameter must not reach an upstream URL, if it must not: `.` and `..` would be dot
/// segments there (RFC 3986 §5.2.4 removes them, so `/up/{channel}` could address `/`), and a `/` or `\` (sent
/// as `%2F`, `%5C`) splits the segment for an application that decodes its path before routing.
pub fn refuse_param(value: &str) -> Option<&'static str> {
    if value == "." || value == ".." {
        Some("a path parameter must not be a dot segment (. or ..)\n")
    } else if value.contains(['/', '\\']) {
        Some("a path parameter must not contain / or \\\n")
    } else {
        None
    }
}

/// RFC 3986 `pchar` bytes, `%` included (validated separately).
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&b)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but RFC 3986 unreserved characters, so the value is exactly one path segment.
fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, value)` pairs as written in a table.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn pairs(list: Pairs<'_>) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pattern_parse_table() {
        let good = [
            "/events",
            "/events/{channel}",
            "/a/{x}/b/{y_2}",
            "/caf%C3%A9/{c}",
            "/v1:stream/{id}",
        ];
        for s in good {
            let p = RoutePattern::parse(s).unwrap();
            assert_eq!(p.as_str(), s);
        }
        let bad = [
            ("", "must start with '/'"),
            ("events", "must start with '/'"),
            ("/", "empty segment"),
            ("/events/", "empty segment"),
            ("/a//b", "empty segment"),
            ("/events?x=1", "'?'"),
            ("/events/{}", "parameter name"),
            ("/events/{1x}", "parameter name"),
            ("/events/x{c}", "whole segment"),
            ("/events/{c}/{c}", "used twice"),
            ("/bad%zz", "percent-encoding"),
            ("/sp ace", "not allowed"),
        ];
        for (s, want) in bad {
            let err = RoutePattern::parse(s).unwrap_err();
            assert!(err.contains(want), "{s:?}: {err}");
        }
    }

    #[test]
    fn pattern_matching_table() {
        let p = RoutePattern::parse("/events/{channel}").unwrap();
        assert_eq!(p.params().collect::<Vec<_>>(), ["channel"]);
        let cases: &[(&str, Option<Pairs>)] = &[
            ("/events/news", Some(&[("channel", "news")])),
            ("/events/a%20b", Some(&[("channel", "a b")])),
            ("/events/a%2Fb", Some(&[("channel", "a/b")])),
            ("/ev%65nts/x", Some(&[("channel", "x")])),
            ("/events/", None),
            ("/events", None),
            ("/events/a/b", None),
            ("/events/news/", None),
            ("/other/news", None),
            ("events/news", None),
            ("/events/%zz", None),
            ("/events/%FF", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(p.matches(path), want.map(pairs), "{path}");
        }
        let two = RoutePattern::parse("/t/{tenant}/s/{stream}").unwrap();
        assert_eq!(
            two.matches("/t/acme/s/log"),
            Some(pairs(&[("tenant", "acme"), ("stream", "log")]))
        );
        assert_eq!(
            RoutePattern::parse("/live").unwrap().matches("/live"),
            Some(vec![])
        );
    }

    #[test]
    fn dot_segments_and_slashes_are_refused_in_params() {
        let p = RoutePattern::parse("/events/{channel}").unwrap();
        for path in [
            "/events/..",
            "/events/.",
            "/events/%2e%2e",
            "/events/%2E%2e",
            "/events/.%2E",
        ] {
            let params = p.matches(path).unwrap();
            assert!(
                refuse_param(&params[0].1).unwrap().contains("dot segment"),
                "{path}"
            );
        }
        for path in ["/events/a%2Fb", "/events/%2f", "/events/a%5Cb"] {
            let params = p.matches(path).unwrap();
            assert!(refuse_param(&params[0].1).is_some(), "{path}");
        }
        for fine in ["...", "a..b", ".hidden", "news"] {
            assert_eq!(refuse_param(fine), None, "{fine}");
        }
    }

    #[test]
    fn shape_ignores_param_names() {
        let a = RoutePattern::parse("/events/{a}").unwrap();
        let b = RoutePattern::parse("/events/{b}").unwrap();
        let c = RoutePattern::parse("/ev%65nts/{c}").unwrap();
        assert_eq!(a.shape(), b.shape());
        assert_eq!(a.shape(), c.shape());
        assert_ne!(a.shape(), RoutePattern::parse("/events/x").unwrap().shape());
    }

    #[test]
    fn template_rendering_table() {
        let t = UrlTemplate::parse("http://app:8080/internal/events/{channel}?tenant={tenant}")
            .unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["channel", "tenant"]);
        let cases: &[(Pairs, Result<&str, &str>)] = &[
            (
                &[("channel", "news"), ("tenant", "t1")],
                Ok("http://app:8080/internal/events/news?tenant=t1"),
            ),
            (
                &[("channel", "a/b c"), ("tenant", "x&y=z")],
                Ok("http://app:8080/internal/events/a%2Fb%20c?tenant=x%26y%3Dz"),
            ),
            (
                &[("channel", "café"), ("tenant", "~ok_-.")],
                Ok("http://app:8080/internal/events/caf%C3%A9?tenant=~ok_-."),
            ),
            (&[("channel", "news")], Err("no value for {tenant}")),
        ];
        for (params, want) in cases {
            let got = t.render(&pairs(params)).map(|u| u.to_string());
            match want {
                Ok(url) => assert_eq!(got.as_deref(), Ok(*url)),
                Err(msg) => assert!(got.unwrap_err().contains(msg)),
            }
        }
        let plain = UrlTemplate::parse("http://app/stream").unwrap();
        assert_eq!(plain.render(&[]).unwrap(), "http://app/stream");
    }

    #[test]
    fn template_parse_errors() {
        for (s, want) in [
            ("http://a/{x", "unmatched '{'"),
            ("http://a/x}", "unmatched '}'"),
            ("http://a/{}", "name"),
        ] {
            let err = UrlTemplate::parse(s).unwrap_err();
            assert!(err.contains(want), "{s}: {err}");
        }
        assert!(
            UrlTemplate::parse("http://a b/")
                .unwrap()
                .render(&[])
                .is_err()
        );
    }
}
