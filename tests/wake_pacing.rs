//! `limits.wake_pacing` is deprecated (issue 17): a file that sets it still loads, with a warning naming the file,
//! line and column of the key, and the setting has no effect: events reach every subscriber at once, without the
//! pace it used to impose.

mod support;

use std::time::{Duration, Instant};

use support::client::{Proto, connect};

#[tokio::test]
async fn the_deprecated_key_loads_with_a_warning_and_paces_nothing() {
    // The old settings would hold every event after the first for 2 × 1s.
    let (upstream, dir, binary) = support::binary::with_sse_upstream(
        "limits: { wake_pacing: { from: 2, per_subscriber: 1s, max: 2s } }",
        &[],
    )
    .await;
    let config = dir.path().join("config.yaml");
    let line = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .position(|l| l.contains("wake_pacing"))
        .expect("the key is in the file")
        + 1;
    let needle = "limits.wake_pacing is deprecated";
    let warning = match binary.startup.iter().find(|l| l.contains(needle)) {
        Some(line) => line.clone(),
        None => binary.wait_log(needle, Duration::from_secs(10)),
    };
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(
        warning.contains(&format!("{}:{line}:", config.display())),
        "names file and line {line}: {warning}"
    );
    let addr = binary.listen[0];
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut sender = connect(addr, Proto::H1).await;
        clients.push(sender.sse(addr, "/events/x", None).await);
    }
    upstream.wait_connections(1).await;
    for data in ["a", "b", "c"] {
        let sent = Instant::now();
        upstream.publish(data);
        for client in &mut clients {
            assert_eq!(client.take(1).await[0].data, data);
        }
        // Paced, "b" and "c" would wait a second; a loaded CI machine still delivers well within half of that.
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "{data}: {:?}",
            sent.elapsed()
        );
    }
}

#[test]
fn check_prints_the_deprecation_and_accepts_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "listen:\n  - address: \"127.0.0.1:0\"\nlimits:\n  wake_pacing: { from: 2 }\nstreams: []\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pushbridge"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:3: limits.wake_pacing is deprecated",
            path.display()
        )),
        "{stderr}"
    );
}
