//! `kind: ws`, `ndjson` and `poll`: a scenario's messages put on each kind's wire (WebSocket messages, NDJSON lines,
//! poll answers), the reference — those bytes decoded by the test's own reading of the documented mapping
//! (docs/protocol.md "Upstream kinds", docs/config.md `upstream.map`) — and the run of one scenario through the
//! three client transports.

use std::sync::Arc;

use serde_json::Value;

use super::apps::{Conn, Expect, Step, Unexpected};
use super::clients::{Client, END, Transport};
use super::harness::{Env, MAX_EVENT_BYTES, Outcome, READ_LIMIT, failed, judge};
use super::normalize::{self, Expected, IdRule, RefItem};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ws,
    Ndjson,
    Poll,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ws => "ws",
            Kind::Ndjson => "ndjson",
            Kind::Poll => "poll",
        }
    }
}

/// How a route reads documents: `map { id: /id, event: /type, data: /data }` or none; resume position or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Mapped,
    Raw,
    /// Mapped, without `resume`.
    NoResume,
}

/// The binary's routes for the JSON kinds: `/<kind>[-raw|-noresume]/{channel}`.
pub fn routes() -> String {
    let mapped = "      map: { id: /id, event: /type, data: /data }\n";
    let poll = "      poll: { interval: 0s, events: /events, cursor: /cursor }\n";
    [
        (
            "/ws/{channel}",
            "ws",
            "ws://{ws}/ws/{channel}",
            format!("{mapped}      resume: {{ query: since }}\n"),
        ),
        (
            "/ws-raw/{channel}",
            "ws",
            "ws://{ws}/ws/{channel}",
            String::new(),
        ),
        (
            "/ws-noresume/{channel}",
            "ws",
            "ws://{ws}/ws/{channel}",
            mapped.to_owned(),
        ),
        (
            "/ndjson/{channel}",
            "ndjson",
            "http://{http}/nd/{channel}",
            format!("{mapped}      resume: {{ query: since }}\n"),
        ),
        (
            "/ndjson-raw/{channel}",
            "ndjson",
            "http://{http}/nd/{channel}",
            String::new(),
        ),
        (
            "/ndjson-noresume/{channel}",
            "ndjson",
            "http://{http}/nd/{channel}",
            mapped.to_owned(),
        ),
        (
            "/poll/{channel}",
            "poll",
            "http://{http}/poll/{channel}",
            format!("{mapped}{poll}      resume: {{ query: cursor }}\n"),
        ),
        (
            "/poll-raw/{channel}",
            "poll",
            "http://{http}/poll/{channel}",
            "      poll: { interval: 0s }\n".to_owned(),
        ),
    ]
    .iter()
    .map(|(path, kind, url, extra)| {
        super::harness::route(
            path,
            &format!("      kind: {kind}\n      url: \"{url}\"\n{extra}"),
        )
    })
    .collect()
}

fn route_path(kind: Kind, shape: Shape) -> String {
    let suffix = match shape {
        Shape::Mapped => "",
        Shape::Raw => "-raw",
        Shape::NoResume => "-noresume",
    };
    format!("/{}{suffix}", kind.name())
}

/// One thing the application sends.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A document: a WebSocket text message, an NDJSON line (`\n` added), a poll array element (when it is JSON).
    Doc(String),
    /// WebSocket only: a binary message.
    WsBinary(Vec<u8>),
    /// NDJSON only: raw bytes, line ends included.
    NdRaw(Vec<u8>),
    /// Poll only: this answer's whole body instead of `{"events":[…],"cursor":…}`.
    PollBody(Vec<u8>),
    /// Poll only: this answer's status.
    PollStatus(u16),
}

#[derive(Debug, Clone)]
pub struct JConn {
    pub expect: Expect,
    pub msgs: Vec<Msg>,
    /// WebSocket/NDJSON: the app ends the connection after its messages (else holds it).
    pub close: bool,
}

pub struct Case {
    pub name: &'static str,
    pub kinds: &'static [Kind],
    pub shape: Shape,
    pub conns: Vec<JConn>,
    pub known: Option<&'static str>,
    /// The transports through pushbridge (see `corpus_sse::Case::transports`).
    pub transports: &'static [Transport],
}

/// The end document of a route shape.
pub fn end_doc(shape: Shape) -> Msg {
    Msg::Doc(match shape {
        Shape::Raw => format!("\"{END}\""),
        _ => format!("{{\"type\":\"{END}\",\"data\":\"end\"}}"),
    })
}

/// `conns` as `kind` puts them on the wire.
fn wire(kind: Kind, shape: Shape, conns: &[JConn]) -> Vec<Conn> {
    conns
        .iter()
        .map(|conn| {
            let mut steps = Vec::new();
            match kind {
                Kind::Ws | Kind::Ndjson => {
                    for msg in &conn.msgs {
                        match (kind, msg) {
                            (Kind::Ws, Msg::Doc(text)) => {
                                steps.push(Step::Write(text.clone().into()))
                            }
                            (Kind::Ws, Msg::WsBinary(bytes)) => {
                                steps.push(Step::Binary(bytes.clone()))
                            }
                            (Kind::Ndjson, Msg::Doc(text)) => {
                                steps.push(Step::Write(format!("{text}\n").into()))
                            }
                            (Kind::Ndjson, Msg::NdRaw(bytes)) => {
                                steps.push(Step::Write(bytes.clone()))
                            }
                            _ => {}
                        }
                    }
                    if conn.close {
                        steps.push(Step::Close);
                    }
                }
                Kind::Poll => steps.extend(poll_answer(shape, &conn.msgs)),
            }
            Conn {
                expect: conn.expect.clone(),
                steps,
            }
        })
        .collect()
}

/// A poll answer: `{"events":[the JSON documents],"cursor":<the last id>}` (without `map`: the array alone), or the
/// `PollBody` given.
fn poll_answer(shape: Shape, msgs: &[Msg]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut events = Vec::new();
    let mut body = None;
    for msg in msgs {
        match msg {
            Msg::Doc(text) => events.extend(serde_json::from_str::<Value>(text).ok()),
            Msg::PollBody(bytes) => body = Some(bytes.clone()),
            Msg::PollStatus(code) => steps.push(Step::Status(*code)),
            _ => {}
        }
    }
    let body = body.unwrap_or_else(|| {
        if shape == Shape::Raw {
            return Value::from(events.clone()).to_string().into_bytes();
        }
        let cursor = events
            .iter()
            .rev()
            .find_map(|e| e.get("id").filter(|id| !id.is_null()).cloned());
        let mut answer = serde_json::json!({ "events": events });
        if let Some(cursor) = cursor {
            answer["cursor"] = cursor;
        }
        answer.to_string().into_bytes()
    });
    steps.push(Step::Write(body));
    steps
}

/// docs/config.md `upstream.map`: a document → (id, name, data), or `None` when it is skipped.
fn map_doc(doc: &Value) -> Option<(String, String, String)> {
    let id = match doc.pointer("/id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return None,
    };
    let name = match doc.pointer("/type") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return None,
    };
    if id.contains(['\r', '\n', '\0']) || name.contains(['\r', '\n', '\0']) {
        return None;
    }
    let data = json_text(doc.pointer("/data")?);
    Some((id, name, data))
}

/// A string as it is; anything else as its compact JSON text, object keys sorted.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn event((id, name, data): (String, String, String)) -> Option<RefItem> {
    (data.len() <= MAX_EVENT_BYTES).then(|| {
        RefItem::Event(Expected {
            event: if name.is_empty() {
                "message".into()
            } else {
                name
            },
            data,
            id,
        })
    })
}

/// One text document (a WebSocket message, an NDJSON line) as the route reads it.
fn text_event(shape: Shape, text: &str, must_be_json: bool) -> Option<RefItem> {
    match shape {
        Shape::Raw if !must_be_json => event((String::new(), String::new(), text.to_owned())),
        Shape::Raw => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|_| event((String::new(), String::new(), text.to_owned()))),
        _ => serde_json::from_str::<Value>(text)
            .ok()
            .as_ref()
            .and_then(map_doc)
            .and_then(event),
    }
}

/// The reference: what the app sent on the wire, read by the documented rules of `kind`, with the documented
/// replay removals (normalize.rs).
pub fn reference(kind: Kind, shape: Shape, conns: &[Conn]) -> Vec<Expected> {
    let mut log = Vec::new();
    for (n, conn) in conns.iter().enumerate() {
        // A poll connector's session spans its answers: one connection (docs/protocol.md "poll").
        if kind != Kind::Poll || n == 0 {
            log.push(RefItem::Open);
        }
        match kind {
            Kind::Ws => {
                for step in &conn.steps {
                    if let Step::Write(bytes) = step {
                        // A message over the limit ends the session (docs/protocol.md "ws").
                        if bytes.len() > MAX_EVENT_BYTES {
                            break;
                        }
                        log.extend(text_event(shape, &String::from_utf8_lossy(bytes), false));
                    }
                }
            }
            Kind::Ndjson => {
                let bytes: Vec<u8> = conn
                    .steps
                    .iter()
                    .filter_map(|s| {
                        if let Step::Write(b) = s {
                            Some(b.clone())
                        } else {
                            None
                        }
                    })
                    .flatten()
                    .collect();
                let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                // What follows the last `\n` is not a line.
                lines.pop();
                for line in lines {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() > MAX_EVENT_BYTES {
                        continue;
                    }
                    let Ok(text) = std::str::from_utf8(line) else {
                        continue;
                    };
                    if text.trim().is_empty() {
                        continue;
                    }
                    log.extend(text_event(shape, text, true));
                }
            }
            Kind::Poll => {
                let mut ok = true;
                let mut body = Vec::new();
                for step in &conn.steps {
                    match step {
                        Step::Status(code) => ok = *code == 200,
                        Step::Write(bytes) => body.extend_from_slice(bytes),
                        _ => {}
                    }
                }
                let Some(answer) = (ok && body.len() <= MAX_EVENT_BYTES)
                    .then(|| serde_json::from_slice::<Value>(&body).ok())
                    .flatten()
                else {
                    continue;
                };
                let events = match shape {
                    Shape::Raw => Some(&answer),
                    _ => answer.pointer("/events"),
                };
                for element in events.and_then(Value::as_array).into_iter().flatten() {
                    let item = match shape {
                        Shape::Raw => event((String::new(), String::new(), json_text(element))),
                        _ => map_doc(element).and_then(event),
                    };
                    log.extend(item);
                }
            }
        }
    }
    match shape {
        Shape::NoResume => normalize::reference_held_ids(&log),
        _ => normalize::reference(&log, usize::MAX),
    }
}

fn unexpected(kind: Kind, shape: Shape) -> Unexpected {
    Arc::new(move |position: Option<&str>| {
        let note = format!("pbdiff-unexpected position {position:?}");
        let msgs = vec![
            Msg::Doc(match shape {
                Shape::Raw => serde_json::Value::from(note).to_string(),
                _ => serde_json::json!({ "type": "pbdiff-unexpected", "data": note }).to_string(),
            }),
            end_doc(shape),
        ];
        let conns = wire(
            kind,
            shape,
            &[JConn {
                expect: Expect::Any,
                msgs,
                close: false,
            }],
        );
        conns
            .into_iter()
            .next()
            .map(|c| c.steps)
            .unwrap_or_default()
    })
}

/// Runs `case` on `kind` through the three transports (one pushbridge stream, channel `<kind>-<name>`).
pub async fn run(env: &Env, kind: Kind, case: &Case) -> Vec<Outcome> {
    let channel = format!("{}-{}", kind.name(), case.name);
    let mut conns = wire(kind, case.shape, &case.conns);
    let expected = reference(kind, case.shape, &conns);
    conns[0].steps.insert(0, Step::Gate(1));
    env.apps
        .script(&channel, conns, unexpected(kind, case.shape));
    let path = format!("{}/{channel}", route_path(kind, case.shape));
    let mut names = vec!["message", END, "pbdiff-unexpected"];
    for e in &expected {
        if !names.contains(&e.event.as_str()) {
            names.push(&e.event);
        }
    }
    let mut clients = Vec::new();
    for &transport in case.transports {
        match Client::open(transport, &env.node, env.addr, &path, &names, None).await {
            Ok(client) => clients.push((transport, client)),
            Err(e) => {
                return vec![failed(
                    kind.name(),
                    case.name,
                    case.known,
                    transport.name(),
                    e,
                )];
            }
        }
    }
    if !env.apps.wait_connections(&channel, 1).await {
        return vec![failed(
            kind.name(),
            case.name,
            case.known,
            "-",
            "pushbridge never connected".into(),
        )];
    }
    env.apps.release(&channel);
    let reads = futures_util::future::join_all(
        clients
            .into_iter()
            .map(|(t, c)| async move { (t, c.collect(READ_LIMIT).await) }),
    )
    .await;
    reads
        .into_iter()
        .map(|(transport, log)| {
            judge(
                kind.name(),
                case.name,
                case.known,
                "documented mapping",
                IdRule::Own,
                &expected,
                transport,
                log,
            )
        })
        .collect()
}
