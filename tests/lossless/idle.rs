//! Issue 7 item 1: closing an idle upstream keeps what resuming needs. After `idle_timeout` without subscribers only
//! the upstream connection closes; a client resuming later gets exactly the missed events on SSE, long-poll and
//! WebSocket, and the upstream is reopened with the newest id held.

use crate::app::ReplayApp;
use crate::clients::{self, Proxy};
use crate::polls;
use crate::support::client::{Proto, connect, get_text};

fn config(app: &ReplayApp) -> String {
    format!(
        r#"
streams:
  - path: /events/{{channel}}
    name: news
    upstream: {{ url: "http://{}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 50ms }} }}
    idle_timeout: 2s
    buffer: {{ events: 100, age: 5m }}
    long_poll: {{ timeout: 5s }}
"#,
        app.addr
    )
}

/// Publishes e<from>..=e<to> on `path`.
fn publish(app: &ReplayApp, path: &str, from: usize, to: usize) {
    for n in from..=to {
        app.publish(path, &format!("e{n}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_after_idle_teardown_gets_exactly_the_missed_events() {
    let app = ReplayApp::start().await;
    let proxy = Proxy::start(&config(&app));
    let addr = proxy.addr();
    tokio::join!(
        sse(&proxy, &app),
        long_poll(addr, &app),
        websocket(addr, &app)
    );
}

async fn sse(proxy: &Proxy, app: &ReplayApp) {
    let (addr, up) = (proxy.addr(), "/up/sse");
    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/sse", None)
        .await;
    app.wait_connections(up, 1, 1).await;
    publish(app, up, 1, 5);
    let ids: Vec<_> = client.take(5).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids.last().cloned().flatten().as_deref(), Some("5"));
    drop(client);
    // The pause: idle_timeout passes, pushbridge closes its upstream connection.
    app.wait_connections(up, 1, 0).await;
    let (status, body) = get_text(proxy.binary.admin.unwrap(), "/readyz").await;
    assert_eq!(status, 200, "a dormant stream is not a failed one: {body}");
    publish(app, up, 6, 7);

    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/sse", Some("5"))
        .await;
    let got: Vec<_> = client
        .take(2)
        .await
        .into_iter()
        .map(|e| (e.event, e.id, e.data))
        .collect();
    let want = |n: usize| (None, Some(n.to_string()), format!("e{n}"));
    assert_eq!(got, [want(6), want(7)], "no gap, no repeats");
    publish(app, up, 8, 8);
    assert_eq!(client.next_event().await.unwrap().data, "e8");
    assert_eq!(app.last_event_ids(up), [None, Some("5".into())]);
}

async fn long_poll(addr: std::net::SocketAddr, app: &ReplayApp) {
    let up = "/up/lp";
    let first = polls::poll(addr, Proto::H1, "/events/lp?wait=0", &[]).await;
    app.wait_connections(up, 1, 1).await;
    publish(app, up, 1, 5);
    let (got, cursor) = collect_polls(addr, "/events/lp", &first.cursor(), 5).await;
    assert_eq!(got, polls::expected(1, 5));
    app.wait_connections(up, 1, 0).await;
    publish(app, up, 6, 7);
    let (got, _) = collect_polls(addr, "/events/lp", &cursor, 2).await;
    assert_eq!(got, polls::expected(6, 7));
    assert_eq!(app.last_event_ids(up), [None, Some("5".into())]);
}

/// Polls from `cursor` until `n` events arrived; asserts no answer reports a gap.
pub async fn collect_polls(
    addr: std::net::SocketAddr,
    path: &str,
    cursor: &str,
    n: usize,
) -> (Vec<(String, String)>, String) {
    let mut got = Vec::new();
    let mut cursor = cursor.to_owned();
    while got.len() < n {
        let answer = polls::poll(
            addr,
            Proto::H1,
            &format!("{path}?last_event_id={cursor}"),
            &[],
        )
        .await;
        assert!(!answer.gap(), "{:?}", answer.json());
        got.extend(answer.events());
        cursor = answer.cursor();
    }
    (got, cursor)
}

async fn websocket(addr: std::net::SocketAddr, app: &ReplayApp) {
    let up = "/up/ws";
    let mut ws = clients::ws(addr, "/events/ws").await;
    app.wait_connections(up, 1, 1).await;
    publish(app, up, 1, 5);
    let got = clients::next_envelopes(&mut ws, 5).await;
    assert_eq!(got[4]["id"], "5");
    drop(ws);
    app.wait_connections(up, 1, 0).await;
    publish(app, up, 6, 7);
    let mut ws = clients::ws(addr, "/events/ws?last_event_id=5").await;
    let got = clients::next_envelopes(&mut ws, 2).await;
    assert_eq!(
        got,
        [
            serde_json::json!({"id": "6", "event": "message", "data": "e6"}),
            serde_json::json!({"id": "7", "event": "message", "data": "e7"}),
        ]
    );
    assert_eq!(app.last_event_ids(up), [None, Some("5".into())]);
}

/// The shape of `examples/legacy-long-poll.yaml` (long-poll only, a long `buffer.age`) with short times: a device
/// polling less often than `idle_timeout` resumes without a gap while its events are buffered; once they aged out
/// the stream is forgotten, and the next resume reports the gap exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_polling_rarely_resumes_within_buffer_age_and_gets_one_gap_after() {
    let app = ReplayApp::start().await;
    let proxy = Proxy::start(&format!(
        r#"
streams:
  - name: legacy
    path: /poll/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}", kind: sse, reconnect: {{ initial: 10ms, max: 50ms }} }}
    transports: [long-poll]
    long_poll: {{ timeout: 25s, max_batch: 50, jsonp: true }}
    buffer: {{ events: 2000, age: 3s }}
    idle_timeout: 300ms
"#,
        app.addr
    ));
    let (addr, up) = (proxy.addr(), "/up/dev");
    let first = polls::spawn_poll(addr, Proto::H1, "/poll/dev".into());
    app.wait_connections(up, 1, 1).await;
    app.publish(up, "e1");
    let first = first.await.unwrap();
    assert_eq!(
        (first.events(), first.cursor()),
        (polls::expected(1, 1), "1".into())
    );
    // Event 2 arrives between two polls, while the upstream connection is still open.
    app.publish(up, "e2");
    crate::support::client::eventually("event 2 received", || async {
        proxy
            .metric("pushbridge_events_received_total", "legacy")
            .await
            == 2.0
    })
    .await;
    app.wait_connections(up, 1, 0).await;

    // The next poll, after idle teardown: event 2 at once (a held poll would outlast the test), no gap.
    let next = polls::poll(addr, Proto::H1, "/poll/dev?last_event_id=1", &[]).await;
    assert_eq!((next.events(), next.gap()), (polls::expected(2, 2), false));
    // The poll woke the upstream, which resumes after the newest id held.
    app.wait_connections(up, 2, 1).await;
    assert_eq!(app.last_event_ids(up), [None, Some("2".into())]);

    // Past buffer.age the stream is forgotten: the resume is a gap, reported once.
    crate::support::client::eventually("the aged-out stream forgotten", || async {
        proxy.metric("pushbridge_streams_open", "").await == 0.0
    })
    .await;
    let after = polls::poll(addr, Proto::H1, "/poll/dev?last_event_id=2", &[]).await;
    assert!(after.gap());
    // This app replays its log from the start to a connection without Last-Event-ID; the polls that follow carry
    // on from the answer's cursor without a second gap.
    let mut got = after.events();
    let (rest, cursor) = collect_polls(addr, "/poll/dev", &after.cursor(), 2 - got.len()).await;
    got.extend(rest);
    assert_eq!(got, polls::expected(1, 2));
    let again = polls::poll(
        addr,
        Proto::H1,
        &format!("/poll/dev?wait=0&last_event_id={cursor}"),
        &[],
    )
    .await;
    assert_eq!((again.events(), again.gap()), (vec![], false));
}
