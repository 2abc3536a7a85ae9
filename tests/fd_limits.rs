//! Issue 16, item 8, on the real binary under a low open-file limit (`prlimit`): every stream holds an upstream
//! socket, so the start-up check (and `pushbridge check`) counts `max_streams` with `max_connections`; new streams
//! are refused with 503 while too few descriptors are left, so the listeners keep accepting: a pass-through
//! request and `/healthz` are answered right after.

mod support;

use std::process::Command;
use std::time::Duration;

use futures_util::future::join_all;
use support::client::{Proto, Sender, WAIT, connect, get_text, sse_request};
use support::upstream::SseUpstream;

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The open-file limit the binary runs under.
const NOFILE: u32 = 160;
/// Channels asked for: more than the limit allows.
const CHANNELS: usize = 200;
/// HTTP/2 connections carrying them.
const CONNECTIONS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_fd_limit_get_503_and_the_listeners_keep_answering() {
    let upstream = SseUpstream::start(true).await;
    let app = support::app::serve(|_req| async {
        http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            b"app\n",
        )))
    })
    .await;
    let yaml = format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
passthrough: {{ upstream: "http://{app}" }}
streams:
  - name: events
    path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
"#,
        upstream.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = support::binary::start_with_fd_limit(dir.path(), &yaml, 1, true, NOFILE);
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());

    // All at once, as a flood of new channels comes: the streams still connecting count too.
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        match connect(addr, Proto::H2).await {
            Sender::H2(sender) => senders.push(sender),
            Sender::H1(_) => unreachable!(),
        }
    }
    let requests = (0..CHANNELS).map(|i| {
        let mut sender = senders[i % CONNECTIONS].clone();
        async move {
            let request = sse_request(addr, &format!("/events/c{i}"), None, true);
            tokio::time::timeout(WAIT, sender.send_request(request))
                .await
                .expect("response in time")
                .expect("response")
        }
    });
    let (mut clients, mut refused) = (Vec::new(), 0);
    for (i, response) in join_all(requests).await.into_iter().enumerate() {
        match response.status().as_u16() {
            200 => clients.push(support::client::SseClient::new(response)),
            503 => {
                assert_eq!(response.headers()["retry-after"], "5");
                refused += 1;
            }
            status => panic!("channel {i}: {status}"),
        }
    }
    println!("{} streams admitted, {refused} refused", clients.len());
    assert!(refused > 0, "every one of {CHANNELS} streams admitted");
    assert!(clients.len() >= 50, "only {} admitted", clients.len());

    // Right after: the listeners answer, a pass-through request and the probe alike.
    let quick = Duration::from_secs(1);
    let passthrough = tokio::time::timeout(quick, get_text(addr, "/page")).await;
    assert_eq!(
        passthrough.expect("pass-through in time"),
        (200, "app\n".into())
    );
    let health = tokio::time::timeout(quick, get_text(admin, "/healthz")).await;
    assert_eq!(health.expect("/healthz in time").0, 200);

    // Every admitted stream got its upstream connection and delivers.
    upstream.wait_connections(clients.len()).await;
    upstream.publish("after");
    for client in &mut clients {
        assert_eq!(client.next_event().await.unwrap().data, "after");
    }
    let text = get_text(admin, "/metrics").await.1;
    assert_eq!(
        metric(&text, r#"pushbridge_stream_refusals_total{limit="fds"}"#),
        refused
    );
    let up = r#"pushbridge_upstream_connects_total{result="error",route="events"}"#;
    assert_eq!(metric(&text, up), 0, "an upstream connect failed");
}

/// `run` and `check` warn when `max_connections + max_streams` does not fit in the open-file limit.
#[test]
fn the_fd_check_counts_max_streams() {
    let yaml = "listen: [{ address: \"127.0.0.1:0\" }]\nadmin: { address: \"127.0.0.1:0\" }\nlog: { format: json }\nlimits: { max_connections: 1000, max_streams: 3500 }\n";
    let dir = tempfile::tempdir().unwrap();
    let bin = support::binary::start_with_fd_limit(dir.path(), yaml, 1, true, 3000);
    let mut lines = bin.startup.clone();
    while let Ok(line) = bin.log.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    let warning = lines
        .iter()
        .find(|l| l.contains("open-file limit"))
        .unwrap_or_else(|| panic!("no open-file warning: {lines:#?}"));
    for field in [
        "\"max_connections\":1000",
        "\"max_streams\":3500",
        "\"open_file_limit\":3000",
    ] {
        assert!(warning.contains(field), "{field} in {warning}");
    }
    drop(bin);

    let output = Command::new("prlimit")
        .arg("--nofile=3000")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_pushbridge"))
        .args(["check", "-c"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("max_streams (3500)")
            && stderr.contains("3000"),
        "{stderr}"
    );
}
