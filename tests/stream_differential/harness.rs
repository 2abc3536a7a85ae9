//! What every stream comparison shares: the real binary in front of the scripted apps, the node reader, the
//! comparison of each client's log with the reference, and the outcome table.

use std::net::SocketAddr;
use std::time::Duration;

use super::apps::Apps;
use super::clients::{ClientLog, Transport};
use super::node::Node;
use super::normalize::{self, Expected, IdRule};
use super::support::binary::{self, Binary};

/// `limits.max_event_bytes` of the binary; the corpus' big events are four times over it, the others far below.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;
/// How long one client or reader may take to see a scenario through.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

pub struct Env {
    _binary: Binary,
    /// The streams (`route channel=…`) whose upstream logged "Upstream connected", in order.
    connected: tokio::sync::watch::Sender<Vec<String>>,
    pub addr: SocketAddr,
    pub apps: Apps,
    pub node: Node,
    _dir: tempfile::TempDir,
}

impl Env {
    /// The apps, the node reader and the binary with `streams` (YAML list items; `{http}` and `{ws}` stand for the
    /// apps' addresses, `{{channel}}` for the route parameter).
    pub async fn start(streams: &str) -> Env {
        let apps = Apps::start().await;
        let node = Node::start().await;
        let streams = streams
            .replace("{http}", &apps.http.to_string())
            .replace("{ws}", &apps.ws.to_string());
        let yaml = format!(
            r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
limits: {{ max_event_bytes: {MAX_EVENT_BYTES}, max_streams: 100000 }}
streams:
{streams}
"#
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut binary = binary::start(dir.path(), &yaml, 1, true);
        let connected = tokio::sync::watch::Sender::new(Vec::new());
        let log = std::mem::replace(&mut binary.log, std::sync::mpsc::channel().1);
        let seen = connected.clone();
        std::thread::spawn(move || {
            for line in log {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let fields = &value["fields"];
                if fields["message"] == "Upstream connected"
                    && let Some(stream) = fields["stream"].as_str()
                {
                    seen.send_modify(|streams| streams.push(stream.to_owned()));
                }
            }
        });
        Env {
            connected,
            addr: binary.listen[0],
            _binary: binary,
            apps,
            node,
            _dir: dir,
        }
    }
}

impl Env {
    /// Ends the node reader gracefully (Chromium's processes are reaped); dropping the `Env` kills everything.
    pub async fn close(self) {
        self.node.close().await;
    }

    /// Waits until the upstream of the stream `route channel=<channel>` logged that it is connected (for Redis:
    /// its start position is taken); false after [`READ_LIMIT`].
    pub async fn upstream_connected(&self, route: &str, channel: &str) -> bool {
        let key = format!("{route} channel={channel}");
        let mut rx = self.connected.subscribe();
        matches!(
            tokio::time::timeout(READ_LIMIT, rx.wait_for(|streams| streams.contains(&key))).await,
            Ok(Ok(_))
        )
    }
}

/// One stream route in the binary's config: `path`, the upstream mapping lines (indented by 6), and a short
/// reconnect so the scenarios that close their connection continue at once; a stream without clients closes its
/// upstream after 2 s (the parallel run opens thousands).
pub fn route(path: &str, upstream: &str) -> String {
    format!(
        "  - path: {path}\n    upstream:\n{upstream}      reconnect: {{ initial: 10ms, max: 100ms }}\n    idle_timeout: 2s\n"
    )
}

/// The result of one (scenario, transport) comparison.
#[derive(Debug)]
pub struct Outcome {
    pub kind: &'static str,
    pub case: String,
    pub transport: &'static str,
    pub reference: &'static str,
    /// Why the case is expected to differ (issue 15 items), if it is.
    pub known: Option<&'static str>,
    /// Events in the reference (after the removals).
    pub events: usize,
    pub difference: Option<String>,
}

/// Compares a client's log with the reference, after the removals of [`normalize`].
#[allow(clippy::too_many_arguments)]
pub fn judge(
    kind: &'static str,
    case: &str,
    known: Option<&'static str>,
    reference: &'static str,
    rule: IdRule,
    expected: &[Expected],
    transport: Transport,
    log: ClientLog,
) -> Outcome {
    let expected = if transport == Transport::Sse {
        normalize::over_sse(expected)
    } else {
        expected.to_vec()
    };
    let mut notes = Vec::new();
    if !log.complete {
        notes.push("the end event never came".to_owned());
    }
    if log.gaps > 0 {
        notes.push(format!("{} gap notice(s) removed", log.gaps));
    }
    if !log.errors.is_empty() {
        notes.push(format!("errors: {:?}", log.errors));
    }
    let mut difference = normalize::compare(rule, &expected, &log.events);
    if difference.is_some() || !log.complete {
        let text = difference.take().unwrap_or_else(|| "events equal".into());
        difference = Some(if notes.is_empty() {
            text
        } else {
            format!("{text}\n      ({})", notes.join("; "))
        });
    }
    Outcome {
        kind,
        case: case.to_owned(),
        transport: transport.name(),
        reference,
        known,
        events: expected.len(),
        difference,
    }
}

/// An outcome for a case whose reference (or a client) could not even be set up.
pub fn failed(
    kind: &'static str,
    case: &str,
    known: Option<&'static str>,
    transport: &'static str,
    why: String,
) -> Outcome {
    Outcome {
        kind,
        case: case.to_owned(),
        transport,
        reference: "-",
        known,
        events: 0,
        difference: Some(why),
    }
}

/// Prints every outcome; returns the differences of the cases not expected to differ (`strict`: of all cases).
pub fn report(title: &str, outcomes: &[Outcome], strict: bool) -> Vec<String> {
    println!("removed before comparing (normalize::REMOVED):");
    for (what, source) in normalize::REMOVED {
        println!("  - {what} [{source}]");
    }
    let same = outcomes.iter().filter(|o| o.difference.is_none()).count();
    println!(
        "{title}: {same} of {} comparisons equal (after the removals of normalize::REMOVED)",
        outcomes.len()
    );
    let mut unexpected = Vec::new();
    for o in outcomes {
        let status = match (&o.difference, o.known) {
            (None, _) => "same".to_owned(),
            (Some(_), Some(why)) => format!("DIFFERS (known: {why})"),
            (Some(_), None) => "DIFFERS".to_owned(),
        };
        println!(
            "  {:<7} {:<28} {:<18} vs {:<18} {:>3} events  {status}",
            o.kind, o.case, o.transport, o.reference, o.events
        );
        if let Some(diff) = &o.difference {
            println!("      {diff}");
            if strict || o.known.is_none() {
                unexpected.push(format!(
                    "{} {} via {} vs {}: {diff}",
                    o.kind, o.case, o.transport, o.reference
                ));
            }
        }
    }
    unexpected
}
