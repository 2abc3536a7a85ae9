//! The command line, run as a user would: `check` on good and bad files, and `demo` end to end.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pushbridge");

#[test]
fn check_reports_every_problem_with_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen:\n  - address: 127.0.0.1:0\n    tls: { cert: missing.crt, key: missing.key }\nstreams:\n  - path: /e/{c}\n    upstream: { url: \"http://a/{c}\" }\n    heartbeat: 0s\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:3:18: listen[0].tls.cert:")),
        "{stderr}"
    );
    assert!(stderr.contains("missing.crt"), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:3:36: listen[0].tls.key:")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:7:16: streams[0].heartbeat:")),
        "{stderr}"
    );

    std::fs::write(&path, "listen:\n  - address: 127.0.0.1:0\nstreems: []\n").unwrap();
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{file}:3:1:")) && stderr.contains("streems"),
        "{stderr}"
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "listen:\n  - address: 127.0.0.1:0\n").unwrap();
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn run_with_a_bad_config_exits_64() {
    let output = Command::new(BIN)
        .args(["run", "-c", "/nonexistent/pushbridge.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/pushbridge.yaml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_page_and_the_stream() {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--https-port",
            "0",
            "--http-port",
            "0",
            "--admin-port",
            "0",
            "--interval",
            "50ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let http = tokio::task::block_in_place(|| {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("demo prints its URLs");
            if let Some(url) = line.trim().strip_prefix("page (HTTP):") {
                break url
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
            }
        }
    });
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let mut sender = support::client::connect(addr, support::client::Proto::H1).await;
    let page = sender
        .send(
            http::Request::get("/")
                .header("host", "demo")
                .body(support::client::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status(), 200);
    let mut stream = sender.sse(addr, "/events/demo", None).await;
    let ticks = stream.take(3).await;
    let numbers: Vec<u64> = ticks
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers[1], numbers[0] + 1);
    assert_eq!(numbers[2], numbers[1] + 1);
    assert_eq!(ticks[0].event.as_deref(), Some("tick"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "demo exits 0 on SIGTERM: {status:?}");
}

#[test]
fn demo_on_a_busy_port_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let output = Command::new(BIN)
        .args([
            "demo",
            "--https-port",
            "0",
            "--http-port",
            &port,
            "--admin-port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("--http-port"), "{stderr}");
}
