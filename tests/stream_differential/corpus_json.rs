//! The scenario corpus of the JSON kinds (`ws`, `ndjson`, `poll`), written once as documents and put on each kind's
//! wire by json_kinds.rs. Ids never have the generated shape (`<8 hex>-<n>`).

use serde_json::{Value, json};

use super::apps::Expect;
use super::clients::Transport;
use super::harness::MAX_EVENT_BYTES;
use super::json_kinds::{Case, JConn, Kind, Msg, Shape, end_doc};

const ALL: &[Kind] = &[Kind::Ws, Kind::Ndjson, Kind::Poll];

fn doc(value: Value) -> Msg {
    Msg::Doc(value.to_string())
}

/// `{"id":…,"data":…}` with a string id.
fn ev(id: &str, data: &str) -> Msg {
    doc(json!({ "id": id, "data": data }))
}

/// One connection holding `msgs` and the end document.
fn once(shape: Shape, mut msgs: Vec<Msg>) -> Vec<JConn> {
    msgs.push(end_doc(shape));
    vec![JConn {
        expect: Expect::Any,
        msgs,
        close: false,
    }]
}

fn case(name: &'static str, kinds: &'static [Kind], shape: Shape, conns: Vec<JConn>) -> Case {
    Case {
        name,
        kinds,
        shape,
        conns,
        known: None,
        transports: &Transport::ALL,
    }
}

fn conn(expect: Expect, msgs: Vec<Msg>, close: bool) -> JConn {
    JConn {
        expect,
        msgs,
        close,
    }
}

fn after(id: Option<&str>) -> Expect {
    Expect::Is(id.map(str::to_owned))
}

pub fn corpus() -> Vec<Case> {
    let m = Shape::Mapped;
    let huge = "x".repeat(4 * MAX_EVENT_BYTES);
    let with_end = |mut msgs: Vec<Msg>, shape| {
        msgs.push(end_doc(shape));
        msgs
    };
    vec![
        case(
            "plain",
            ALL,
            m,
            once(
                m,
                vec![doc(json!({"data": "a"})), doc(json!({"data": "b"}))],
            ),
        ),
        case(
            "ids-and-names",
            ALL,
            m,
            once(
                m,
                vec![
                    doc(json!({"id": "7", "type": "update", "data": "x"})),
                    doc(json!({"id": 8, "data": "y"})),
                    doc(json!({"id": "x-1", "type": "other", "data": "z"})),
                    doc(json!({"type": "update", "data": "no id"})),
                ],
            ),
        ),
        case(
            "id-repeated",
            ALL,
            m,
            once(
                m,
                vec![
                    ev("7", "a"),
                    ev("7", "same id again"),
                    doc(json!({"data": "no id"})),
                ],
            ),
        ),
        case(
            "data-values",
            ALL,
            m,
            once(
                m,
                vec![
                    doc(json!({"data": {"b": 1, "a": [1, "s", {"d": null, "c": true}]}})),
                    doc(json!({"data": 42})),
                    doc(json!({"data": true})),
                    doc(json!({"data": []})),
                    doc(json!({"data": -1.5})),
                    doc(json!({"data": "é ✓ 🎉"})),
                ],
            ),
        ),
        case(
            "multi-line-and-empty-data",
            ALL,
            m,
            once(
                m,
                vec![
                    doc(json!({"data": "l1\nl2"})),
                    doc(json!({"data": "a\r\nb"})),
                    doc(json!({"data": "cr\ronly"})),
                    doc(json!({"data": "trailing\n"})),
                    doc(json!({"data": ""})),
                    doc(json!({"data": "\n"})),
                ],
            ),
        ),
        case(
            "nulls-and-empty-fields",
            ALL,
            m,
            once(
                m,
                vec![
                    doc(json!({"id": null, "data": "a"})),
                    doc(json!({"type": null, "data": "b"})),
                    doc(json!({"id": "", "data": "c"})),
                    doc(json!({"type": "", "data": "d"})),
                    doc(json!({"id": "9", "type": "t", "data": "e", "extra": 1})),
                ],
            ),
        ),
        case(
            "skipped-documents",
            ALL,
            m,
            once(
                m,
                vec![
                    doc(json!({"id": {"x": 1}, "data": "bad id"})),
                    doc(json!({"type": 5, "data": "bad type"})),
                    doc(json!({"id": "a\nb", "data": "line break in id"})),
                    doc(json!({"type": "x\ny", "data": "line break in name"})),
                    doc(json!({"id": "a\u{0}b", "data": "NUL in id"})),
                    doc(json!({"nodata": 1})),
                    doc(json!({"data": "ok1"})),
                    Msg::Doc("this is not JSON".into()),
                    Msg::WsBinary(vec![0, 1, 2]),
                    Msg::NdRaw(b"\n   \n".to_vec()),
                    Msg::NdRaw(b"{\"data\":\"crlf\"}\r\n".to_vec()),
                    Msg::NdRaw(b"{\"data\":\"bad \xff utf-8\"}\n".to_vec()),
                    doc(json!({"data": "ok2"})),
                ],
            ),
        ),
        case(
            "resume-after-close",
            ALL,
            m,
            vec![
                conn(Expect::Any, vec![ev("1", "a"), ev("2", "b")], true),
                conn(after(Some("2")), with_end(vec![ev("3", "c")], m), false),
            ],
        ),
        case(
            "ids-reused-after-restart",
            ALL,
            m,
            vec![
                conn(Expect::Any, vec![ev("1", "a"), ev("2", "b")], true),
                conn(
                    after(Some("2")),
                    with_end(vec![ev("1", "a2"), ev("2", "b2")], m),
                    false,
                ),
            ],
        ),
        // Without `resume` the app replays from its start: held ids repeating what the ring holds are dropped
        // (ARCHITECTURE §3; issue 15 finding B2, delivered again before).
        Case {
            ..case(
                "replay-without-resume",
                &[Kind::Ws, Kind::Ndjson],
                Shape::NoResume,
                vec![
                    conn(Expect::Any, vec![ev("1", "a"), ev("2", "b")], true),
                    conn(
                        after(None),
                        with_end(vec![ev("1", "a"), ev("2", "b"), ev("3", "c")], m),
                        false,
                    ),
                ],
            )
        },
        case(
            "unterminated-last-line",
            &[Kind::Ndjson],
            m,
            vec![
                conn(
                    Expect::Any,
                    vec![
                        ev("1", "a"),
                        Msg::NdRaw(br#"{"id":"2","data":"partial"}"#.to_vec()),
                    ],
                    true,
                ),
                conn(after(Some("1")), with_end(vec![ev("2", "b")], m), false),
            ],
        ),
        case(
            "event-over-the-limit",
            &[Kind::Ndjson],
            m,
            once(m, vec![ev("1", "a"), ev("2", &huge), ev("3", "c")]),
        ),
        // A WebSocket message over the limit ends the session; it resumes after the newest id held.
        case(
            "message-over-the-limit",
            &[Kind::Ws],
            m,
            vec![
                conn(
                    Expect::Any,
                    vec![
                        ev("1", "a"),
                        ev("2", &huge),
                        ev("3", "lost with the session"),
                    ],
                    false,
                ),
                conn(after(Some("1")), with_end(vec![ev("3", "c")], m), false),
            ],
        ),
        // A poll answer over the limit, not JSON, or not 200 is a failed poll; the next one keeps the cursor.
        case(
            "failed-polls",
            &[Kind::Poll],
            m,
            vec![
                conn(Expect::Any, vec![ev("1", "a")], false),
                conn(after(Some("1")), vec![ev("2", &huge)], false),
                conn(
                    after(Some("1")),
                    vec![Msg::PollBody(b"not json".to_vec())],
                    false,
                ),
                conn(
                    after(Some("1")),
                    vec![Msg::PollStatus(500), ev("2", "refused")],
                    false,
                ),
                conn(
                    after(Some("1")),
                    vec![Msg::PollBody(br#"{"cursor":"1"}"#.to_vec())],
                    false,
                ),
                conn(after(Some("1")), with_end(vec![ev("2", "b")], m), false),
            ],
        ),
        case(
            "without-map",
            ALL,
            Shape::Raw,
            once(
                Shape::Raw,
                vec![
                    Msg::Doc("\"a string\"".into()),
                    Msg::Doc(r#"{"b":1,"a":2}"#.into()),
                    Msg::Doc("42".into()),
                    Msg::Doc("not JSON".into()),
                    Msg::Doc(String::new()),
                    Msg::Doc(r#""multi\nline""#.into()),
                ],
            ),
        ),
    ]
}
