//! Issue 8, item 2, on the real binary: `/readyz` reflects pushbridge's own ability to serve and, when
//! `admin.ready_check` is set, the application's health URL — never a stream key a client chose. A client asking
//! for a channel the application answers 404 leaves the pod ready (the failure is counted in the metrics); the
//! health URL failing, or not answering in time, makes it 503; a drain makes it 503 (tests/drain.rs).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::client::{Proto, connect, eventually, get_text};

/// 0 = stall past the ready-check timeout.
const STALL: u16 = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_app_health_url_never_client_chosen_streams() {
    let health = Arc::new(AtomicU16::new(200));
    let streams_asked = Arc::new(AtomicUsize::new(0));
    let (h, s) = (health.clone(), streams_asked.clone());
    let app = support::app::serve(move |req| {
        let (health, streams_asked) = (h.clone(), s.clone());
        async move {
            let status = if req.uri().path() == "/health" {
                let status = health.load(Ordering::SeqCst);
                if status == STALL {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                status.max(200)
            } else {
                streams_asked.fetch_add(1, Ordering::SeqCst);
                404
            };
            http::Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"")))
                .unwrap()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
admin: {{ address: "127.0.0.1:0", ready_check: "http://{app}/health", ready_check_timeout: 300ms }}
log: {{ format: json }}
streams:
  - name: main
    path: /events/{{channel}}
    upstream: {{ url: "http://{app}/up/{{channel}}", reconnect: {{ initial: 10ms, max: 20ms }} }}
"#
    );
    let proxy = support::binary::start(dir.path(), &yaml, 1, true);
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());
    assert_eq!(
        get_text(admin, "/readyz").await,
        (200, "ready\n".to_owned())
    );

    // One client asks for a channel the application does not have: the upstream fails over and over (counted),
    // and the pod stays ready.
    let _client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/no-such-channel", None)
        .await;
    eventually("the app answered 404 a few times", || async {
        streams_asked.load(Ordering::SeqCst) >= 3
    })
    .await;
    let metrics = get_text(admin, "/metrics").await.1;
    assert!(
        metrics.contains("pushbridge_upstream_connects_total{result=\"error\",route=\"main\"}"),
        "{metrics}"
    );
    assert_eq!(
        get_text(admin, "/readyz").await,
        (200, "ready\n".to_owned())
    );

    // The application's health URL fails: 503, and ready again once it recovers (answers are cached ~1s).
    health.store(500, Ordering::SeqCst);
    eventually("readyz follows the failing health URL", || async {
        get_text(admin, "/readyz").await == (503, "application not ready: status 500\n".to_owned())
    })
    .await;
    health.store(204, Ordering::SeqCst);
    eventually("readyz recovers", || async {
        get_text(admin, "/readyz").await.0 == 200
    })
    .await;

    // A health URL that does not answer within ready_check_timeout: 503 within about that time.
    health.store(STALL, Ordering::SeqCst);
    eventually("readyz reports the silent health URL", || async {
        let (status, body) = get_text(admin, "/readyz").await;
        status == 503 && body.contains("no answer within 300ms")
    })
    .await;
    let metrics = get_text(admin, "/metrics").await.1;
    assert!(
        !metrics.contains("pushbridge_ready_checks_total{result=\"error\"} 0"),
        "{metrics}"
    );
}
