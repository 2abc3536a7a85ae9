//! Secrets never reach the log: the real binary, at `RUST_LOG=debug`, with secrets planted in client queries and
//! headers and in the user-info, query and fragment of every configured URL (pass-through, stream upstream, auth
//! check, client-message forward), while each of those fails (connection refused, and 5xx). The failure lines
//! must be logged, and no output line may contain a secret.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::binary;
use support::client::{Proto, ReqBody, connect};

const SECRETS: [&str; 19] = [
    "RELOADSECRET1",
    "RELOADSECRET2",
    "RELOADSECRET3",
    "RELOADSECRET4",
    "PTSECRET1",
    "PTSECRET2",
    "UPSECRET1",
    "UPSECRET2",
    "UPSECRET3",
    "AUTHSECRET1",
    "AUTHSECRET2",
    "FWDSECRET1",
    "FWDSECRET2",
    "CLIENTQSECRET",
    "HDRAUTHSECRET",
    "HDRCOOKIESECRET",
    "HDRPROXYSECRET",
    "SETCOOKIESECRET",
    "FRAGSECRET",
];

/// A port nobody listens on (connection refused).
async fn dead_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn config(app: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
log: {{ format: json }}
passthrough:
  upstream: "http://pt:PTSECRET1@{app}"
  routes:
    - prefix: /down
      upstream: "http://pt:PTSECRET2@{dead}"
streams:
  - name: up5
    path: /up5/{{channel}}
    upstream:
      url: "http://su:UPSECRET1@{app}/events/{{channel}}?key=UPSECRET2#FRAGSECRET"
      reconnect: {{ initial: 50ms, max: 200ms }}
  - name: updown
    path: /updown/{{channel}}
    upstream:
      url: "http://su:UPSECRET1@{dead}/events/{{channel}}?key=UPSECRET3"
      reconnect: {{ initial: 50ms, max: 200ms }}
  - name: auth5
    path: /auth5/{{channel}}
    upstream: {{ url: "http://{app}/events" }}
    auth: {{ check: "http://au:AUTHSECRET1@{app}/auth?k=AUTHSECRET2" }}
  - name: authdown
    path: /authdown/{{channel}}
    upstream: {{ url: "http://{app}/events" }}
    auth: {{ check: "http://au:AUTHSECRET1@{dead}/auth?k=AUTHSECRET2" }}
  - name: fwd
    path: /fwd/{{channel}}
    upstream: {{ url: "http://{dead}/events" }}
    client_messages: {{ forward: "http://fu:FWDSECRET1@{dead}/msg?k=FWDSECRET2" }}
  - name: fwd5
    path: /fwd5/{{channel}}
    upstream: {{ url: "http://{dead}/events" }}
    client_messages: {{ forward: "http://fu:FWDSECRET1@{app}/msg?k=FWDSECRET2" }}
"#
    )
}

/// A request carrying the client-side secrets: a query token and credential headers.
fn request(method: &str, path: &str, accept: &str) -> Request<ReqBody> {
    Request::builder()
        .method(method)
        .uri(format!("{path}?token=CLIENTQSECRET&x=1"))
        .header("host", "pushbridge.test")
        .header("accept", accept)
        .header("authorization", "Bearer HDRAUTHSECRET")
        .header("cookie", "sid=HDRCOOKIESECRET")
        .header("proxy-authorization", "Basic HDRPROXYSECRET")
        .body(
            Full::new(bytes::Bytes::from_static(b"hello"))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

/// Collects every log line until each of `needles` has appeared in one (or panics after 20 s).
fn collect_until(bin: &binary::Binary, lines: &mut Vec<String>, needles: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut missing: Vec<&str> = needles
        .iter()
        .copied()
        .filter(|n| !lines.iter().any(|l| l.contains(n)))
        .collect();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = bin
            .log
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("never logged {missing:?}: {e}"));
        missing.retain(|n| !line.contains(n));
        lines.push(line);
    }
}

/// Collects log lines until one after `lines[from..]` contains `needle`.
fn collect_until_new(bin: &binary::Binary, lines: &mut Vec<String>, from: usize, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines[from..].iter().any(|l| l.contains(needle)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = bin
            .log
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("never logged {needle:?}: {e}"));
        lines.push(line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_at_debug() {
    // The application answers 500 (with a Set-Cookie) to everything, and records the credentials it was sent.
    let seen = Arc::new(Mutex::new(Vec::<(String, Option<String>)>::new()));
    let record = seen.clone();
    let app = support::app::serve(move |req: Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            record
                .lock()
                .unwrap()
                .push((req.uri().path().to_owned(), auth));
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header("set-cookie", "s=SETCOOKIESECRET")
                .body(Full::new(bytes::Bytes::from_static(b"boom")))
                .unwrap()
        }
    })
    .await;
    let dead = dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let bin = binary::start_with_log(dir.path(), &config(app, dead), 1, false, "debug");
    let addr = bin.listen[0];

    let mut sender = connect(addr, Proto::H1).await;
    // Pass-through: 5xx from the app (passed to the client), then connection refused.
    let resp = sender.send(request("GET", "/page", "*/*")).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let _ = resp.into_body().collect().await;
    let resp = sender.send(request("GET", "/down/page", "*/*")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    // Auth check: 5xx, then refused.
    for path in ["/auth5/a", "/authdown/a"] {
        let resp = sender.send(request("GET", path, "*/*")).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{path}");
        let _ = resp.into_body().collect().await;
    }
    // Client-message forward: refused, then 5xx (passed to the client).
    let resp = sender.send(request("POST", "/fwd/a", "*/*")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let _ = resp.into_body().collect().await;
    let resp = sender.send(request("POST", "/fwd5/a", "*/*")).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let _ = resp.into_body().collect().await;
    // Stream upstreams: 5xx and refused, kept alive by an SSE subscriber each.
    let mut streams = Vec::new();
    for path in ["/up5/a", "/updown/a"] {
        let mut sse = connect(addr, Proto::H1).await;
        let resp = sse.send(request("GET", path, "text/event-stream")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        streams.push((sse, resp));
    }

    let mut lines = Vec::new();
    collect_until(
        &bin,
        &mut lines,
        &[
            "pass-through upstream failed",
            "Authorization check failed",
            "authorization service answered 500",
            "Client message not delivered",
            "unexpected status 500",
            "connect failed",
        ],
    );
    // Each failure line names its (redacted) target or stream.
    let failing: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .collect();
    assert!(
        failing
            .iter()
            .any(|l| l.contains("Upstream failed") && l.contains("/events/a?…")),
        "{failing:#?}"
    );
    assert!(
        failing
            .iter()
            .any(|l| l.contains("pass-through upstream failed") && l.contains("/down/page?…")),
        "{failing:#?}"
    );

    // Refused reloads: their errors quote the bad URLs (one with the wrong scheme, one that does not parse).
    let bad = [
        (
            "ftp://ru:RELOADSECRET1@h/x?k=RELOADSECRET2",
            "URL \\\"ftp://h/x?…\\\" must start with",
        ),
        (
            "http://ru:RELOADSECRET3@h/x y?k=RELOADSECRET4",
            "invalid URL \\\"http://h/x y?…\\\"",
        ),
    ];
    for (n, (url, shown)) in bad.into_iter().enumerate() {
        let yaml = format!(
            "{}  - name: bad\n    path: /bad\n    upstream: {{ url: \"{url}\" }}\n",
            config(app, dead)
        );
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        bin.signal("HUP");
        let before = lines.len();
        collect_until_new(&bin, &mut lines, before, "Config reload refused");
        let refused = lines[before..]
            .iter()
            .find(|l| l.contains("Config reload refused"))
            .unwrap();
        assert!(
            refused.contains("streams[6].upstream.url") && refused.contains(shown),
            "reload {n}: {refused}"
        );
    }

    drop(streams);
    drop(sender);
    bin.signal("TERM");
    let mut bin = bin;
    assert_eq!(bin.wait_exit(Duration::from_secs(20)), Some(0));
    lines.extend(bin.drain_log());

    let all = lines.join("\n");
    for secret in SECRETS {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} logged: {leaks:#?}");
    }
    // At debug level there is plenty of output: the test would notice a quiet process.
    assert!(lines.len() > 20, "{all}");

    // User-info is not dropped silently: it reaches the application as Basic credentials, never in a log.
    let seen = seen.lock().unwrap();
    let basic = |user_pass: &str| {
        use base64::Engine;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        ))
    };
    assert!(
        seen.iter()
            .any(|(path, auth)| path == "/events/a" && *auth == basic("su:UPSECRET1")),
        "{seen:?}"
    );
    // The client's own (forwarded) Authorization wins over a URL's user-info.
    for want in ["/page", "/auth", "/msg"] {
        assert!(
            seen.iter().any(|(path, auth)| path == want
                && auth.as_deref() == Some("Bearer HDRAUTHSECRET")),
            "{want}: {seen:?}"
        );
    }
}
