//! Metrics after a scripted session: every series present at 0 from start-up, then the right values after
//! connect, receive, resume, downgrade and disconnect — read from the real admin listener.

mod support;

use support::client::{Proto, connect, empty};
use support::proxy;
use support::upstream::SseUpstream;

async fn scrape(admin: std::net::SocketAddr) -> String {
    let (status, body) = support::client::get_text(admin, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// The value of one series (`name{labels}` exactly as exposed, labels sorted by name).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("series {series} missing from:\n{text}"))
}

#[tokio::test]
async fn metrics_follow_a_scripted_session() {
    let upstream = SseUpstream::start(true).await;
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
streams:
  - name: news
    path: /news/{{channel}}
    transports: [sse]
    buffer: {{ events: 2 }}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
"#,
        upstream.addr
    );
    let proxy = proxy::start(&yaml).await;
    let (addr, admin) = (proxy.addr(), proxy.admin());

    let text = scrape(admin).await;
    for series in [
        "pushbridge_connections_open{http_version=\"http1\",transport=\"ws\"}",
        "pushbridge_connections_open{http_version=\"http2\",transport=\"long-poll\"}",
        "pushbridge_connections_total{transport=\"sse\"}",
        "pushbridge_events_received_total{route=\"news\"}",
        "pushbridge_events_delivered_total{transport=\"long-poll\"}",
        "pushbridge_delivery_latency_seconds_count{transport=\"ws\"}",
        "pushbridge_upstream_connects_total{result=\"error\",route=\"news\"}",
        "pushbridge_upstream_up{route=\"news\"}",
        "pushbridge_resumes_total{result=\"hit\"}",
        "pushbridge_resumes_total{result=\"gap\"}",
        "pushbridge_resume_gaps_total",
        "pushbridge_downgrades_total{from=\"ws\",to=\"sse\"}",
        "pushbridge_slow_consumer_disconnects_total{transport=\"sse\"}",
        "pushbridge_tls_handshake_failures_total{reason=\"timeout\"}",
        "pushbridge_passthrough_requests_total{class=\"5xx\"}",
        "pushbridge_config_reloads_total{result=\"error\"}",
        "pushbridge_client_messages_total{result=\"refused\"}",
        "pushbridge_streams_open",
    ] {
        assert_eq!(value(&text, series), 0.0, "{series} starts at 0");
    }
    assert_eq!(
        value(&text, "pushbridge_build_info{version=\"0.1.0\"}"),
        1.0
    );

    // Connect over HTTP/1.1 and HTTP/2, receive three events.
    let mut h1 = connect(addr, Proto::H1)
        .await
        .sse(addr, "/news/a", None)
        .await;
    let mut h2 = connect(addr, Proto::H2)
        .await
        .sse(addr, "/news/a", None)
        .await;
    upstream.wait_connections(1).await;
    for i in 0..3 {
        upstream.publish(format!("{i}"));
    }
    let ids: Vec<String> = h1
        .take(3)
        .await
        .into_iter()
        .map(|e| e.id.unwrap())
        .collect();
    h2.take(3).await;

    // A WebSocket handshake on an SSE-only route is downgraded to SSE.
    let mut sender = connect(addr, Proto::H1).await;
    let req = http::Request::get("/news/a")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("accept", "text/event-stream")
        .body(empty())
        .unwrap();
    let downgraded = sender.send(req).await;
    assert_eq!(downgraded.headers()["x-pushbridge-transport"], "sse");

    // Resumes: one hit (inside the 2-event buffer), one gap.
    let _hit = connect(addr, Proto::H1)
        .await
        .sse(addr, "/news/a", Some(&ids[1]))
        .await;
    let _gap = connect(addr, Proto::H1)
        .await
        .sse(addr, "/news/a", Some(&ids[0]))
        .await;

    let text = scrape(admin).await;
    assert_eq!(
        value(
            &text,
            "pushbridge_connections_open{http_version=\"http1\",transport=\"sse\"}"
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            "pushbridge_connections_open{http_version=\"http2\",transport=\"sse\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "pushbridge_connections_total{transport=\"sse\"}"),
        5.0
    );
    assert_eq!(
        value(&text, "pushbridge_events_received_total{route=\"news\"}"),
        3.0
    );
    assert!(
        value(
            &text,
            "pushbridge_events_delivered_total{transport=\"sse\"}"
        ) >= 6.0
    );
    assert!(
        value(
            &text,
            "pushbridge_delivery_latency_seconds_count{transport=\"sse\"}"
        ) >= 6.0
    );
    assert_eq!(
        value(
            &text,
            "pushbridge_upstream_connects_total{result=\"ok\",route=\"news\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, "pushbridge_upstream_up{route=\"news\"}"), 1.0);
    assert_eq!(
        value(&text, "pushbridge_downgrades_total{from=\"ws\",to=\"sse\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "pushbridge_resumes_total{result=\"hit\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "pushbridge_resumes_total{result=\"gap\"}"),
        1.0
    );
    assert_eq!(value(&text, "pushbridge_resume_gaps_total"), 1.0);
    assert_eq!(value(&text, "pushbridge_streams_open"), 1.0);
    // No series per client or per channel value.
    assert!(
        !text.contains("channel") && !text.contains("/news/a"),
        "no per-path labels"
    );

    // Disconnect everyone: the open-connection gauges return to 0 once the proxy sees the hang-ups.
    drop((h1, h2, downgraded, sender, _hit, _gap));
    support::client::eventually("connections_open back to 0", || async {
        let text = scrape(admin).await;
        value(
            &text,
            "pushbridge_connections_open{http_version=\"http1\",transport=\"sse\"}",
        ) + value(
            &text,
            "pushbridge_connections_open{http_version=\"http2\",transport=\"sse\"}",
        ) == 0.0
    })
    .await;
}

#[tokio::test]
async fn tls_handshake_failures_are_counted_by_reason() {
    use tokio::io::AsyncWriteExt;
    let ca = support::certs::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), support::certs::KeyKind::EcdsaP256);
    let yaml = format!(
        "listen:\n{}admin: {{ address: \"127.0.0.1:0\" }}\nlimits: {{ handshake_timeout: 200ms }}\n",
        support::certs::tls_listener(&cert, &key)
    );
    let proxy = proxy::start(&yaml).await;
    // Plain HTTP to the TLS port: a handshake error.
    let mut garbage = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Connect and say nothing: a handshake timeout.
    let _silent = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    support::client::eventually("one TLS failure of each reason", || async {
        let text = scrape(proxy.admin()).await;
        value(
            &text,
            "pushbridge_tls_handshake_failures_total{reason=\"error\"}",
        ) == 1.0
            && value(
                &text,
                "pushbridge_tls_handshake_failures_total{reason=\"timeout\"}",
            ) == 1.0
    })
    .await;
}

#[tokio::test]
async fn admin_health_readiness_and_pass_through_classes() {
    let yaml = r#"
listen:
  - address: "127.0.0.1:0"
admin: { address: "127.0.0.1:0" }
passthrough: { upstream: "http://127.0.0.1:1", connect_timeout: 1s }
streams:
  - name: dead
    path: /dead/{channel}
    upstream: { url: "http://127.0.0.1:2/{channel}", reconnect: { initial: 10ms, max: 20ms } }
"#;
    // (Port 2, not the pass-through's: a stream upstream at the root of the pass-through's origin would make the
    // pass-through refuse every path, docs/SECURITY.md.)
    let proxy = proxy::start(yaml).await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    assert_eq!(
        support::client::get_text(admin, "/healthz").await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        support::client::get_text(admin, "/readyz").await,
        (200, "ready\n".to_owned())
    );
    assert_eq!(support::client::get_text(admin, "/nope").await.0, 404);

    // A live stream whose upstream is unreachable shows in the metrics, never in readiness: stream keys are
    // client-chosen (issue 8, item 2).
    let _client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/dead/a", None)
        .await;
    support::client::eventually("the failed upstream attempts are counted", || async {
        value(
            &scrape(admin).await,
            "pushbridge_upstream_connects_total{result=\"error\",route=\"dead\"}",
        ) >= 2.0
    })
    .await;
    assert_eq!(
        support::client::get_text(admin, "/readyz").await,
        (200, "ready\n".to_owned())
    );

    // Pass-through to an application that is down: 502, counted as 5xx.
    assert_eq!(support::client::get_text(addr, "/app").await.0, 502);
    let text = scrape(admin).await;
    assert_eq!(
        value(
            &text,
            "pushbridge_passthrough_requests_total{class=\"5xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "pushbridge_passthrough_requests_total{class=\"2xx\"}"
        ),
        0.0
    );
}

/// A self-signed certificate for localhost expiring on `(year, month, day)` at midnight UTC, written to `dir`.
fn cert_expiring(dir: &std::path::Path, (year, month, day): (i32, u8, u8)) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, month, day);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// Issue 19 item 3: the served certificate's notAfter is a gauge, set at start and again when a renewed
/// certificate is reloaded (so the expiry alert resolves after renewal).
#[tokio::test]
async fn certificate_expiry_gauge_follows_the_served_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_expiring(dir.path(), (2031, 1, 2));
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
    tls: {{ cert: "{cert}", key: "{key}" }}
admin: {{ address: "127.0.0.1:0" }}
streams:
  - path: /e/{{c}}
    upstream: {{ url: "http://127.0.0.1:1/{{c}}" }}
"#
    );
    let proxy = proxy::start(&yaml).await;
    let series = format!("pushbridge_tls_cert_expiry_timestamp_seconds{{cert=\"{cert}\"}}");
    // 2031-01-02T00:00:00Z
    assert_eq!(
        value(&scrape(proxy.admin()).await, &series),
        1_925_078_400.0
    );
    cert_expiring(dir.path(), (2032, 6, 30));
    proxy.running().reload_certificates();
    // 2032-06-30T00:00:00Z
    assert_eq!(
        value(&scrape(proxy.admin()).await, &series),
        1_972_166_400.0
    );
}
