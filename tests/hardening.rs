//! Issue 8, against the real binary: a silent upstream is detected and resumed (item 5); `retry: 0` and short
//! sessions cannot make a reconnect storm (item 6).

#[allow(dead_code)]
#[path = "lossless/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "lossless/clients.rs"]
mod clients;
mod support;

use app::{Script, ScriptApp};
use clients::Proxy;
use support::client::{Proto, connect, eventually};

/// An application that sends one event and then goes silent with the TCP connection open (deadlock, SIGSTOP, a
/// middlebox that dropped the flow): after `upstream.idle_timeout` pushbridge reconnects with `Last-Event-ID`,
/// counts and logs it; the client gets what the application sends next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_reconnected_with_last_event_id() {
    let app = ScriptApp::start(vec![(
        "/up/x",
        vec![
            Script {
                bytes: "id: 1\ndata: a\n\n",
                hold: true,
            },
            Script {
                bytes: ": still here\n\nid: 2\ndata: b\n\n",
                hold: true,
            },
        ],
    )])
    .await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    name: news
    upstream: {{ url: "http://{}/up/{{channel}}", idle_timeout: 500ms, reconnect: {{ initial: 10ms, max: 50ms }} }}
"#,
        app.addr
    ));
    let addr = proxy.addr();
    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/x", None)
        .await;
    app.release();
    let got: Vec<_> = client.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["a", "b"]);
    assert_eq!(app.last_event_ids("/up/x")[..2], [None, Some("1".into())]);
    eventually("the silence counted", || async {
        proxy
            .metric("pushbridge_upstream_silent_total", "route=\"news\"")
            .await
            >= 1.0
    })
    .await;
    let line = proxy.binary.wait_log("silent for", support::client::WAIT);
    assert!(line.contains("news"), "{line}");
}

/// The classic CGI/PHP pattern: `retry: 0`, one event, close. The retry is honoured no lower than
/// `reconnect.initial`, the backoff keeps growing because no session lasts, and the reconnect log is rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_0_and_short_sessions_do_not_storm_the_application() {
    let app = ScriptApp::start(vec![(
        "/up/cgi",
        vec![Script {
            bytes: "retry: 0\n\nid: 1\ndata: x\n\n",
            hold: false,
        }],
    )])
    .await;
    let mut proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 100ms, max: 400ms }} }}
"#,
        app.addr
    ));
    let addr = proxy.addr();
    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/cgi", None)
        .await;
    app.release();
    assert_eq!(client.next_event().await.unwrap().data, "x");
    // A measurement over a fixed period, not a synchronisation.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let connections = app.last_event_ids("/up/cgi").len();
    // Delays 50-100, 100-200, 200-400 ms, then 200-400 ms each: at most about 10 in 2 s (a fixed 100 ms floor
    // alone would allow about 27; retry: 0 alone, hundreds).
    println!("connections in 2 s: {connections}");
    assert!((3..=12).contains(&connections), "{connections} connections");
    proxy.binary.child.kill().unwrap();
    let lines = proxy
        .binary
        .drain_log()
        .into_iter()
        .filter(|l| l.contains("Upstream closed the stream"))
        .count();
    assert!(lines <= 1, "{lines} reconnect log lines");
}
