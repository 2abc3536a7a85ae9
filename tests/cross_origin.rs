//! Cross-site WebSocket hijacking and JSONP on the real binary: with the default `origins: []` only same-origin
//! pages are served, a cross-site handshake is refused 403 before the upgrade and before `auth.check` (the
//! authorization service never sees the victim's cookie); a listed origin and `"*"` are accepted; risky
//! combinations are warned about at start-up; JSONP with an `origins` list needs an explicit opt-in.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::binary;
use support::client::Proto;
use support::upstream::SseUpstream;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const COOKIE: &str = "sid=victim-session";

/// An authorization service that admits everyone and records the cookie of each check.
async fn auth_app() -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = support::app::serve(move |req: Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let cookie = req
                .headers()
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            record.lock().unwrap().push(cookie);
            Response::new(Full::new(bytes::Bytes::new()))
        }
    })
    .await;
    (addr, seen)
}

fn config(upstream: SocketAddr, auth: SocketAddr) -> String {
    let route = |name: &str, extra: &str| {
        format!(
            r#"  - name: {name}
    path: /{name}/{{channel}}
    upstream: {{ url: "http://{upstream}/up/{{channel}}" }}
    auth: {{ check: "http://{auth}/check" }}
{extra}"#
        )
    };
    format!(
        "listen: [{{ address: \"127.0.0.1:0\" }}]\nadmin: {{ address: \"127.0.0.1:0\" }}\nlog: {{ format: json }}\n\
         streams:\n{}{}{}{}",
        route("default", ""),
        route("listed", "    origins: [\"https://app.example\"]\n"),
        route("any", "    origins: [\"*\"]\n"),
        route("jsonp", "    long_poll: { jsonp: true }\n"),
    )
}

/// An HTTP/1.1 WebSocket handshake to `path` with `origin` and the victim's cookie: the status it got.
async fn handshake(addr: SocketAddr, path: &str, origin: &str) -> u16 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    request
        .headers_mut()
        .insert("cookie", COOKIE.parse().unwrap());
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::client_async(request, tcp),
    )
    .await
    .expect("handshake in time");
    match result {
        Ok((_ws, response)) => response.status().as_u16(),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake to {path}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_websocket_refused_before_upgrade_and_auth() {
    let upstream = SseUpstream::start(true).await;
    let (auth, seen) = auth_app().await;
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let bin = binary::start(dir.path(), &config(upstream.addr, auth), 1, true);
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());

    // Start-up warnings for the risky routes.
    let warned: Vec<&String> = bin
        .startup
        .iter()
        .filter(|l| l.contains("Cross-origin risk"))
        .collect();
    assert_eq!(warned.len(), 2, "{:#?}", bin.startup);
    assert!(warned.iter().all(|l| l.contains("\"level\":\"WARN\"")));
    assert!(
        warned
            .iter()
            .any(|l| l.contains("\"route\":\"any\"") && l.contains("origins: [\\\"*\\\"]")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|l| l.contains("\"route\":\"jsonp\"") && l.contains("long_poll.jsonp")),
        "{warned:?}"
    );

    // The hijacking attempt: another site's page, the victim's cookie.
    for path in ["/default/a", "/listed/a", "/jsonp/a"] {
        assert_eq!(
            handshake(addr, path, "https://evil.example").await,
            403,
            "{path}"
        );
    }
    // Scheme or port of another site are other origins too.
    assert_eq!(
        handshake(addr, "/default/a", "http://127.0.0.1:1").await,
        403
    );
    assert_eq!(
        handshake(addr, "/default/a", &format!("ftp://{addr}")).await,
        403
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the authorization service saw a refused request"
    );
    // SSE and long-poll reads get the same rule.
    let (status, _) = get_with_origin(addr, "/default/a", "https://evil.example").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(seen.lock().unwrap().is_empty());

    // Same-origin page (the Host it connected to), a listed origin, and "*".
    assert_eq!(
        handshake(addr, "/default/a", &format!("http://{addr}")).await,
        101
    );
    assert_eq!(
        handshake(addr, "/listed/a", "https://app.example").await,
        101
    );
    assert_eq!(handshake(addr, "/any/a", "https://evil.example").await, 101);
    // No Origin at all: not a browser page.
    let (status, _) = get_with_origin(addr, "/default/a", "").await;
    assert_eq!(status, StatusCode::OK);
    // HTTP/2: the host is the request's :authority.
    let same = format!("http://{addr}");
    let (status, _) = get_with_origin_as(addr, "/default/a", &same, Proto::H2).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        get_with_origin_as(addr, "/default/a", "https://evil.example", Proto::H2).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen[..3].iter().all(|c| c.as_deref() == Some(COOKIE)));
    }

    // A storm of refused requests: a few log lines, the rest counted. 7 refusals so far, 50 more.
    for _ in 0..50 {
        let (status, _) = get_with_origin(addr, "/default/a", "https://evil.example").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (_, metrics) = support::client::get_text(admin, "/metrics").await;
    let suppressed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"pushbridge_log_lines_suppressed_total{kind="refused"} "#))
        .and_then(|v| v.parse().ok())
        .expect("suppressed series");
    let intervals =
        (started.elapsed().as_millis() / pushbridge::logs::INTERVAL.as_millis()) as u64 + 1;
    let mut lines = Vec::new();
    while let Ok(line) = bin.log.recv_timeout(Duration::from_millis(300)) {
        lines.push(line);
    }
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Cross-origin request refused"))
        .collect();
    let on_default = refused
        .iter()
        .filter(|l| l.contains("\"route\":\"default\""))
        .count() as u64;
    let per_key = u64::from(pushbridge::logs::PER_KEY);
    assert!(
        (per_key..=per_key * intervals).contains(&on_default),
        "{on_default} lines: {refused:#?}"
    );
    assert!(refused.iter().all(|l| l.contains("https://evil.example")
        || l.contains("127.0.0.1")
        || l.contains("ftp://")));
    assert_eq!(refused.len() as u64 + suppressed, 57, "{refused:#?}");
}

/// An HTTP/1.1 [`get_with_origin_as`].
async fn get_with_origin(
    addr: SocketAddr,
    path: &str,
    origin: &str,
) -> (StatusCode, http::HeaderMap) {
    get_with_origin_as(addr, path, origin, Proto::H1).await
}

/// An SSE GET with an optional Origin (empty: none) and the cookie; the status and headers.
async fn get_with_origin_as(
    addr: SocketAddr,
    path: &str,
    origin: &str,
    proto: Proto,
) -> (StatusCode, http::HeaderMap) {
    let mut sender = support::client::connect(addr, proto).await;
    let mut req = match proto {
        Proto::H1 => Request::get(path).header("host", addr.to_string()),
        Proto::H2 => Request::get(format!("http://{addr}{path}")),
    };
    req = req
        .header("cookie", COOKIE)
        .header("accept", "text/event-stream");
    if !origin.is_empty() {
        req = req.header("origin", origin);
    }
    let resp = sender
        .send(req.body(support::client::empty()).unwrap())
        .await;
    (resp.status(), resp.headers().clone())
}

#[test]
fn jsonp_with_an_origins_list_needs_an_explicit_opt_in() {
    let yaml = |extra: &str| {
        format!(
            "listen: [{{ address: \"127.0.0.1:0\" }}]\nstreams:\n  - path: /e/{{channel}}\n    \
             upstream: {{ url: \"http://127.0.0.1:1/{{channel}}\" }}\n{extra}"
        )
    };
    // (route settings, the error's field path or None when valid)
    let cases: [(&str, Option<&str>); 8] = [
        ("    long_poll: { jsonp: true }\n", None),
        (
            "    origins: [\"*\"]\n    long_poll: { jsonp: true }\n",
            None,
        ),
        (
            "    origins: [\"https://a.example\"]\n    long_poll: { jsonp: true }\n",
            Some("streams[0].long_poll.jsonp"),
        ),
        (
            "    origins: [\"https://a.example\"]\n    long_poll: { jsonp: true, jsonp_ignores_origins: true }\n",
            None,
        ),
        ("    origins: [\"https://a.example\"]\n", None),
        ("    origins: [\"*\"]\n", None),
        (
            "    origins: [\"*\", \"https://a.example\"]\n",
            Some("streams[0].origins"),
        ),
        (
            "    origins: [\"https://a.example/x\"]\n",
            Some("streams[0].origins[0]"),
        ),
    ];
    for (extra, want) in cases {
        let result = pushbridge::config::Config::parse("t.yaml", &yaml(extra));
        match (result, want) {
            (Ok(_), None) => {}
            (Err(error), Some(path)) => {
                let text = error.to_string();
                assert!(text.contains(&format!(": {path}: ")), "{extra}: {text}");
                if path.ends_with("jsonp") {
                    assert!(text.contains("jsonp_ignores_origins"), "{text}");
                }
            }
            (result, want) => panic!("{extra}: want {want:?}, got {:?}", result.err()),
        }
    }
}
