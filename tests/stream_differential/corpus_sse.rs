//! `kind: sse`: the scenario corpus (raw event-stream bytes, chunked as written), and the run of one scenario: the
//! reference reader (node `eventsource`, or Chromium's EventSource) reads the app directly on one channel while
//! SSE, WebSocket and long-poll clients read the same script through pushbridge on another.

use std::sync::Arc;

use super::apps::{Conn, Step};
use super::clients::{Client, END, Transport};
use super::harness::{Env, MAX_EVENT_BYTES, Outcome, READ_LIMIT, failed, judge};
use super::normalize::{self, IdRule};

/// The binary's SSE route.
pub fn routes() -> String {
    super::harness::route(
        "/sse/{channel}",
        "      kind: sse\n      url: \"http://{http}/up/{channel}\"\n",
    )
}

pub struct Case {
    pub name: &'static str,
    /// Event names used (besides `message`), for EventSource listeners.
    pub names: &'static [&'static str],
    pub conns: Vec<Conn>,
    /// Also read by Chromium (`sse_chromium_reference`).
    pub chromium: bool,
    /// Read by node `eventsource` (false where its deviations from WHATWG make it no reference).
    pub node: bool,
    pub known: Option<&'static str>,
    /// The transports through pushbridge (all three: since the long-poll cursor names a reused id's position,
    /// issue 15 B3, apps that reuse ids are compared on long-poll too; `long_poll_across_reused_ids` pins it).
    pub transports: &'static [Transport],
}

fn w(bytes: impl Into<Vec<u8>>) -> Step {
    Step::Write(bytes.into())
}

fn end() -> Step {
    w(format!("event: {END}\ndata: end\n\n"))
}

/// One connection: `chunks` then the end event, held open.
fn once(chunks: Vec<Step>) -> Vec<Conn> {
    let mut steps = chunks;
    steps.push(end());
    vec![Conn::any(steps)]
}

fn case(name: &'static str, names: &'static [&'static str], conns: Vec<Conn>) -> Case {
    Case {
        name,
        names,
        conns,
        chromium: false,
        node: true,
        known: None,
        transports: &Transport::ALL,
    }
}

fn big(n: usize) -> String {
    "x".repeat(n)
}

/// The corpus. Ids never have the generated shape (`<8 hex>-<n>`).
pub fn corpus() -> Vec<Case> {
    let huge = 4 * MAX_EVENT_BYTES;
    let mut cases = vec![
        case(
            "plain",
            &[],
            once(vec![w("data: a\n\n"), w("data: b\n\n"), w("data: c\n\n")]),
        ),
        case(
            "ids-and-names",
            &["update", "other"],
            once(vec![
                w("id: 1\nevent: update\ndata: x\n\n"),
                w("id: 2\ndata: y\n\n"),
                w("event: other\nid: 3\ndata: z\n\n"),
                w("event: update\ndata: no id\n\n"),
                w("id: 4\nevent: message\ndata: named message\n\n"),
            ]),
        ),
        case(
            "id-repeated",
            &[],
            once(vec![
                w("id: 4\ndata: a\n\n"),
                w("id: 4\ndata: same id again\n\n"),
                w("data: no id\n\n"),
            ]),
        ),
        case(
            "multi-line-and-spaces",
            &[],
            once(vec![
                w("data: l1\ndata: l2\n\n"),
                w("data:  two spaces\n\n"),
                w("data:no space\n\n"),
                w("data: trailing\ndata:\n\n"),
                w("data:\ndata: after empty\n\n"),
                w("data: tab\there \n\n"),
            ]),
        ),
        case(
            "empty-data",
            &["e", "lonely"],
            once(vec![
                w("data:\n\n"),
                w("data\n\n"),
                w("event: e\ndata:\n\n"),
                w("id: 7\ndata\n\n"),
                w("event: lonely\n\n"),
                w("data: after\n\n"),
            ]),
        ),
        case(
            "retry-and-comments",
            &[],
            once(vec![
                w("retry: 100\n\n"),
                w(": comment\n"),
                w("data: a\n\n"),
                w(":\n"),
                w("retry: abc\ndata: b\n\n"),
                w("retry: 50\n"),
                w("data: c\n\n"),
                w(format!(": {}\n", big(huge))),
                w("data: d\n\n"),
            ]),
        ),
        case(
            "id-reset",
            &[],
            once(vec![
                w("id: 5\ndata: a\n\n"),
                w("id:\ndata: b\n\n"),
                w("data: c\n\n"),
                w("id: 6\ndata: d\n\n"),
            ]),
        ),
        case(
            "unicode-and-invalid-utf8",
            &["ünïcode"],
            once(vec![
                w("data: héllo ✓ 🎉\n\n"),
                w("event: ünïcode\ndata: x\n\n"),
                w(b"data: bad \xff\xfe bytes\n\n".to_vec()),
                w("id: ☃\ndata: y\n\n"),
                w("data: \u{feff}inner bom\n\n"),
                w(b"data: split \xe2\x9c".to_vec()),
                w(b"\x93 char\n\n".to_vec()),
            ]),
        ),
        case(
            "line-endings",
            &[],
            once(vec![
                w(b"\xEF\xBB\xBFdata: bom\n\n".to_vec()),
                w("data: cr\r\r"),
                w("data: crlf\r\n\r\n"),
                w("data: mixed\r\ndata: two\n\r\n"),
                w("data: sp"),
                w("lit\r"),
                w("\n\r"),
                w("\n"),
                w("id: 8\r"),
                w("\ndata: after split crlf\r\n"),
                w("\r\n"),
            ]),
        ),
        case(
            "malformed-lines",
            &["late name"],
            once(vec![
                w("datax: nope\n"),
                w("  data: leading spaces\n"),
                w("Data: case\n"),
                w("data: ok1\n\n"),
                w("id: a\0b\ndata: nul in id\n\n"),
                w("event\ndata: event without colon\n\n"),
                w("id\ndata: id without colon\n\n"),
                w("retry\nretry: -1\nretry: 1.5\n"),
                w("data: ok2\n\n"),
                w("unknown: field\ndata: ok3\n\n"),
                w(": comment\ndata: ok4\n\n"),
                w("data: ok5\nevent: late name\n\n"),
                w("\n\n\n"),
                w("data: ok6\n\n"),
            ]),
        ),
        case(
            "events-over-the-limit",
            &[],
            once(vec![
                w("id: 10\ndata: small\n\n"),
                w(format!("data: {}\n\n", big(huge))),
                w("id: 11\ndata: after huge\n\n"),
                w(format!(
                    "data: {}\ndata: {}\n\n",
                    big(MAX_EVENT_BYTES * 2 / 3),
                    big(MAX_EVENT_BYTES * 2 / 3)
                )),
                w(format!("id: 12\ndata: {}\n\n", big(huge))),
                w("data: last\n\n"),
            ]),
        ),
    ];
    // The app closes and the reader reconnects.
    let first = || {
        vec![
            w("retry: 20\n\n"),
            w("id: 1\ndata: a\n\n"),
            w("id: 2\ndata: b\n\n"),
            Step::Close,
        ]
    };
    let steps = |chunks: &[&str]| {
        let mut steps: Vec<Step> = chunks.iter().map(|c| w(*c)).collect();
        steps.push(end());
        steps
    };
    cases.extend([
        case(
            "resume-after-close",
            &[],
            vec![
                Conn::any(first()),
                Conn::after(
                    Some("2"),
                    steps(&["id: 3\ndata: c\n\n", "id: 4\ndata: d\n\n"]),
                ),
            ],
        ),
        case(
            "resume-resends-last",
            &[],
            vec![
                Conn::any(first()),
                Conn::after(
                    Some("2"),
                    steps(&["id: 2\ndata: b\n\n", "id: 3\ndata: c\n\n"]),
                ),
            ],
        ),
        case(
            "resume-ignored",
            &[],
            vec![
                Conn::any(first()),
                Conn::any(steps(&[
                    "id: 1\ndata: a\n\n",
                    "id: 2\ndata: b\n\n",
                    "id: 3\ndata: c\n\n",
                ])),
            ],
        ),
        case(
            "ids-reused-after-restart",
            &[],
            vec![
                Conn::any(first()),
                Conn::any(steps(&["id: 1\ndata: a2\n\n", "id: 2\ndata: b2\n\n"])),
            ],
        ),
        case(
            "empty-first-connection",
            &[],
            vec![
                Conn::any(vec![w("retry: 20\n\n"), Step::Close]),
                Conn::after(None, steps(&["data: a\n\n"])),
            ],
        ),
        case(
            "no-ids-across-reconnect",
            &[],
            vec![
                Conn::any(vec![w("retry: 20\n\n"), w("data: a\n\n"), Step::Close]),
                Conn::after(None, steps(&["data: b\n\n"])),
            ],
        ),
        Case {
            node: false,
            chromium: true,
            ..case(
                "id-only-block-then-close",
                &[],
                vec![
                    Conn::any(vec![
                        w("retry: 20\n\n"),
                        w("data: a\n\n"),
                        w("data: b\n\n"),
                        w("id: 9\n\n"),
                        Step::Close,
                    ]),
                    Conn::after(Some("9"), steps(&["id: 10\ndata: c\n\n"])),
                ],
            )
        },
    ]);
    for case in &mut cases {
        if matches!(
            case.name,
            "ids-and-names"
                | "multi-line-and-spaces"
                | "id-reset"
                | "line-endings"
                | "malformed-lines"
                | "resume-after-close"
        ) {
            case.chromium = true;
        }
    }
    cases
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Node,
    Chromium,
}

impl Reference {
    fn name(self) -> &'static str {
        match self {
            Reference::Node => "node eventsource",
            Reference::Chromium => "chromium",
        }
    }
}

fn unexpected() -> super::apps::Unexpected {
    Arc::new(|position: Option<&str>| {
        vec![
            w(format!(
                "event: pbdiff-unexpected\ndata: Last-Event-ID {position:?}\n\n"
            )),
            end(),
        ]
    })
}

/// Runs `case`: the reference on channel `<name>-direct`, the three transports through pushbridge on `<name>`.
pub async fn run(env: &Env, case: &Case, reference: Reference) -> Vec<Outcome> {
    let direct = format!("{}-direct", case.name);
    let mut conns = case.conns.clone();
    conns[0].steps.insert(0, Step::Gate(1));
    env.apps.script(case.name, conns.clone(), unexpected());
    env.apps.script(&direct, conns, unexpected());
    let mut names = vec!["message", END, "pbdiff-unexpected"];
    names.extend(case.names);
    let url = format!("http://{}/up/{direct}", env.apps.http);
    let mut reader = match reference {
        Reference::Node => env.node.open(&url, &names),
        Reference::Chromium => {
            env.node
                .browser(&format!("http://{}/page", env.apps.http), &url, &names)
        }
    };
    if let Err(e) = reader.opened(READ_LIMIT).await {
        return vec![failed(
            "sse",
            case.name,
            case.known,
            "-",
            format!("reference: {e}"),
        )];
    }
    let path = format!("/sse/{}", case.name);
    let mut clients = Vec::new();
    for &transport in case.transports {
        match Client::open(transport, &env.node, env.addr, &path, &names, None).await {
            Ok(client) => clients.push((transport, client)),
            Err(e) => {
                return vec![failed("sse", case.name, case.known, transport.name(), e)];
            }
        }
    }
    if !env.apps.wait_connections(case.name, 1).await {
        return vec![failed(
            "sse",
            case.name,
            case.known,
            "-",
            "pushbridge never connected".into(),
        )];
    }
    env.apps.release(case.name);
    env.apps.release(&direct);
    let reading = reader.collect(END, READ_LIMIT, true);
    let reads = futures_util::future::join_all(
        clients
            .into_iter()
            .map(|(t, c)| async move { (t, c.collect(READ_LIMIT).await) }),
    );
    let (log, reads) = tokio::join!(reading, reads);
    if !log.complete {
        return vec![failed(
            "sse",
            case.name,
            case.known,
            "-",
            format!(
                "the reference never saw the end: {:?} {:?}",
                log.items, log.errors
            ),
        )];
    }
    let expected = normalize::reference(&log.items, MAX_EVENT_BYTES);
    let rule = match reference {
        Reference::Node => IdRule::Own,
        Reference::Chromium => IdRule::Sticky,
    };
    reads
        .into_iter()
        .map(|(transport, got)| {
            judge(
                "sse",
                case.name,
                case.known,
                reference.name(),
                rule,
                &expected,
                transport,
                got,
            )
        })
        .collect()
}

/// Long-poll across reused ids, made deterministic: the app sends ids 1 and 2, closes, and (restarted with a fresh
/// counter) sends ids 1 and 2 again with other data once the long-poll client holds the first two (cursor `2`) and
/// is not waiting. It polls again from `2`, a cursor given while `2` named one event: it resumes after that
/// occurrence and gets the restarted app's events, as a browser reading the app does (docs/protocol.md "Long-poll
/// cursors and reused ids"). Before issue 15 B3 the hub resolved `2` to its newest occurrence and they were lost.
pub async fn long_poll_across_reused_ids(env: &Env) -> Vec<Outcome> {
    const NAME: &str = "long-poll-across-reused-ids";
    let known = None;
    let conns = vec![
        Conn::any(vec![
            Step::Gate(1),
            w("retry: 20\n\n"),
            w("id: 1\ndata: a\n\n"),
            w("id: 2\ndata: b\n\n"),
            Step::Close,
        ]),
        Conn::any(vec![
            Step::Gate(2),
            w("id: 1\ndata: a2\n\n"),
            w("id: 2\ndata: b2\n\n"),
            end(),
        ]),
    ];
    let direct = format!("{NAME}-direct");
    env.apps.script(NAME, conns.clone(), unexpected());
    env.apps.script(&direct, conns, unexpected());
    let names = ["message", END];
    let mut reader = env
        .node
        .open(&format!("http://{}/up/{direct}", env.apps.http), &names);
    let path = format!("/sse/{NAME}");
    let opened = async {
        reader.opened(READ_LIMIT).await?;
        let witness =
            Client::open(Transport::Sse, &env.node, env.addr, &path, &names, None).await?;
        let long_poll = Client::open(
            Transport::LongPoll,
            &env.node,
            env.addr,
            &path,
            &names,
            None,
        )
        .await?;
        Ok::<_, String>((witness, long_poll))
    };
    let (witness, mut long_poll) = match opened.await {
        Ok(clients) => clients,
        Err(e) => return vec![failed("sse", NAME, known, "long-poll", e)],
    };
    env.apps.release(NAME);
    env.apps.release(&direct);
    if let Err(e) = long_poll.poll_until(2, READ_LIMIT).await {
        return vec![failed("sse", NAME, known, "long-poll", e)];
    }
    env.apps.release(NAME);
    env.apps.release(&direct);
    // The SSE client seeing the end event means every event is in the ring before the long-poll asks again.
    let (log, witnessed) = tokio::join!(
        reader.collect(END, READ_LIMIT, true),
        witness.collect(READ_LIMIT)
    );
    let got = long_poll.collect(READ_LIMIT).await;
    let expected = normalize::reference(&log.items, MAX_EVENT_BYTES);
    vec![
        judge(
            "sse",
            NAME,
            known,
            "node eventsource",
            IdRule::Own,
            &expected,
            Transport::Sse,
            witnessed,
        ),
        judge(
            "sse",
            NAME,
            known,
            "node eventsource",
            IdRule::Own,
            &expected,
            Transport::LongPoll,
            got,
        ),
    ]
}
