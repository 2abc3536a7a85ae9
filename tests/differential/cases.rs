//! The differential suite's tables and runner: the applications (with what each can do), the scenarios (a request,
//! the clients that send it, what the application must be able to do), and the comparison of one run directly with
//! one run through pushbridge after [`normalise`], with a readable diff when they differ.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::clients::{self, Client, Drivers, Endpoint, Request};
use crate::normalise::{self, normalise};
use crate::peers::Pushbridge;

/// What an application can do (py_apps.py's endpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Can {
    /// The JSON echo.
    Echo,
    /// `…/reject`: 413 without reading the body.
    Reject,
    /// `…/status/NNN` (204, 304, 404 at least).
    Status,
    /// `…/bytes/N`.
    Bytes,
    /// `…/reason/status/NNN`: its own reason phrase, reached over HTTP/1.1 (P3: an HTTP/2 application has none).
    Reason,
    /// `…/trailers` with a response trailer.
    Trailers,
    /// `…/hints`: 103 Early Hints.
    Hints,
    /// 103 Early Hints over HTTP/2 only (hypercorn).
    HintsH2,
    /// Response trailers over HTTP/2 only (hypercorn).
    TrailersH2,
    /// `…/ws`: the WebSocket echo.
    Ws,
    /// The WebSocket echo with a 1 MiB message limit, like the suite's `websocket.max_message`.
    WsLimit,
    /// Requests pushbridge refuses itself (one application stands for all).
    Refusals,
    /// grpc_peer.py.
    Grpc,
}

/// An application under test.
pub struct App {
    pub name: &'static str,
    /// The pass-through route prefix (also the path prefix of every request, directly too).
    pub prefix: String,
    /// Its HTTP/1.1 port, for HTTP/1.1 clients and Chromium (for an h2c-only server, the same application's
    /// HTTP/1.1 twin).
    pub h1: Option<u16>,
    /// Its h2c port, for HTTP/2 clients.
    pub h2c: Option<u16>,
    /// How pushbridge reaches it: (port, h2c).
    pub upstream: (u16, bool),
    pub can: &'static [Can],
}

/// One scenario: a request, its clients, what the application must do.
pub struct Scenario {
    pub name: &'static str,
    pub clients: &'static [Client],
    pub needs: Can,
    /// Runs each way (for answers that vary from run to run).
    pub repeat: usize,
    /// pushbridge answers it itself with this status (P6 of docs/protocol.md): not compared with the application.
    pub refused: Option<u16>,
    pub request: fn(&str) -> Request,
}

/// One (application, client, scenario) case and how it went.
pub struct Outcome {
    pub id: String,
    pub diff: Option<String>,
}

/// Runs every scenario each application can take, with each of its clients, directly and through pushbridge.
pub async fn run(
    apps: &[App],
    scenarios: &[Scenario],
    pb: &Pushbridge,
    drivers: &mut Drivers,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for app in apps {
        for scenario in scenarios.iter().filter(|s| app.can.contains(&s.needs)) {
            for &client in scenario.clients {
                let Some(direct) = direct_endpoint(app, client) else {
                    continue;
                };
                let through = through_endpoint(pb, client);
                let id = format!("{}/{}/{}", app.name, client.name(), scenario.name);
                let request = (scenario.request)(&app.prefix);
                let dump = std::env::var("PUSHBRIDGE_DIFF_DUMP").is_ok_and(|d| id.contains(&d));
                let diff = case(
                    drivers, scenario, client, &request, &direct, &through, app, dump,
                )
                .await;
                outcomes.push(Outcome { id, diff });
            }
        }
    }
    outcomes
}

/// The application as `client` reaches it directly: over HTTP/2 (h2c) when both can, else HTTP/1.1; `None` when
/// it cannot.
fn direct_endpoint(app: &App, client: Client) -> Option<Endpoint> {
    // HTTP/2 where pushbridge speaks it to the application too (the application as deployed; browsers speak no h2c).
    let browser = matches!(client, Client::ChromiumH1 | Client::ChromiumH2);
    let (port, h2c) = match (
        client.http2() && !browser && app.upstream.1,
        app.h2c,
        app.h1,
    ) {
        (true, Some(port), _) => (port, true),
        (_, _, Some(port)) => (port, false),
        _ => return None,
    };
    Some(Endpoint {
        addr: ([127, 0, 0, 1], port).into(),
        tls: None,
        h2c,
    })
}

fn through_endpoint(pb: &Pushbridge, client: Client) -> Endpoint {
    if client.tls() {
        Endpoint {
            addr: pb.tls,
            tls: Some(pb.ca_file.clone()),
            h2c: false,
        }
    } else {
        Endpoint {
            addr: pb.plain,
            tls: None,
            h2c: client.http2(),
        }
    }
}

/// Runs one case; `Some(diff)` when the two sides differ.
#[allow(clippy::too_many_arguments)] // one case's parts, each used once
async fn case(
    drivers: &mut Drivers,
    scenario: &Scenario,
    client: Client,
    request: &Request,
    direct: &Endpoint,
    through: &Endpoint,
    app: &App,
    dump: bool,
) -> Option<String> {
    let mut seen_through = Vec::new();
    for _ in 0..scenario.repeat.max(1) {
        let mut obs = clients::run(drivers, client, through, request).await;
        if dump {
            println!("through pushbridge {through:?}: {obs:#}");
        }
        // The application's own addresses (an HTTP/2 one may report the `:authority` it got as `host`).
        for port in [Some(app.upstream.0), app.h1, app.h2c]
            .into_iter()
            .flatten()
        {
            normalise::host_added(&mut obs, &format!("127.0.0.1:{port}"));
        }
        normalise::request_trailers(&mut obs, app.upstream.1);
        normalise(&mut obs, &through.authority());
        seen_through.push(obs);
    }
    if let Some(status) = scenario.refused {
        // P6: pushbridge's own answer; the application is not asked.
        let expected: Vec<Value> = seen_through
            .iter()
            .map(|_| json!({ "status": status, "app": null }))
            .collect();
        let got: Vec<Value> = seen_through
            .iter()
            .map(|o| json!({ "status": o["status"], "app": o["app"] }))
            .collect();
        return (expected != got).then(|| render_diff(&json!(expected), &json!(got)));
    }
    let mut seen_direct = Vec::new();
    for _ in 0..scenario.repeat.max(1) {
        let mut obs = clients::run(drivers, client, direct, request).await;
        if dump {
            println!("directly {direct:?}: {obs:#}");
        }
        normalise::request_trailers(&mut obs, app.upstream.1);
        normalise(&mut obs, &direct.authority());
        seen_direct.push(obs);
    }
    let (direct, through) = if scenario.repeat > 1 {
        (json!(seen_direct), json!(seen_through))
    } else {
        (seen_direct.remove(0), seen_through.remove(0))
    };
    (direct != through).then(|| render_diff(&direct, &through))
}

/// A line diff of the two pretty-printed observations: `-` only directly, `+` only through pushbridge.
pub fn render_diff(direct: &Value, through: &Value) -> String {
    let a: Vec<String> = pretty(direct);
    let b: Vec<String> = pretty(through);
    // Longest common subsequence over lines (the observations are small).
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::from("    (- directly, + through pushbridge)\n");
    let (mut i, mut j, mut shown) = (0, 0, 0);
    while (i < a.len() || j < b.len()) && shown < 60 {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "    + {}", b[j]);
            j += 1;
            shown += 1;
        } else {
            let _ = writeln!(out, "    - {}", a[i]);
            i += 1;
            shown += 1;
        }
    }
    if shown >= 60 {
        out.push_str("    … (diff cut at 60 lines)\n");
    }
    out
}

/// One line per leaf, named by its path; a field list (`[[name, value], …]`) is one line per field, so a diff
/// names the field that differs. Long strings are cut (bodies are compared whole).
fn pretty(value: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    flatten(value, "", &mut lines);
    lines
}

fn flatten(value: &Value, path: &str, lines: &mut Vec<String>) {
    let is_pair = |v: &Value| {
        v.as_array()
            .is_some_and(|p| p.len() == 2 && p[0].is_string() && p[1].is_string())
    };
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(item, &path, lines);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(is_pair) => {
            for item in items {
                lines.push(cut(format!(
                    "{path}: {}: {}",
                    item[0].as_str().unwrap_or(""),
                    item[1].as_str().unwrap_or("")
                )));
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                lines.push(format!("{path} = []"));
            }
            for (i, item) in items.iter().enumerate() {
                flatten(item, &format!("{path}[{i}]"), lines);
            }
        }
        scalar => lines.push(cut(format!("{path} = {scalar}"))),
    }
}

fn cut(line: String) -> String {
    if line.len() <= 200 {
        return line;
    }
    let at = (0..=200)
        .rev()
        .find(|&i| line.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &line[..at])
}

/// A known difference: `pattern` is `app/client/scenario` with `*` for any one part.
pub struct Known {
    pub pattern: &'static str,
    pub why: &'static str,
}

pub fn known<'a>(list: &'a [Known], id: &str) -> Option<&'a Known> {
    list.iter().find(|k| {
        let parts: Vec<&str> = id.split('/').collect();
        let pattern: Vec<&str> = k.pattern.split('/').collect();
        parts.len() == pattern.len()
            && parts
                .iter()
                .zip(&pattern)
                .all(|(part, want)| *want == "*" || part == want)
    })
}

/// Prints every outcome; fails naming the cases that differ and are in neither list. A case in `third_party`
/// (a third-party defect, named) prints as `KNOWN`, unless `strict`; one in `findings` (differences found by
/// this suite, reported to the lead) as `FINDING`. A listed case that is the same says so.
pub fn report(
    group: &str,
    outcomes: &[Outcome],
    third_party: &[Known],
    findings: &[Known],
    strict: bool,
) -> Result<(), String> {
    let mut failures = String::new();
    let mut lines = String::new();
    let (mut same, mut forgiven) = (0, 0);
    for outcome in outcomes {
        let listed = known(third_party, &outcome.id)
            .filter(|_| !strict)
            .map(|k| ("KNOWN  ", k))
            .or_else(|| known(findings, &outcome.id).map(|k| ("FINDING", k)));
        match (&outcome.diff, listed) {
            (None, None) => {
                same += 1;
                let _ = writeln!(lines, "  same     {}", outcome.id);
            }
            (None, Some((_, k))) => {
                same += 1;
                // A pattern with `*` covers cases the defect does not touch; an exact one should go.
                let note = if k.pattern.contains('*') {
                    format!("covered by {:?}", k.pattern)
                } else {
                    "listed, but the same now: take it off the list".to_owned()
                };
                let _ = writeln!(lines, "  same     {}   ({note})", outcome.id);
            }
            (Some(diff), Some((label, k))) => {
                forgiven += 1;
                let _ = writeln!(lines, "  {label}  {}   ({})\n{diff}", outcome.id, k.why);
            }
            (Some(diff), None) => {
                let _ = writeln!(lines, "  DIFFERS  {}\n{diff}", outcome.id);
                let _ = writeln!(failures, "{}", outcome.id);
            }
        }
    }
    let differing = failures.lines().count();
    println!(
        "differential {group}: {} cases, {same} the same, {forgiven} listed (KNOWN/FINDING), {differing} differing\n{lines}",
        outcomes.len()
    );
    if differing == 0 {
        Ok(())
    } else {
        Err(format!(
            "{group}: {differing} case(s) differ directly vs through pushbridge (diffs above):\n{failures}"
        ))
    }
}
