//! The Origin rule: same-origin by default, `origins` lists and `"*"`.

use super::{origin_allowed, same_origin};

fn request(host: Option<&str>, authority: Option<&str>, origin: Option<&str>) -> http::Request<()> {
    let mut builder = match authority {
        Some(authority) => http::Request::get(format!("https://{authority}/e")),
        None => http::Request::get("/e"),
    };
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    if let Some(origin) = origin {
        builder = builder.header("origin", origin);
    }
    builder.body(()).unwrap()
}

#[test]
fn same_origin_table() {
    // (connection scheme, Host, :authority, Origin, same-origin)
    let cases = [
        (
            "http",
            Some("a.example"),
            None,
            Some("http://a.example"),
            true,
        ),
        // Plaintext listener behind a TLS proxy: the page is https.
        (
            "http",
            Some("a.example"),
            None,
            Some("https://a.example"),
            true,
        ),
        (
            "https",
            Some("a.example"),
            None,
            Some("http://a.example"),
            false,
        ),
        (
            "https",
            Some("a.example"),
            None,
            Some("https://a.example:443"),
            true,
        ),
        (
            "http",
            Some("a.example:8080"),
            None,
            Some("http://a.example:8080"),
            true,
        ),
        (
            "http",
            Some("a.example:8080"),
            None,
            Some("http://a.example"),
            false,
        ),
        (
            "http",
            Some("A.Example"),
            None,
            Some("http://a.example"),
            true,
        ),
        (
            "http",
            Some("a.example"),
            None,
            Some("http://a.example.evil.com"),
            false,
        ),
        (
            "http",
            Some("a.example"),
            None,
            Some("http://evil@a.example"),
            false,
        ),
        ("http", Some("a.example"), None, Some("null"), false),
        (
            "http",
            Some("a.example"),
            None,
            Some("ftp://a.example"),
            false,
        ),
        ("http", None, None, Some("http://a.example"), false),
        // HTTP/2: :authority names the host.
        (
            "https",
            None,
            Some("a.example:8443"),
            Some("https://a.example:8443"),
            true,
        ),
        (
            "https",
            None,
            Some("a.example:8443"),
            Some("https://b.example:8443"),
            false,
        ),
        // No Origin: not a browser page.
        ("http", Some("a.example"), None, None, true),
    ];
    for (scheme, host, authority, origin, want) in cases {
        let req = request(host, authority, origin);
        assert_eq!(
            same_origin(&req, scheme),
            want,
            "{scheme} {host:?} {authority:?} {origin:?}"
        );
    }
}

#[test]
fn origins_list_and_star() {
    let route = |origins: &[&str]| {
        let yaml = format!(
            "listen: [{{ address: \"127.0.0.1:0\" }}]\nstreams:\n  - path: /e\n    upstream: {{ url: \"http://h/\" }}\n    origins: {origins:?}\n"
        );
        crate::config::Config::parse("t.yaml", &yaml)
            .unwrap()
            .streams
            .remove(0)
    };
    let headers = |origin: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert("origin", origin.parse().unwrap());
        headers
    };
    assert!(!origin_allowed(&route(&[]), &headers("https://a.example")));
    assert!(origin_allowed(&route(&[]), &http::HeaderMap::new()));
    assert!(origin_allowed(
        &route(&["https://a.example"]),
        &headers("https://a.example")
    ));
    assert!(!origin_allowed(
        &route(&["https://a.example"]),
        &headers("https://b.example")
    ));
    assert!(origin_allowed(
        &route(&["*"]),
        &headers("https://b.example")
    ));
}
