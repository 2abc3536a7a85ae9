//! gRPC through the pass-through: a real grpcio client (tests/support/grpc_client.py) calls pushbridge over TLS
//! (ALPN h2, the test CA), and pushbridge forwards by route prefix over h2c to a real grpcio server
//! (tests/support/grpc_app.py). Replies, streamed replies, `grpc-status` and trailing metadata must all arrive.
//! Needs Python 3 with `grpcio` (.ci/test installs it); `PUSHBRIDGE_SKIP_GRPC=1` skips with a printed line.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::certs::{KeyKind, TestCa, tls_listener};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support");
const PYTHON_WAIT: Duration = Duration::from_secs(30);

fn skipped() -> bool {
    let skip = std::env::var("PUSHBRIDGE_SKIP_GRPC").is_ok_and(|v| v == "1");
    if skip {
        println!(
            "skipped: PUSHBRIDGE_SKIP_GRPC=1 (the gRPC pass-through test needs python3 with grpcio)"
        );
    }
    skip
}

/// Starts the grpcio server; returns the process (killed on drop) and its port.
async fn grpc_app() -> (Child, u16) {
    let mut child = Command::new("python3")
        .arg(Path::new(SUPPORT).join("grpc_app.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (set PUSHBRIDGE_SKIP_GRPC=1 to skip this test)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PYTHON_WAIT, lines.next_line())
        .await
        .expect("grpc_app.py listening in time")
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "grpc_app.py exited without listening: is grpcio installed? (pip install grpcio)"
            )
        });
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from grpc_app.py: {line}"));
    (child, port)
}

/// Runs the grpcio client against `target` trusting `ca_file`; returns its JSON report.
async fn grpc_client(target: &str, ca_file: &Path) -> Value {
    let run = Command::new("python3")
        .arg(Path::new(SUPPORT).join("grpc_client.py"))
        .arg(target)
        .arg(ca_file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PYTHON_WAIT, run)
        .await
        .expect("grpc_client.py finished in time")
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "grpc_client.py failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "grpc_client.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_reaches_an_h2c_app_with_trailers() {
    if skipped() {
        return;
    }
    let (_app, port) = grpc_app().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    // The default upstream is closed: only the route can have answered.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        "listen:\n{}passthrough:\n  upstream: \"http://{closed}\"\n  routes:\n    - prefix: /test.Echo/\n      upstream: \"http://127.0.0.1:{port}\"\n      protocol: h2c\n",
        tls_listener(&cert, &key)
    );
    let proxy = support::proxy::start(&yaml).await;

    let got = grpc_client(&format!("127.0.0.1:{}", proxy.addr().port()), &ca_file).await;
    assert_eq!(
        got["echo"],
        json!({ "reply": "echo:hi", "code": "OK", "trailing": { "x-trail": "t1" } })
    );
    assert_eq!(
        got["fail"],
        json!({
            "code": "FAILED_PRECONDITION",
            "details": "refused on purpose",
            "trailing": { "x-reason": "nope" },
        })
    );
    assert_eq!(
        got["count"],
        json!({ "items": ["1", "2", "3"], "code": "OK" })
    );
}
