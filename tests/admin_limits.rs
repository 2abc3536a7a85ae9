//! Issue 8, item 8, on the real binary: the admin listener has its own small connection cap and a request-head
//! and idle timeout (silent and idle admin sockets are closed on time; a probe waiting behind a full listener is
//! served once they are), and the config watcher treats a file it cannot read for a moment as no change (no
//! failed reload counted, no spurious reload when it is back).

mod support;

use std::time::{Duration, Instant};

use support::client::{WAIT, eventually, get_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_millis(600);
const MARGIN: Duration = Duration::from_millis(1500);
const MAX: usize = 3;

fn yaml(level: &str) -> String {
    format!(
        "listen:\n  - address: \"127.0.0.1:0\"\nadmin: {{ address: \"127.0.0.1:0\", max_connections: {MAX}, timeout: {}ms }}\nlog: {{ format: json, level: {level} }}\n",
        TIMEOUT.as_millis()
    )
}

async fn closed_after(mut tcp: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(WAIT, async {
        while !matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {}
    })
    .await;
    assert!(read.is_ok(), "the admin connection was never closed");
    since.elapsed()
}

fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_admin_sockets_are_capped_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = support::binary::start(dir.path(), &yaml("info"), 1, true);
    let admin = proxy.admin.unwrap();

    // An idle keep-alive admin connection is closed after the timeout.
    let mut keep = TcpStream::connect(admin).await.unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    keep.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let took = closed_after(keep, Instant::now()).await;
    assert!(
        took + Duration::from_millis(50) >= TIMEOUT && took <= TIMEOUT + MARGIN,
        "{took:?}"
    );

    // Every admin permit held by a silent socket: a probe waits, and is answered once they are closed.
    let mut silent = Vec::new();
    for _ in 0..MAX {
        silent.push((TcpStream::connect(admin).await.unwrap(), Instant::now()));
    }
    let since = Instant::now();
    assert_eq!(get_text(admin, "/healthz").await, (200, "ok\n".to_owned()));
    assert!(
        since.elapsed() <= TIMEOUT + MARGIN,
        "probe answered after {:?}",
        since.elapsed()
    );
    for (tcp, opened) in silent {
        let took = closed_after(tcp, opened).await;
        assert!(
            took + Duration::from_millis(50) >= TIMEOUT && took <= TIMEOUT + MARGIN,
            "{took:?}"
        );
    }
    let metrics = get_text(admin, "/metrics").await.1;
    assert!(
        series(
            &metrics,
            "pushbridge_connection_limit_reached_total{listener=\"admin\"}"
        ) >= 1.0
    );
    assert!(
        series(
            &metrics,
            "pushbridge_connections_closed_total{listener=\"admin\",reason=\"handshake_timeout\"}"
        ) >= MAX as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_unreadable_for_a_moment_is_not_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = support::binary::start(dir.path(), &yaml("info"), 1, true);
    let admin = proxy.admin.unwrap();
    let path = dir.path().join("config.yaml");
    let aside = dir.path().join("config.yaml.aside");

    // Gone for a few watch periods (as when out of file descriptors or mid-swap), then back unchanged. Nothing
    // signals "the watcher looked and did nothing", so this waits a fixed 2.5 watch periods.
    std::fs::rename(&path, &aside).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::rename(&aside, &path).unwrap();

    // Then a real change: the watcher works in order, so a spurious reload would have come first.
    std::fs::write(&path, yaml("debug")).unwrap();
    let line = tokio::task::block_in_place(|| proxy.wait_log("Config re", WAIT));
    assert!(
        line.contains("Config reloaded"),
        "the first reload line is the real change: {line}"
    );
    eventually("the reload is counted", || async {
        let metrics = get_text(admin, "/metrics").await.1;
        series(&metrics, "pushbridge_config_reloads_total{result=\"ok\"}") == 1.0
    })
    .await;
    let metrics = get_text(admin, "/metrics").await.1;
    assert_eq!(
        series(
            &metrics,
            "pushbridge_config_reloads_total{result=\"error\"}"
        ),
        0.0
    );
}

/// The scenario: silent sockets exhaust the process's file descriptors. Accept errors back off and are
/// logged at most once per 10 s per listener; the config watcher, which cannot read its file meanwhile, counts no
/// reload; once the silent sockets are closed (handshake timeout) the admin listener and clients are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_recovers_without_log_storms_or_reloads() {
    let upstream = support::upstream::SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\nadmin: {{ address: \"127.0.0.1:0\" }}\nlog: {{ format: json }}\nlimits: {{ handshake_timeout: 2500ms }}\nstreams:\n  - path: /events/{{c}}\n    upstream: {{ url: \"http://{}/up/{{c}}\" }}\n",
        upstream.addr
    );
    let proxy = support::binary::start_with_fd_limit(dir.path(), &yaml, 1, true, 64);
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());

    // More silent sockets than the process has descriptors.
    let mut silent = Vec::new();
    for _ in 0..120 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let first_error = tokio::task::block_in_place(|| proxy.wait_log("Accept failed", WAIT));
    assert!(first_error.contains("Too many open files"), "{first_error}");

    // Recovery: every silent socket is closed by the server, then a client gets its events.
    for tcp in silent {
        closed_after(tcp, Instant::now()).await;
    }
    let mut client = support::client::connect(addr, support::client::Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    upstream.wait_connections(1).await;
    upstream.publish("back");
    assert_eq!(client.next_event().await.unwrap().data, "back");
    let metrics = get_text(admin, "/metrics").await.1;
    assert!(
        series(
            &metrics,
            "pushbridge_accept_errors_total{listener=\"client\"}"
        ) >= 1.0
    );
    assert_eq!(
        series(
            &metrics,
            "pushbridge_config_reloads_total{result=\"error\"}"
        ),
        0.0
    );
    assert_eq!(
        series(&metrics, "pushbridge_config_reloads_total{result=\"ok\"}"),
        0.0
    );

    // However many accepts failed, the log has at most one line per listener per 10 s.
    let mut lines = Vec::new();
    while let Ok(line) = proxy.log.try_recv() {
        lines.push(line);
    }
    let accept_lines = lines.iter().filter(|l| l.contains("Accept failed")).count();
    assert!(
        accept_lines <= 1,
        "{accept_lines} more accept-failure lines: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("Config reload")),
        "{lines:#?}"
    );
}
