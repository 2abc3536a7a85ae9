//! The command line, run as a user would: `check` on good and bad files, and `demo` end to end.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pushbridge");

/// `pushbridge check -c FILE` on `yaml` written to a fresh FILE: its exit code, stderr and FILE.
fn check_yaml(yaml: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr, path.display().to_string())
}

#[test]
fn check_reports_every_problem_with_file_line_column_and_field() {
    let (code, stderr, file) = check_yaml(
        "listen:\n  - address: 127.0.0.1:0\n    tls: { cert: missing.crt, key: missing.key }\nstreams:\n  - path: /e/{c}\n    upstream: { url: \"http://a/{c}\" }\n    heartbeat: 0s\n",
    );
    assert_eq!(code, Some(64), "{stderr}");
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

    let (code, stderr, file) = check_yaml("listen:\n  - address: 127.0.0.1:0\nstreems: []\n");
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains(&format!("{file}:3:1:")) && stderr.contains("streems"),
        "{stderr}"
    );

    let (code, stderr, _) = check_yaml("listen:\n  - address: 127.0.0.1:0\n");
    assert_eq!(code, Some(0), "{stderr}");
}

/// `pushbridge <command> -c <path>`: (exit code, stderr).
fn pushbridge(command: &str, path: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args([command, "-c"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A `run` that (wrongly) starts is killed after a while rather than left serving.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Issue 8, item 11: whatever `check` accepts, `run` starts with; whatever `run` refuses, `check` refuses, with
/// FILE:LINE:COL and the field; no configuration makes `run` panic (exit 101).
#[test]
fn check_accepts_exactly_what_run_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::certs::TestCa::new();
    let (cert, key) = ca.leaf_files(dir.path(), support::certs::KeyKind::EcdsaP256);
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "this is not PEM\n").unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(
        &other_key,
        ca.leaf_pem(support::certs::KeyKind::EcdsaP256).1,
    )
    .unwrap();
    let listener = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "listen:\n  - address: 127.0.0.1:0\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            cert.display(),
            key.display()
        )
    };
    let stream = |ca: &std::path::Path| {
        format!(
            "streams:\n  - path: /e/{{c}}\n    upstream: {{ url: \"https://127.0.0.1:9/{{c}}\", ca_file: \"{}\" }}\n",
            ca.display()
        )
    };
    let plain = "listen:\n  - address: 127.0.0.1:0\n";
    let cases = [
        (
            listener(&junk, &key),
            "3:18: listen[0].tls.cert:",
            "junk.pem",
        ),
        (listener(&cert, &junk), "3:", "listen[0].tls.key:"),
        (listener(&cert, &other_key), "3:", "does not match"),
        (
            format!(
                "{plain}passthrough: {{ upstream: \"https://127.0.0.1:9\", ca_file: \"{}\" }}\n",
                junk.display()
            ),
            "3:",
            "passthrough.ca_file:",
        ),
        (
            format!("{plain}{}", stream(&junk)),
            "5:",
            "streams[0].upstream.ca_file:",
        ),
        (
            format!(
                "{plain}streams:\n  - path: /e/{{c}}\n    upstream:\n      url: \"http://127.0.0.1:9/{{c}}\"\n      tee: {{ url: \"rediss://127.0.0.1:9\", key: k, ca_file: \"{}\" }}\n",
                junk.display()
            ),
            "7:",
            "streams[0].upstream.tee.ca_file:",
        ),
        (
            format!("{plain}limits: {{ max_connections: 3000000000000000000 }}\n"),
            "3:28: limits.max_connections:",
            "at most",
        ),
    ];
    let path = dir.path().join("config.yaml");
    let file = path.display().to_string();
    for (yaml, location, fragment) in &cases {
        std::fs::write(&path, yaml).unwrap();
        let (code, stderr) = pushbridge("check", &path);
        assert_eq!(code, Some(64), "check accepted:\n{yaml}\n{stderr}");
        assert!(
            stderr.contains(&format!("{file}:{location}")),
            "{yaml}\n{stderr}"
        );
        assert!(stderr.contains(fragment), "{yaml}\n{stderr}");
        let (code, stderr) = pushbridge("run", &path);
        assert_eq!(
            code,
            Some(64),
            "run on what check refuses:\n{yaml}\n{stderr}"
        );
    }
    std::fs::write(
        &path,
        format!(
            "{}{}",
            listener(&cert, &key),
            stream(&ca_file(&ca, dir.path()))
        ),
    )
    .unwrap();
    let (code, stderr) = pushbridge("check", &path);
    assert_eq!(code, Some(0), "{stderr}");
}

fn ca_file(ca: &support::certs::TestCa, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.ca_pem()).unwrap();
    path
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

/// Issue 19 item 6: the demo's own defaults fit the open-file limit (no start-up WARN about it), even at 1024.
#[test]
fn demo_under_a_low_open_file_limit_starts_without_a_warning() {
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 1024 && exec \"$0\" demo --https-port 0 --http-port 0 --admin-port 0",
            BIN,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The URLs are printed once the listeners are up, after the start-up checks.
    let started = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(20)).ok())
        .any(|line| line.contains("page (HTTP):"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(started, "{stderr}");
    assert!(!stderr.contains("open-file limit"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
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

/// Issue 16 item 9b: a duration below its floor is refused by `check` with file, line, column and field.
#[test]
fn check_refuses_a_heartbeat_of_one_nanosecond() {
    let (code, stderr, file) = check_yaml(
        "listen:\n  - address: 127.0.0.1:0\nstreams:\n  - path: /e/{c}\n    upstream: { url: \"http://a/{c}\" }\n    heartbeat: 1ns\n",
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}:6:16: streams[0].heartbeat: must be at least 100ms"
        )),
        "{stderr}"
    );
}
