//! Issue 16, item 4, on the real binary: a client's control characters never reach the text log raw. A channel
//! carrying CR LF, a forged record and a terminal escape (`%0D%0A…%1B[2J`) is logged escaped, inside its own
//! record: the output has one line per record, none of them forged, and no raw CR or ESC.

mod support;

use support::binary;
use support::client::{Proto, WAIT, connect};
use support::upstream::SseUpstream;

/// A channel that, written raw, would end the record, forge an ERROR record and clear the terminal.
const CHANNEL: &str = "x%0D%0A2099-01-01T00:00:00.000000Z%20ERROR%20forged%1B%5B2J";

/// Whether `line` starts as a record of the text format does: `YYYY-MM-DDTHH:MM:SS`.
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && (b[4], b[7], b[10], b[13], b[16]) == (b'-', b'-', b'T', b':', b':')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_channel_are_escaped_in_text_logs() {
    let upstream = SseUpstream::start(true).await;
    let yaml = format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
log: {{ format: text }}
streams:
  - name: events
    path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
"#,
        upstream.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let mut bin = binary::start(dir.path(), &yaml, 1, false);
    let addr = bin.listen[0];

    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, &format!("/events/{CHANNEL}"), None)
        .await;
    upstream.wait_connections(1).await;
    upstream.publish("hello");
    assert_eq!(client.next_event().await.unwrap().data, "hello");
    // The stream's connect line names the channel; then the whole output.
    let connected = tokio::task::block_in_place(|| bin.wait_log("Upstream connected", WAIT));
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    let mut lines = bin.startup.clone();
    lines.push(connected.clone());
    lines.extend(tokio::task::block_in_place(|| bin.drain_log()));

    assert!(
        connected.contains(r"channel=x\r\n2099-01-01T00:00:00.000000Z ERROR forged\x1b[2J"),
        "the channel, escaped, in its record: {connected:?}"
    );
    for line in &lines {
        assert!(
            !line.contains(['\r', '\x1b']),
            "a raw CR or ESC in the log: {line:?}"
        );
        assert!(
            starts_with_timestamp(line) && !line.starts_with("2099"),
            "a line that is not a record of its own: {line:?}\nall: {lines:#?}"
        );
    }
}
