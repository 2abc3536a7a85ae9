//! Log storms on the real binary: 30 streams whose upstream refuses connections, reconnecting every 10 ms. The
//! "Upstream failed" lines stay within the rate limit (per stream and per kind), and every line not written is
//! counted in `pushbridge_log_lines_suppressed_total{kind="upstream_failed"}`: lines + suppressed = failures.

mod support;

use std::time::{Duration, Instant};

use support::binary;
use support::client::{Proto, connect, eventually, get_text};

const STREAMS: usize = 30;
/// pushbridge::logs::{PER_KEY, PER_KIND, INTERVAL}, restated: the test checks the documented figures.
const PER_KEY: usize = 5;
const PER_KIND: usize = 20;
const INTERVAL: Duration = Duration::from_secs(10);

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_storm_is_rate_limited_and_counted() {
    assert_eq!(
        (PER_KEY, PER_KIND, INTERVAL),
        (
            pushbridge::logs::PER_KEY as usize,
            pushbridge::logs::PER_KIND as usize,
            pushbridge::logs::INTERVAL
        )
    );
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let yaml = format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
streams:
  - name: events
    path: /events/{{channel}}
    idle_timeout: 100ms
    upstream:
      url: "http://{dead}/up/{{channel}}"
      reconnect: {{ initial: 10ms, max: 10ms }}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let bin = binary::start(dir.path(), &yaml, 1, true);
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());

    let mut sender = connect(addr, Proto::H2).await;
    let mut clients = Vec::new();
    for i in 0..STREAMS {
        clients.push(sender.sse(addr, &format!("/events/c{i}"), None).await);
    }
    let failures = r#"pushbridge_upstream_connects_total{result="error",route="events"}"#;
    eventually("a storm of upstream failures", || async {
        let (_, text) = get_text(admin, "/metrics").await;
        metric(&text, failures) >= 10 * STREAMS as u64
    })
    .await;
    // Stop the storm: the streams close once idle, and their upstreams with them.
    drop(clients);
    drop(sender);
    eventually("streams closed", || async {
        let (_, text) = get_text(admin, "/metrics").await;
        metric(&text, "pushbridge_streams_open") == 0
    })
    .await;
    let elapsed = started.elapsed();
    let (_, text) = get_text(admin, "/metrics").await;
    let failed = metric(&text, failures);
    let suppressed = metric(
        &text,
        r#"pushbridge_log_lines_suppressed_total{kind="upstream_failed"}"#,
    );

    let mut lines = Vec::new();
    while let Ok(line) = bin.log.recv_timeout(Duration::from_millis(300)) {
        lines.push(line);
    }
    let written: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Upstream failed; backing off"))
        .collect();
    let intervals = (elapsed.as_millis() / INTERVAL.as_millis()) as usize + 1;
    assert!(
        written.len() <= PER_KIND * intervals,
        "{} lines in {elapsed:?}",
        written.len()
    );
    for i in 0..STREAMS {
        let stream = format!("channel=c{i}\"");
        let per_stream = written.iter().filter(|l| l.contains(&stream)).count();
        assert!(per_stream <= PER_KEY * intervals, "c{i}: {per_stream}");
    }
    assert!(written.len() >= PER_KIND.min(STREAMS), "{written:#?}");
    // Nothing lost: each failure was either written or counted (but for a failure a closing stream ended with).
    let accounted = written.len() as u64 + suppressed;
    assert!(
        accounted <= failed && accounted + STREAMS as u64 >= failed,
        "{} written + {suppressed} suppressed, {failed} failures",
        written.len()
    );
    assert!(suppressed >= failed / 2, "{suppressed} of {failed}");
    println!(
        "{failed} upstream failures in {elapsed:?}: {} lines written, {suppressed} suppressed",
        written.len()
    );
}

/// Connections doing HTTP/2 rapid reset, each opening and resetting streams until h2 closes it with
/// `ENHANCE_YOUR_CALM` (and logs a WARN).
const RESET_CONNECTIONS: usize = 60;
/// Streams opened and reset per connection at most (h2 gives up after 20 reset before being accepted).
const RESETS_PER_CONNECTION: usize = 100;

/// One rapid-reset connection: open a stream and reset it, in a loop; how the server ended the connection:
/// `Some(true)` with `ENHANCE_YOUR_CALM`, `Some(false)` with another error (a reset that overtook the GOAWAY),
/// `None` without error.
async fn rapid_reset(addr: std::net::SocketAddr) -> Option<bool> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    for _ in 0..RESETS_PER_CONNECTION {
        let Ok(mut sender) = client.clone().ready().await else {
            break;
        };
        let req = http::Request::get(format!("http://{addr}/anything"))
            .body(())
            .unwrap();
        match sender.send_request(req, true) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
    }
    // The client keeps the connection open: only the server ends it.
    let ended = tokio::time::timeout(support::client::WAIT, conn)
        .await
        .expect("the server closes the connection")
        .unwrap();
    drop(client);
    let error = ended.err()?;
    Some(error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
}

/// Issue 16, item 6: rapid reset makes h2 write one WARN per connection. Library lines go through the same limit
/// (the `library` kind): every such WARN is written (within the bounds) or counted as suppressed. One client
/// thread, so each connection's streams and resets leave in one burst (as an attacker sends them).
#[tokio::test(flavor = "current_thread")]
async fn rapid_reset_warnings_from_the_http2_library_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
listen: [{ address: "127.0.0.1:0" }]
admin: { address: "127.0.0.1:0" }
log: { format: json }
"#;
    let started = Instant::now();
    let bin = binary::start(dir.path(), yaml, 1, true);
    let (addr, admin) = (bin.listen[0], bin.admin.unwrap());

    let (mut calmed, mut failed) = (0, 0);
    for _ in 0..RESET_CONNECTIONS {
        match rapid_reset(addr).await {
            Some(true) => calmed += 1,
            Some(false) => failed += 1,
            None => {}
        }
    }
    assert!(
        calmed > PER_KIND,
        "only {calmed} connections were closed for rapid reset"
    );
    // Each WARN is written (or counted) before its GOAWAY is sent, so all of them are in by now.
    let elapsed = started.elapsed();
    let mut lines = Vec::new();
    while let Ok(line) = bin.log.recv_timeout(Duration::from_millis(300)) {
        lines.push(line);
    }
    let written = lines
        .iter()
        .filter(|l| l.contains("\"target\":\"h2::"))
        .count();
    let intervals = (elapsed.as_millis() / INTERVAL.as_millis()) as usize + 1;
    assert!(
        written >= 1 && written <= PER_KEY * intervals,
        "{written} h2 lines for {calmed} connections in {elapsed:?}"
    );
    let (_, text) = get_text(admin, "/metrics").await;
    let suppressed = metric(
        &text,
        r#"pushbridge_log_lines_suppressed_total{kind="library"}"#,
    );
    let accounted = written + suppressed as usize;
    assert!(
        calmed <= accounted && accounted <= calmed + failed,
        "each rapid-reset WARN written or counted: {written} + {suppressed}, {calmed} (+ {failed}) connections"
    );
    println!(
        "{calmed} rapid-reset connections in {elapsed:?}: {written} lines written, {suppressed} suppressed"
    );
}
