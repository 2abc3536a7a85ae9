//! Issue 7 item 2: an upstream event is dropped as a replay only when it provably repeats what was delivered. Each
//! scripted upstream below is what a browser reading the app directly would see, event for event.

use crate::app::{Script, ScriptApp};
use crate::clients::{self, Proxy};
use crate::support::client::{Proto, connect};

const RESTART_1: &str = "id: 1\ndata: a\n\nid: 2\ndata: b\n\n";
/// The restarted app ignores `Last-Event-ID: 2` and counts from 1 again.
const RESTART_2: &str = "id: 1\ndata: c\n\nid: 2\ndata: d\n\nid: 3\ndata: e\n\n";
const TWICE: &str = "id: 5\ndata: a\n\nid: 5\ndata: b\n\n";
const RESET: &str = "id: 5\ndata: a\n\nid:\ndata: b\n\nid: 5\ndata: c\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_ids_are_delivered_as_a_browser_reading_the_app_sees_them() {
    let hold = |bytes| Script { bytes, hold: true };
    let app = ScriptApp::start(vec![
        (
            "/up/restart",
            vec![
                Script {
                    bytes: RESTART_1,
                    hold: false,
                },
                hold(RESTART_2),
            ],
        ),
        ("/up/twice", vec![hold(TWICE)]),
        ("/up/reset", vec![hold(RESET)]),
    ])
    .await;
    let mut proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    name: news
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
"#,
        app.addr
    ));
    let addr = proxy.addr();
    let mut restart = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/restart", None)
        .await;
    let mut ws = clients::ws(addr, "/events/restart").await;
    let mut twice = connect(addr, Proto::H2)
        .await
        .sse(addr, "/events/twice", None)
        .await;
    let mut reset = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/reset", None)
        .await;
    app.release();

    let got: Vec<_> = restart
        .take(5)
        .await
        .into_iter()
        .map(|e| (e.id.unwrap_or_default(), e.data))
        .collect();
    let pair = |id: &str, data: &str| (id.to_owned(), data.to_owned());
    assert_eq!(
        got,
        [
            pair("1", "a"),
            pair("2", "b"),
            pair("1", "c"),
            pair("2", "d"),
            pair("3", "e")
        ]
    );
    assert_eq!(
        app.last_event_ids("/up/restart"),
        [None, Some("2".into())],
        "the second connection resumed after 2"
    );
    let data: Vec<_> = clients::next_envelopes(&mut ws, 5)
        .await
        .into_iter()
        .map(|e| e["data"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(data, ["a", "b", "c", "d", "e"]);

    let got: Vec<_> = twice
        .take(2)
        .await
        .into_iter()
        .map(|e| (e.id.unwrap_or_default(), e.data))
        .collect();
    assert_eq!(got, [pair("5", "a"), pair("5", "b")]);

    let got = reset.take(3).await;
    let data: Vec<_> = got.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["a", "b", "c"]);
    assert_eq!(got[0].id.as_deref(), Some("5"));
    assert_ne!(got[1].id.as_deref(), Some("5"), "b has no upstream id");
    assert_eq!(got[2].id.as_deref(), Some("5"));

    // A resume from a repeated id continues after its newest occurrence (c, id 1 again).
    let mut resumed = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/restart", Some("1"))
        .await;
    let data: Vec<_> = resumed.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["d", "e"]);

    assert_eq!(
        proxy
            .metric("pushbridge_upstream_reused_ids_total", "route=\"news\"")
            .await,
        4.0
    );
    assert_eq!(
        proxy
            .metric("pushbridge_upstream_duplicates_total", "")
            .await,
        0.0
    );
    // One WARN per stream (rate-limited), naming it.
    proxy.binary.child.kill().unwrap();
    let warnings: Vec<String> = proxy
        .binary
        .drain_log()
        .into_iter()
        .filter(|l| l.contains("reused an event id"))
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings.iter().any(|l| l.contains("channel=restart")));
}

/// Issue 15 item 4: a block with an `id:` and no data dispatches no event but still sets the last event ID string
/// (WHATWG §9.2.6, "dispatch the event", step 1): the reconnect sends it as a browser would; an empty `id:` alone
/// clears it. An event without an id after such a block keeps it, and an app resuming after it resends that event:
/// a replay, dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_only_block_sets_the_last_event_id_of_the_upstream_reconnect() {
    let once = |bytes| Script { bytes, hold: false };
    let hold = |bytes| Script { bytes, hold: true };
    let app = ScriptApp::start(vec![
        (
            "/up/after",
            vec![
                once("id: 8\ndata: e8\n\nid: 9\n\n"),
                hold("id: 10\ndata: e10\n\n"),
            ],
        ),
        ("/up/alone", vec![once("id: 9\n\n"), hold("data: x\n\n")]),
        (
            "/up/reset",
            vec![once("id: 5\ndata: a\n\nid:\n\n"), hold("data: b\n\n")],
        ),
        (
            "/up/then",
            vec![
                once("id: 9\n\ndata: plain\n\n"),
                // Resumed after 9: what followed 9, then a new event.
                hold("data: plain\n\ndata: new\n\n"),
            ],
        ),
    ])
    .await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
"#,
        app.addr
    ));
    let addr = proxy.addr();
    let mut clients = Vec::new();
    for channel in ["after", "alone", "reset", "then"] {
        let path = format!("/events/{channel}");
        clients.push(connect(addr, Proto::H1).await.sse(addr, &path, None).await);
    }
    app.release();
    let data = |events: Vec<pushbridge::sse::SseEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.data).collect()
    };
    let [after, alone, reset, then] = &mut clients[..] else {
        unreachable!()
    };
    assert_eq!(data(after.take(2).await), ["e8", "e10"]);
    assert_eq!(data(alone.take(1).await), ["x"]);
    assert_eq!(data(reset.take(2).await), ["a", "b"]);
    assert_eq!(data(then.take(2).await), ["plain", "new"]);
    assert_eq!(app.last_event_ids("/up/after"), [None, Some("9".into())]);
    assert_eq!(app.last_event_ids("/up/alone"), [None, Some("9".into())]);
    assert_eq!(app.last_event_ids("/up/reset"), [None, None]);
    assert_eq!(app.last_event_ids("/up/then"), [None, Some("9".into())]);
    assert_eq!(
        proxy
            .metric("pushbridge_upstream_duplicates_total", "")
            .await,
        1.0,
        "the resent `plain`"
    );
}
