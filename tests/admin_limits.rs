//! Issue 8, item 8, on the real binary: the admin listener has its own small connection cap and a request-head
//! and idle timeout (silent and idle admin sockets are closed on time; at the cap a new connection takes the
//! oldest idle one's place, and waits only behind busy ones — issue 16, item 7), and the config watcher treats a file it cannot read for a moment as no change (no
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

    // Every admin permit held by a silent socket: a probe takes the oldest one's place at once; the others are
    // closed at the timeout.
    let mut silent = Vec::new();
    for _ in 0..MAX {
        silent.push((TcpStream::connect(admin).await.unwrap(), Instant::now()));
    }
    let since = Instant::now();
    assert_eq!(get_text(admin, "/healthz").await, (200, "ok\n".to_owned()));
    assert!(
        since.elapsed() < TIMEOUT,
        "probe answered after {:?}",
        since.elapsed()
    );
    let mut silent = silent.into_iter();
    let (oldest, opened) = silent.next().unwrap();
    assert!(closed_after(oldest, opened).await < TIMEOUT, "evicted");
    for (tcp, opened) in silent {
        let took = closed_after(tcp, opened).await;
        assert!(
            took + Duration::from_millis(50) >= TIMEOUT && took <= TIMEOUT + MARGIN,
            "{took:?}"
        );
    }
    let metrics = get_text(admin, "/metrics").await.1;
    let closed = |reason: &str| {
        series(
            &metrics,
            &format!(
                "pushbridge_connections_closed_total{{listener=\"admin\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(closed("evicted"), 1.0);
    assert!(closed("handshake_timeout") >= (MAX - 1) as f64);
    assert_eq!(
        series(
            &metrics,
            "pushbridge_connection_limit_reached_total{listener=\"admin\"}"
        ),
        0.0
    );
}

/// Only when every admin connection has a request in flight (here the one permit, held by `/readyz` waiting for a
/// silent application) does a new one wait for a permit: counted, and served once one is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_admin_listener_of_busy_connections_makes_new_ones_wait() {
    let silent_app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let check = Duration::from_millis(800);
    let yaml = format!(
        "listen:\n  - address: \"127.0.0.1:0\"\nadmin: {{ address: \"127.0.0.1:0\", max_connections: 1, ready_check: \"http://{}/health\", ready_check_timeout: {}ms }}\nlog: {{ format: json }}\n",
        silent_app.local_addr().unwrap(),
        check.as_millis()
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = support::binary::start(dir.path(), &yaml, 1, true);
    let admin = proxy.admin.unwrap();

    let busy = tokio::spawn(get_text(admin, "/readyz"));
    // The application is asked: the only permit is busy until the check times out.
    let (_held, _) = tokio::time::timeout(WAIT, silent_app.accept())
        .await
        .unwrap()
        .unwrap();
    let since = Instant::now();
    assert_eq!(get_text(admin, "/healthz").await.0, 200);
    assert!(
        since.elapsed() + Duration::from_millis(200) >= check,
        "served after {:?}, before the permit was free",
        since.elapsed()
    );
    assert_eq!(busy.await.unwrap().0, 503);
    let metrics = get_text(admin, "/metrics").await.1;
    assert!(
        series(
            &metrics,
            "pushbridge_connection_limit_reached_total{listener=\"admin\"}"
        ) >= 1.0
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

/// Idle sockets opened against the admin port (more than its connection cap).
const FLOOD: usize = 40;
/// How soon a probe must be answered while the admin port is flooded (a kubelet probe's usual timeout).
const PROBE_WITHIN: Duration = Duration::from_secs(1);

/// Issue 16, item 7: idle sockets on the admin port (default cap 16, default timeout 10 s) do not keep probes
/// waiting: a new connection takes the place of the longest-idle one, so `/healthz` and `/readyz` answer at once,
/// and the evicted sockets are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_at_once_while_idle_sockets_flood_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "listen:\n  - address: \"127.0.0.1:0\"\nadmin: { address: \"127.0.0.1:0\" }\nlog: { format: json }\n";
    let proxy = support::binary::start(dir.path(), yaml, 1, true);
    let admin = proxy.admin.unwrap();

    // A scraper's keep-alive connection, idle after one request, and then a flood of silent sockets.
    let mut scraper = support::client::connect(admin, support::client::Proto::H1).await;
    let scrape = http::Request::get("/metrics")
        .header("host", admin.to_string())
        .body(support::client::empty())
        .unwrap();
    assert_eq!(scraper.send(scrape).await.status(), 200);
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(admin).await.unwrap());
    }
    for path in ["/healthz", "/readyz", "/healthz"] {
        let since = Instant::now();
        let answer = tokio::time::timeout(PROBE_WITHIN, get_text(admin, path)).await;
        assert!(
            answer.is_ok_and(|(status, _)| status == 200),
            "{path} not answered within {PROBE_WITHIN:?} ({:?})",
            since.elapsed()
        );
    }
    // The oldest idle sockets made room: the scraper's and the flood's first ones, closed by the server.
    let mut closed = 0;
    for tcp in flood.iter_mut().take(FLOOD - 16) {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, FLOOD - 16);
    let metrics = get_text(admin, "/metrics").await.1;
    let evicted = series(
        &metrics,
        "pushbridge_connections_closed_total{listener=\"admin\",reason=\"evicted\"}",
    );
    assert!(evicted >= (FLOOD + 1 - 16) as f64, "{evicted} evicted");
}
