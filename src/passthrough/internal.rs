//! The application's internal URLs, refused to clients: a pass-through upstream whose origin is also that of a
//! stream upstream, `client_messages.forward` or `auth.check` (`config::internal_urls`) refuses every request whose
//! path, as the application would see it, is one of them — unless `passthrough.expose_internal`.
//!
//! "As the application would see it" is the upstream's path prefix joined with the request path, then
//! [`canonical`]: percent-escapes decoded (repeatedly, so `%2569` is `i`), `\` read as `/`, `;` path parameters
//! dropped, empty and `.` segments removed, `..` resolved (RFC 3986 §5.2.4), ASCII lower-cased. Whatever a
//! framework decodes or normalises, the refusal has done at least as much, so `//internal`, `/./internal`,
//! `/x/../internal`, `/%69nternal`, `/internal%2Fevents` and `/INTERNAL` are all refused.

use crate::config::{InternalUrl, Origin};

/// How many rounds of percent-decoding [`canonical`] applies at most (`%252569` needs three).
const DECODE_ROUNDS: usize = 4;

/// One refused path, canonical.
#[derive(Debug)]
struct Prefix {
    /// Without a trailing `/`; `""` is the root.
    path: String,
    /// Refuses the path and every path under it (whole segments); else (a template cut inside a segment, like
    /// `/ev-{c}`) every path that starts with the text.
    segments: bool,
}

/// The refused paths of one pass-through upstream.
#[derive(Debug, Default)]
pub(super) struct Refused {
    prefixes: Vec<Prefix>,
}

impl Refused {
    /// The refusals of the upstream at `origin`: every internal URL on that origin.
    pub fn new(origin: Option<&Origin>, internal: &[InternalUrl]) -> Refused {
        let prefixes = internal
            .iter()
            .filter(|url| Some(&url.origin) == origin)
            .map(|url| {
                let segments = !url.templated || url.path.ends_with('/');
                let mut path = canonical(&url.path);
                let last = url.path.rsplit('/').next().unwrap_or_default();
                if !segments && matches!(last, "" | "." | "..") {
                    // `canonical` dropped a trailing empty or dot segment of a raw prefix: keep the separator.
                    path.push('/');
                }
                if path == "/" && segments {
                    path.clear();
                }
                Prefix { path, segments }
            })
            .collect();
        Refused { prefixes }
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Whether the application path `path` (upstream prefix and request path, still percent-encoded) is refused.
    pub fn covers(&self, path: &str) -> bool {
        if self.prefixes.is_empty() {
            return false;
        }
        // Decoded as a router that decodes separators would see it, and as one that matches the raw path would.
        [canonical(path), canonical_with(path, true)]
            .iter()
            .any(|path| self.covers_canonical(path))
    }

    fn covers_canonical(&self, path: &str) -> bool {
        self.prefixes.iter().any(|prefix| match prefix.segments {
            true => {
                prefix.path.is_empty()
                    || path
                        .strip_prefix(&prefix.path)
                        // `.json` and the like: frameworks route `/x.json` (Rails' `(.:format)`) to `/x`.
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '.', '\0']))
            }
            false => path.starts_with(&prefix.path),
        })
    }
}

/// `path` normalised at least as far as any application would: see the module doc. Always starts with `/`;
/// bytes that are not UTF-8 after decoding are replaced (they match no configured path).
pub(crate) fn canonical(path: &str) -> String {
    canonical_with(path, false)
}

/// [`canonical`]; with `keep_separators`, an escaped `/`, `\` or `;` stays escaped (part of its segment), as
/// routers that match the raw path see it.
fn canonical_with(path: &str, keep_separators: bool) -> String {
    let mut bytes = path.as_bytes().to_vec();
    for _ in 0..DECODE_ROUNDS {
        match percent_decode(&bytes, keep_separators) {
            Some(decoded) => bytes = decoded,
            None => break,
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in bytes.split(|b| *b == b'/' || *b == b'\\') {
        let segment = segment.split(|b| *b == b';').next().unwrap_or_default();
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out.make_ascii_lowercase();
    String::from_utf8_lossy(&out).into_owned()
}

/// `bytes` with every valid `%XX` decoded; `None` when there was none (a `%` without two hex digits stays).
fn percent_decode(bytes: &[u8], keep_separators: bool) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: below 256.
            let byte = u8::try_from(hi * 16 + lo).unwrap_or(b'%');
            if keep_separators && matches!(byte, b'/' | b'\\' | b';') {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(byte);
                changed = true;
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/internal/events/x", "/internal/events/x"),
            ("//internal//events/x/", "/internal/events/x"),
            ("/./internal/./events", "/internal/events"),
            ("/a/b/../../internal", "/internal"),
            ("/../../internal", "/internal"),
            ("/%69nternal", "/internal"),
            ("/%2569nternal", "/internal"),
            ("/%252569nternal", "/internal"),
            ("/INTERNAL/Events", "/internal/events"),
            ("/internal%2Fevents%2fx", "/internal/events/x"),
            ("/internal%5Cevents\\x", "/internal/events/x"),
            ("/internal;v=1/events;x", "/internal/events"),
            ("/a/..;/internal", "/internal"),
            ("/%2e%2E/internal", "/internal"),
            ("/bad%zz%4", "/bad%zz%4"),
            ("", "/"),
            ("*", "/*"),
        ];
        for (path, want) in cases {
            assert_eq!(canonical(path), want, "{path}");
        }
    }

    fn url(path: &str, templated: bool) -> InternalUrl {
        InternalUrl {
            at: "x".into(),
            origin: Origin::of(&"http://app".parse().unwrap()).unwrap(),
            path: path.into(),
            templated,
        }
    }

    #[test]
    fn refuses_whole_segments_or_raw_prefixes() {
        let origin = Origin::of(&"http://app:80".parse().unwrap());
        let refused = Refused::new(
            origin.as_ref(),
            &[
                url("/internal/events/", true),
                url("/internal/messages", false),
                url("/hooks/ev-", true),
                url("/internal/user.", true),
            ],
        );
        for path in [
            "/internal/events",
            "/internal/events/x",
            "/internal/messages",
            "/internal/messages/",
            "/Internal/Messages",
            "/hooks/ev-1",
            "/base/../hooks/EV-x",
            "/internal/messages.json",
            "/internal/messages%00",
            "/internal/user.42",
            "/internal/events/x%2F..%2F..",
        ] {
            assert!(refused.covers(path), "{path}");
        }
        for path in [
            "/internal",
            "/internal/eventsx",
            "/internal/messagesx",
            "/internal/user",
            "/hooks/e",
            "/",
        ] {
            assert!(!refused.covers(path), "{path}");
        }
        let other = Origin::of(&"http://other".parse().unwrap());
        assert!(Refused::new(other.as_ref(), &[url("/internal", false)]).is_empty());
        let root = Refused::new(origin.as_ref(), &[url("/", true)]);
        assert!(root.covers("/anything") && root.covers("/"));
    }
}
