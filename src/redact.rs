//! URL redaction for logs and error text: user-info and query strings never reach a log line. A leaf: the config
//! loader and every error type use it.

/// A URI for logs: scheme, host, port and path only — user-info is left out and a query shows as `?…`.
/// The one way every log line prints a URL.
pub fn redact(uri: &http::Uri) -> String {
    redact_text(&uri.to_string())
}

/// [`redact`] for URL text that may not parse (config errors, templates): `scheme://user:pw@host/p?q#f` →
/// `scheme://host/p?…#…`; a relative target keeps its path only.
pub fn redact_text(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    let mut rest = rest;
    if !scheme.is_empty() {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        rest = tail;
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    out.push_str(&rest[..end]);
    let tail = &rest[end..];
    if tail.starts_with('?') {
        out.push_str("?…");
    }
    if tail.contains('#') {
        out.push_str("#…");
    }
    out
}

/// `text` with every URL in it (a `scheme://` run up to white space or a quote) passed through [`redact_text`]:
/// for error messages of libraries that might embed the URL they were given.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let len = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(rest.len() - at);
        out.push_str(&rest[..start]);
        out.push_str(&redact_text(&rest[start..at + len]));
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_drops_query_and_userinfo() {
        let uri: http::Uri = "https://user:secret@app.internal:8443/events/a?token=s3cret&x=1"
            .parse()
            .unwrap();
        let text = super::redact(&uri);
        assert_eq!(text, "https://app.internal:8443/events/a?…");
        assert!(!text.contains("secret"));
        assert_eq!(
            super::redact(&"/plain/path".parse().unwrap()),
            "/plain/path"
        );
    }

    #[test]
    fn redact_text_table() {
        let cases = [
            ("http://u:p@h:1/a/b?t=1#frag", "http://h:1/a/b?…#…"),
            ("https://u@h", "https://h"),
            ("http://h/x#s3cret", "http://h/x#…"),
            ("http://a@b@h/?", "http://h/?…"),
            ("/events/a?token=x", "/events/a?…"),
            ("/{channel}", "/{channel}"),
            ("http://h?q", "http://h?…"),
            ("http://u:p@h#f", "http://h#…"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(super::redact_text(input), want, "{input}");
        }
    }

    #[test]
    fn redact_urls_in_error_text() {
        let text = "error trying to connect to \"http://user:pw@h:8/p?k=s\": tcp: refused, see https://x/y?z";
        assert_eq!(
            super::redact_urls(text),
            "error trying to connect to \"http://h:8/p?…\": tcp: refused, see https://x/y?…"
        );
        assert_eq!(super::redact_urls("no url here"), "no url here");
    }
}
