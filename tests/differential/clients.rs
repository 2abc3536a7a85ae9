//! The differential suite's clients, each run against an endpoint (the application directly, or pushbridge) and
//! turned into one observation (JSON): what the client received — `status`, `informational` (1xx: status and
//! fields), `headers`, `body`, `trailers`, for WebSockets `subprotocol`, `messages`, `close` — and `app`, what the
//! application said it received (the echo body, or a WebSocket's first message), or `error`.
//! curl and the raw HTTP/1.1 client run from here; httpx, Python `websockets`, Chromium and grpcio through their
//! drivers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::timeout;

use crate::peers::{DIR, Driver, python};

/// Bound on one client run.
const RUN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    CurlH1,
    /// HTTP/2 over TLS to pushbridge (directly: h2c where the application speaks it, else HTTP/1.1).
    CurlH2Tls,
    /// HTTP/2 with prior knowledge (directly: the same where the application speaks it, else HTTP/1.1).
    CurlH2c,
    HttpxH1,
    HttpxH2Tls,
    /// Bytes written by hand over HTTP/1.1 (what curl and httpx would not send).
    Raw,
    /// Python `websockets`, HTTP/1.1.
    PyWs,
    /// Chromium over http:// (HTTP/1.1), directly and to pushbridge.
    ChromiumH1,
    /// Chromium over https:// to pushbridge (ALPN h2; WebSocket by RFC 8441), http:// directly.
    ChromiumH2,
    /// grpcio over TLS to pushbridge, h2c directly.
    GrpcTls,
    /// grpcio over h2c, both ways.
    GrpcH2c,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::CurlH1 => "curl-h1",
            Client::CurlH2Tls => "curl-h2-tls",
            Client::CurlH2c => "curl-h2c",
            Client::HttpxH1 => "httpx-h1",
            Client::HttpxH2Tls => "httpx-h2-tls",
            Client::Raw => "raw-h1",
            Client::PyWs => "py-websockets",
            Client::ChromiumH1 => "chromium-h1",
            Client::ChromiumH2 => "chromium-h2",
            Client::GrpcTls => "grpcio-tls",
            Client::GrpcH2c => "grpcio-h2c",
        }
    }

    /// Speaks HTTP/2 when it can.
    pub fn http2(self) -> bool {
        matches!(
            self,
            Client::CurlH2Tls
                | Client::CurlH2c
                | Client::HttpxH2Tls
                | Client::ChromiumH2
                | Client::GrpcTls
                | Client::GrpcH2c
        )
    }

    /// Reaches pushbridge over TLS.
    pub fn tls(self) -> bool {
        matches!(
            self,
            Client::CurlH2Tls | Client::HttpxH2Tls | Client::ChromiumH2 | Client::GrpcTls
        )
    }
}

/// Where a run goes.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// https:// (pushbridge's TLS listener, trusting `ca`).
    pub tls: Option<PathBuf>,
    /// HTTP/2 without TLS (prior knowledge); else HTTP/1.1 without TLS.
    pub h2c: bool,
}

impl Endpoint {
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    fn base(&self, ws: bool) -> String {
        let scheme = match (ws, self.tls.is_some()) {
            (false, false) => "http",
            (false, true) => "https",
            (true, false) => "ws",
            (true, true) => "wss",
        };
        format!("{scheme}://{}", self.addr)
    }
}

/// One request of a scenario.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: &'static str,
    /// Path and query, exactly as sent.
    pub target: String,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body_len: usize,
    /// The raw client's bytes, `{host}` standing for the endpoint's authority (else built from the fields above).
    pub raw: Option<String>,
    /// A second raw request, on a new connection after the first answer; the observation is of its answer.
    pub raw_then: Option<String>,
    /// WebSocket steps (client_driver.py's "ws" op).
    pub ws_steps: Option<Value>,
    /// Compare the HTTP/1.1 reason phrase (curl over HTTP/1.1 and the raw client only).
    pub reason: bool,
    /// Chromium: cookies set for the URL before loading it.
    pub cookies: &'static [(&'static str, &'static str)],
}

/// The shared drivers of one test.
pub struct Drivers {
    pub python: Option<Driver>,
    pub chromium: Option<Driver>,
    pub work: tempfile::TempDir,
}

impl Drivers {
    pub fn new() -> Drivers {
        Drivers {
            python: None,
            chromium: None,
            work: tempfile::tempdir().unwrap(),
        }
    }

    async fn python(&mut self) -> &mut Driver {
        if self.python.is_none() {
            self.python = Some(Driver::python().await);
        }
        self.python.as_mut().unwrap()
    }

    async fn chromium(&mut self) -> &mut Driver {
        if self.chromium.is_none() {
            self.chromium = Some(Driver::chromium().await);
        }
        self.chromium.as_mut().unwrap()
    }

    /// A file holding the request body of `len` bytes ((i * 7) % 256, as client_driver.py makes it).
    fn body_file(&self, len: usize) -> PathBuf {
        let path = self.work.path().join(format!("body-{len}"));
        if !path.exists() {
            let bytes: Vec<u8> = (0..len).map(|i| ((i * 7) % 256) as u8).collect();
            std::fs::write(&path, bytes).unwrap();
        }
        path
    }
}

/// Runs `client` once against `endpoint`; never panics on what the peers do (failures are observations).
pub async fn run(
    drivers: &mut Drivers,
    client: Client,
    endpoint: &Endpoint,
    req: &Request,
) -> Value {
    let run = async {
        match client {
            Client::CurlH1 | Client::CurlH2Tls | Client::CurlH2c => {
                curl(drivers, endpoint, req).await
            }
            Client::HttpxH1 | Client::HttpxH2Tls => httpx(drivers, client, endpoint, req).await,
            Client::Raw => match &req.raw_then {
                None => raw(endpoint, req).await,
                Some(then) => {
                    let _ = raw(endpoint, req).await;
                    let second = Request {
                        raw: Some(then.clone()),
                        ..Request::default()
                    };
                    raw(endpoint, &second).await
                }
            },
            Client::PyWs => py_ws(drivers, endpoint, req).await,
            Client::ChromiumH1 | Client::ChromiumH2 => chromium(drivers, endpoint, req).await,
            Client::GrpcTls | Client::GrpcH2c => grpc(endpoint).await,
        }
    };
    let mut obs = timeout(RUN, run)
        .await
        .unwrap_or_else(|_| json!({ "error": format!("no result within {RUN:?}") }));
    // A reason phrase is only compared where the client speaks HTTP/1.1 both ways.
    if !(req.reason && matches!(client, Client::CurlH1 | Client::Raw))
        && let Some(map) = obs.as_object_mut()
    {
        map.remove("reason");
    }
    obs
}

type Fields = Vec<(String, String)>;

fn fields_json(fields: &Fields) -> Value {
    Value::Array(fields.iter().map(|(n, v)| json!([n, v])).collect())
}

/// The observation of an HTTP exchange; an echo body becomes `app`.
fn http_observation(
    informational: Vec<(u16, Fields)>,
    status: Option<u16>,
    headers: &Fields,
    body: &[u8],
    trailers: &Fields,
) -> Value {
    let echo = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.get("echo").is_some());
    let body_value = match &echo {
        Some(_) => json!("<echo: see app>"),
        None => body_summary(body),
    };
    json!({
        "status": status,
        "informational": informational.iter().map(|(s, f)| json!([s, fields_json(f)])).collect::<Vec<_>>(),
        "headers": fields_json(headers),
        "body": body_value,
        "trailers": fields_json(trailers),
        "app": echo,
    })
}

/// A body as text when short and UTF-8, else its length and FNV-1a digest.
fn body_summary(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(text) if body.len() <= 256 => json!(text),
        _ => {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for b in body {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            json!({ "len": body.len(), "fnv1a64": format!("{hash:016x}") })
        }
    }
}

async fn curl(drivers: &Drivers, endpoint: &Endpoint, req: &Request) -> Value {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let head_file = drivers.work.path().join(format!("head-{seq}"));
    let body_file = drivers.work.path().join(format!("out-{seq}"));
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--path-as-is", "--max-time", "20", "-D"])
        .arg(&head_file)
        .arg("-o")
        // `--head` writes the head to the output too.
        .arg(if req.method == "HEAD" {
            Path::new("/dev/null")
        } else {
            body_file.as_path()
        });
    match (&endpoint.tls, endpoint.h2c) {
        (Some(ca), _) => {
            command.arg("--http2").arg("--cacert").arg(ca);
        }
        (None, true) => {
            command.arg("--http2-prior-knowledge");
        }
        (None, false) => {
            command.arg("--http1.1");
        }
    }
    if req.method == "HEAD" {
        command.arg("--head");
    } else {
        command.args(["-X", req.method]);
    }
    for (name, value) in &req.headers {
        let header = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}: {value}")
        };
        command.arg("-H").arg(header);
    }
    if req.body_len > 0 {
        command
            .arg("--data-binary")
            .arg(format!("@{}", drivers.body_file(req.body_len).display()));
    }
    command.arg(format!("{}{}", endpoint.base(false), req.target));
    let output = match command.kill_on_drop(true).output().await {
        Ok(output) => output,
        Err(e) => return json!({ "error": format!("curl did not run: {e}") }),
    };
    let head = std::fs::read(&head_file).unwrap_or_default();
    let body = std::fs::read(&body_file).unwrap_or_default();
    let _ = std::fs::remove_file(&head_file);
    let _ = std::fs::remove_file(&body_file);
    let dump = String::from_utf8_lossy(&head);
    let (informational, status, headers, trailers) = parse_dump(&dump);
    let mut obs = http_observation(informational, status, &headers, &body, &trailers);
    obs["reason"] = json!(final_reason(&dump));
    if status.is_none() {
        obs["error"] = json!(format!(
            "curl exit {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    obs
}

/// The reason phrase of the last HTTP/1.x status line of a dump.
fn final_reason(dump: &str) -> Option<String> {
    let line = dump.lines().rfind(|l| l.starts_with("HTTP/1."))?;
    Some(line.splitn(3, ' ').nth(2).unwrap_or("").trim().to_owned())
}

/// curl's `-D` dump: status blocks (1xx first), then the final response's fields, then trailer lines.
fn parse_dump(dump: &str) -> (Vec<(u16, Fields)>, Option<u16>, Fields, Fields) {
    let mut blocks: Vec<(u16, Fields)> = Vec::new();
    let mut trailers = Fields::new();
    let mut in_block = false;
    for line in dump.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with("HTTP/") {
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            blocks.push((status, Fields::new()));
            in_block = true;
        } else if line.is_empty() {
            in_block = false;
        } else if let Some((name, value)) = line.split_once(':') {
            let field = (name.to_owned(), value.trim().to_owned());
            match blocks.last_mut() {
                Some(block) if in_block => block.1.push(field),
                _ => trailers.push(field),
            }
        }
    }
    let last = blocks.pop();
    let status = last.as_ref().map(|b| b.0);
    let headers = last.map(|b| b.1).unwrap_or_default();
    (blocks, status, headers, trailers)
}

async fn httpx(drivers: &mut Drivers, client: Client, endpoint: &Endpoint, req: &Request) -> Value {
    let command = json!({
        "op": "httpx",
        "url": format!("{}{}", endpoint.base(false), req.target),
        "method": req.method,
        "headers": req.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "body_len": req.body_len,
        "http2": client == Client::HttpxH2Tls && (endpoint.tls.is_some() || endpoint.h2c),
        "ca": endpoint.tls.as_ref().map(|p| p.display().to_string()),
    });
    let answer = drivers.python().await.call(&command).await;
    if let Some(error) = answer.get("error") {
        return json!({ "error": error });
    }
    let headers = pairs(&answer["headers"]);
    let body = base64_decode(answer["body_b64"].as_str().unwrap_or(""));
    let status = answer["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok());
    http_observation(Vec::new(), status, &headers, &body, &Fields::new())
}

fn pairs(value: &Value) -> Fields {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
        .collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default()
}

/// The raw HTTP/1.1 client: writes the request, reads the answer to EOF (the request asks for `Connection: close`).
async fn raw(endpoint: &Endpoint, req: &Request) -> Value {
    let host = endpoint.authority();
    let bytes = match &req.raw {
        Some(raw) => raw.replace("{host}", &host).into_bytes(),
        None => {
            let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", req.method, req.target);
            for (name, value) in &req.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("Connection: close\r\n\r\n");
            head.into_bytes()
        }
    };
    let mut tcp = match TcpStream::connect(endpoint.addr).await {
        Ok(tcp) => tcp,
        Err(e) => return json!({ "error": format!("connect: {e}") }),
    };
    if let Err(e) = tcp.write_all(&bytes).await {
        return json!({ "error": format!("write: {e}") });
    }
    let mut answer = Vec::new();
    let read = timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    if answer.is_empty() {
        return json!({ "error": format!("no answer: {read:?}") });
    }
    parse_raw(&answer, req.method == "HEAD")
}

/// Parses HTTP/1.1 responses read to EOF: 1xx heads, the final head, the body (chunked with its trailers,
/// Content-Length, or to EOF).
fn parse_raw(mut data: &[u8], head_request: bool) -> Value {
    let mut informational = Vec::new();
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 100];
        let mut response = httparse::Response::new(&mut slots);
        let used = match response.parse(data) {
            Ok(httparse::Status::Complete(used)) => used,
            other => {
                return json!({ "error": format!("unparsable response ({other:?}): {:?}", String::from_utf8_lossy(data)) });
            }
        };
        let status = response.code.unwrap_or(0);
        let headers: Fields = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        data = &data[used..];
        if (100..200).contains(&status) && status != 101 {
            informational.push((status, headers));
            continue;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut trailers = Fields::new();
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            dechunk(data, &mut trailers)
        } else if let Some(len) =
            find("content-length").and_then(|v| v.trim().parse::<usize>().ok())
        {
            data[..len.min(data.len())].to_vec()
        } else {
            data.to_vec()
        };
        let mut obs = http_observation(informational, Some(status), &headers, &body, &trailers);
        obs["reason"] = json!(response.reason);
        return obs;
    }
}

fn dechunk(mut data: &[u8], trailers: &mut Fields) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16);
        data = &data[end + 2..];
        match size {
            Ok(0) => break,
            Ok(size) if data.len() >= size + 2 => {
                body.extend_from_slice(&data[..size]);
                data = &data[size + 2..];
            }
            _ => return body,
        }
    }
    for line in String::from_utf8_lossy(data).split("\r\n") {
        if let Some((name, value)) = line.split_once(':') {
            trailers.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    body
}

/// Moves a WebSocket's first message (the application's account of the handshake) to `app`.
fn ws_observation(mut answer: Value) -> Value {
    if let Some(messages) = answer["messages"].as_array_mut()
        && !messages.is_empty()
    {
        let first = messages.remove(0);
        answer["app"] = first["text"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(first);
    }
    answer
}

async fn py_ws(drivers: &mut Drivers, endpoint: &Endpoint, req: &Request) -> Value {
    let command = json!({
        "op": "ws",
        "url": format!("{}{}", endpoint.base(true), req.target),
        "headers": req.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "subprotocols": ["chat", "superchat"],
        "steps": req.ws_steps.clone().unwrap_or(json!([])),
    });
    let answer = drivers.python().await.call(&command).await;
    ws_observation(answer)
}

async fn chromium(drivers: &mut Drivers, endpoint: &Endpoint, req: &Request) -> Value {
    let url = format!("{}{}", endpoint.base(false), req.target);
    let command = match &req.ws_steps {
        Some(steps) => json!({
            "op": "ws",
            "page": format!("{}{}", endpoint.base(false), req.target.replace("/ws", "/page/echo")),
            "url": format!("{}{}", endpoint.base(true), req.target),
            "steps": steps,
        }),
        None => json!({
            "op": "cookies",
            "url": url,
            "cookies": req.cookies.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        }),
    };
    let mut answer = drivers.chromium().await.call(&command).await;
    if req.ws_steps.is_some() {
        return ws_observation(answer);
    }
    let body = answer["body"].take();
    let app = body
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .filter(|v| v.get("echo").is_some());
    json!({
        "status": answer["status"],
        "protocol": answer["protocol"],
        "body": if app.is_some() { json!("<echo: see app>") } else { body },
        "app": app,
        "error": answer.get("error"),
    })
}

async fn grpc(endpoint: &Endpoint) -> Value {
    let ca = endpoint
        .tls
        .as_ref()
        .map_or("-".to_owned(), |p| p.display().to_string());
    let output = Command::new(python())
        .arg(Path::new(DIR).join("grpc_peer.py"))
        .arg("client")
        .arg(endpoint.authority())
        .arg(ca)
        .kill_on_drop(true)
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(e) => return json!({ "error": format!("grpc_peer.py did not run: {e}") }),
    };
    let Ok(mut answer) = serde_json::from_slice::<Value>(&output.stdout) else {
        return json!({ "error": format!("grpc_peer.py client failed: {}", String::from_utf8_lossy(&output.stderr)) });
    };
    // Meta's reply is the request metadata the server saw: the application's view.
    let meta = answer["meta"]["replies"][0]
        .as_str()
        .and_then(|t| serde_json::from_str::<Value>(t).ok());
    if let Some(headers) = meta {
        answer["meta"]["replies"] = json!("<see app>");
        answer["app"] = json!({ "headers": headers });
    }
    answer
}
