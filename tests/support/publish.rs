//! Publishing with `curl` (the client applications use): a POST to the publish listener, the answer's status,
//! headers and JSON body.

use std::net::SocketAddr;

use super::binary::{self, Binary};

/// An answer of the publish API.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Lower-cased `name: value` header lines.
    pub headers: Vec<String>,
    pub json: serde_json::Value,
}

impl Answer {
    /// The `ids` of a 200.
    pub fn ids(&self) -> Vec<String> {
        self.json["ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no ids in {self:?}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}

/// `curl -X METHOD` of `path` with `headers` and `body` (sent as given).
pub async fn curl_method(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Answer {
    curl_url(&format!("http://{addr}{path}"), &[], method, headers, body).await
}

/// `curl -X METHOD` of `url` with `extra` arguments (e.g. `--cacert`), `headers` and `body`.
pub async fn curl_url(
    url: &str,
    extra: &[&str],
    method: &str,
    headers: &[&str],
    body: &[u8],
) -> Answer {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-sS", "-D", "-", "-o", "-", "-X", method])
        .args(extra)
        .arg(url);
    for header in headers {
        command.args(["-H", header]);
    }
    if !body.is_empty() {
        command.args(["--data-binary", "@-"]);
    }
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().expect("curl");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body).await.unwrap();
    }
    let output = tokio::time::timeout(super::client::WAIT, child.wait_with_output())
        .await
        .expect("curl in time")
        .expect("curl output");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // No answer at all (e.g. plaintext to a TLS listener): status 0.
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("HTTP/1.1 000", ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            format!("{}: {}", name.to_ascii_lowercase(), value.trim())
        })
        .collect();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

/// `curl -X POST`.
pub async fn curl(addr: SocketAddr, path: &str, headers: &[&str], body: &[u8]) -> Answer {
    curl_method(addr, "POST", path, headers, body).await
}

/// The publish token of [`config`].
pub const TOKEN: &str = "t0ken-Secret-42";

/// A config with a publish listener, a `kind: publish` route `/events/{channel}` and `extra` appended.
pub fn config(extra: &str) -> String {
    format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
publish:
  address: "127.0.0.1:0"
  token: {TOKEN}
  max_body: 4KiB
limits: {{ max_event_bytes: 1KiB }}
streams:
  - path: /events/{{channel}}
    upstream: {{ kind: publish }}
  - path: /feed
    upstream: {{ url: "http://127.0.0.1:9/feed" }}
{extra}"#
    )
}

/// Starts the binary with [`config`]: it, its client listener and its publish listener.
pub fn start(dir: &tempfile::TempDir) -> (Binary, SocketAddr, SocketAddr) {
    let binary = binary::start(dir.path(), &config(""), 1, true);
    let (addr, publish) = (binary.listen[0], binary.publish.expect("publish listener"));
    (binary, addr, publish)
}

/// The `Authorization` header of [`TOKEN`].
pub const AUTH: &str = "Authorization: Bearer t0ken-Secret-42";
