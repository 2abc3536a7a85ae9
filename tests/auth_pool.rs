//! The auth-check connection pool is trimmed: after a burst of concurrent checks the authorization service keeps
//! at most `auth.pool_max_idle` connections from pushbridge, and none once `auth.pool_idle_timeout` has passed.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::client::{Proto, connect, eventually};
use support::upstream::SseUpstream;

const CLIENTS: usize = 10;

/// Open and peak connection counts of the authorization service.
#[derive(Default)]
struct Conns {
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// An authorization service that admits after 300 ms (so concurrent checks need their own connections) and
/// counts its open connections.
async fn auth_service(conns: Arc<Conns>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let conns = conns.clone();
            let open = conns.open.fetch_add(1, Ordering::SeqCst) + 1;
            conns.peak.fetch_max(open, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::new())))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
                conns.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_auth_connections_are_closed() {
    let upstream = SseUpstream::start(true).await;
    let conns = Arc::new(Conns::default());
    let auth = auth_service(conns.clone()).await;
    let proxy = support::proxy::start(&format!(
        r#"
listen: [{{ address: "127.0.0.1:0" }}]
streams:
  - path: /events/{{channel}}
    upstream: {{ url: "http://{}/up/{{channel}}" }}
    auth: {{ check: "http://{auth}/check", pool_idle_timeout: 1s, pool_max_idle: 2 }}
"#,
        upstream.addr
    ))
    .await;
    let addr = proxy.addr();

    let opened = futures_util::future::join_all((0..CLIENTS).map(|i| async move {
        let mut sender = connect(addr, Proto::H1).await;
        let sse = sender.sse(addr, &format!("/events/c{i}"), None).await;
        (sender, sse)
    }))
    .await;
    assert_eq!(conns.peak.load(Ordering::SeqCst), CLIENTS);
    // At most pool_max_idle stay once the checks are answered, and none after pool_idle_timeout.
    eventually("idle connections trimmed to pool_max_idle", || async {
        conns.open.load(Ordering::SeqCst) <= 2
    })
    .await;
    eventually("idle connections closed", || async {
        conns.open.load(Ordering::SeqCst) == 0
    })
    .await;
    drop(opened);
}
