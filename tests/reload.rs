//! Hot reload on the real binary: config edits and SIGHUP under live connections (unchanged streams keep their
//! subscribers; a bad config is refused while the old one serves), and certificate rotation (new handshakes get
//! the new certificate, open connections carry on).

mod support;

use std::time::Duration;

use support::certs::{KeyKind, TestCa, first_cert_der};
use support::client::{Proto, WAIT, connect, connect_tls};
use support::upstream::SseUpstream;

fn config(
    upstream: std::net::SocketAddr,
    extra_route: bool,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> String {
    let listen = match tls {
        Some((cert, key)) => support::certs::tls_listener(cert, key),
        None => "  - address: \"127.0.0.1:0\"\n".to_owned(),
    };
    let mut yaml = format!(
        r#"
listen:
{listen}admin: {{ address: "127.0.0.1:0" }}
log: {{ format: json }}
streams:
  - name: main
    path: /events/{{channel}}
    upstream: {{ url: "http://{upstream}/up/{{channel}}" }}
"#
    );
    if extra_route {
        yaml.push_str(&format!(
            "  - name: extra\n    path: /more/{{channel}}\n    upstream: {{ url: \"http://{upstream}/more/{{channel}}\" }}\n"
        ));
    }
    yaml
}

fn wait_log(proxy: &support::binary::Binary, needle: &str) -> String {
    tokio::task::block_in_place(|| proxy.wait_log(needle, WAIT))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_keeps_live_streams_and_refuses_a_bad_config() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = support::binary::start(dir.path(), &config(upstream.addr, false, None), 1, true);
    let addr = proxy.listen[0];
    let mut live = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    upstream.wait_connections(1).await;
    upstream.publish("one");
    assert_eq!(live.next_event().await.unwrap().data, "one");

    // A valid change, seen by the file watcher: a route is added, `main` is unchanged.
    std::fs::write(
        dir.path().join("config.yaml"),
        config(upstream.addr, true, None),
    )
    .unwrap();
    let line = wait_log(&proxy, "Config reloaded");
    assert!(line.contains("main") && line.contains("extra"), "{line}");
    upstream.publish("two");
    assert_eq!(
        live.next_event().await.unwrap().data,
        "two",
        "the unchanged stream kept its subscriber"
    );
    let mut extra = connect(addr, Proto::H1)
        .await
        .sse(addr, "/more/b", None)
        .await;
    upstream.wait_connections(2).await;
    upstream.publish("three");
    assert_eq!(extra.next_event().await.unwrap().data, "three");
    assert_eq!(live.next_event().await.unwrap().data, "three");

    // An invalid config is refused; the old one keeps serving.
    std::fs::write(
        dir.path().join("config.yaml"),
        "listen: [ {address: nowhere} ]\nbogus: 1\n",
    )
    .unwrap();
    let line = wait_log(&proxy, "Config reload refused");
    assert!(
        line.contains("bogus") || line.contains("config.yaml"),
        "{line}"
    );
    upstream.publish("four");
    assert_eq!(live.next_event().await.unwrap().data, "four");

    // SIGHUP reloads too (back to one route: `extra`'s stream ends, `main` carries on).
    std::fs::write(
        dir.path().join("config.yaml"),
        config(upstream.addr, false, None),
    )
    .unwrap();
    proxy.signal("HUP");
    let line = wait_log(&proxy, "Config reloaded");
    assert!(line.contains("removed"), "{line}");
    // The removed route's stream ends (after anything already sent).
    while let Some(event) = extra.next_event().await {
        assert_eq!(event.data, "four");
    }
    upstream.publish("five");
    let next = live.next_event().await.unwrap();
    assert!(next.data == "five", "main kept streaming: {next:?}");

    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("pushbridge_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.lines().any(
        |l| l.starts_with("pushbridge_config_reloads_total{result=\"ok\"}") && !l.ends_with(" 0")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_live_connections() {
    let upstream = SseUpstream::start(true).await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_files(dir.path(), KeyKind::EcdsaP256);
    let first = first_cert_der(&cert);
    let proxy = support::binary::start(
        dir.path(),
        &config(upstream.addr, false, Some((&cert, &key))),
        1,
        true,
    );
    let addr = proxy.listen[0];
    let mut old_conn = connect_tls(addr, ca.client_config(&[b"h2"]), Proto::H2).await;
    let mut live = old_conn.sse(addr, "/events/a", None).await;
    upstream.wait_connections(1).await;
    upstream.publish("before");
    assert_eq!(live.next_event().await.unwrap().data, "before");
    assert_eq!(peer_cert(addr, &ca).await, first);

    // cert-manager style rotation: new key pair and certificate written over the old files.
    let rotated = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = ca.leaf_files(rotated.path(), KeyKind::EcdsaP256);
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let second = first_cert_der(&cert);
    assert_ne!(first, second);
    wait_log(&proxy, "Certificate reloaded");
    // A reload may see the cert before the key is written; wait until handshakes present the new one.
    let deadline = tokio::time::Instant::now() + WAIT;
    while peer_cert(addr, &ca).await != second {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new handshakes never got the new certificate"
        );
        wait_log(&proxy, "Certificate reloaded");
    }
    upstream.publish("after");
    assert_eq!(
        live.next_event().await.unwrap().data,
        "after",
        "the open connection was not dropped"
    );
}

async fn peer_cert(
    addr: std::net::SocketAddr,
    ca: &TestCa,
) -> rustls::pki_types::CertificateDer<'static> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(ca.client_config(&[b"http/1.1"])));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    support::client::get_text(addr, path).await.1
}

/// Kubernetes updates a mounted ConfigMap by writing a new timestamped directory and atomically swapping the
/// `..data` symlink; `config.yaml` is a symlink through `..data`. The swap must be seen as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..2026_11_24_a")).unwrap();
    std::fs::write(
        root.join("..2026_11_24_a/config.yaml"),
        config(upstream.addr, false, None),
    )
    .unwrap();
    symlink("..2026_11_24_a", root.join("..data")).unwrap();
    symlink("..data/config.yaml", root.join("config.yaml")).unwrap();
    let proxy = support::binary::start_at(&root.join("config.yaml"), 1, true, "info");
    let addr = proxy.listen[0];
    let mut live = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    upstream.wait_connections(1).await;

    std::fs::create_dir(root.join("..2026_11_24_b")).unwrap();
    std::fs::write(
        root.join("..2026_11_24_b/config.yaml"),
        config(upstream.addr, true, None),
    )
    .unwrap();
    symlink("..2026_11_24_b", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_24_a")).unwrap();

    let line = wait_log(&proxy, "Config reloaded");
    assert!(line.contains("extra"), "{line}");
    upstream.publish("after swap");
    assert_eq!(live.next_event().await.unwrap().data, "after swap");
}

/// Issue 8, item 12: a reload that changes `limits.max_event_bytes` or `shutdown.grace` applies them (no
/// "after a restart" warning): the routes are rebuilt with the new event limit, and the drain uses the new grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_event_limit_and_grace_apply() {
    let upstream = SseUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let base = config(upstream.addr, false, None);
    let mut proxy = support::binary::start(dir.path(), &base, 1, true);
    let addr = proxy.listen[0];

    std::fs::write(
        dir.path().join("config.yaml"),
        format!("{base}limits: {{ max_event_bytes: 100 }}\nshutdown: {{ grace: 7s }}\n"),
    )
    .unwrap();
    let line = wait_log(&proxy, "Config reloaded");
    assert!(line.contains("rebuilt") && line.contains("main"), "{line}");

    let mut client = connect(addr, Proto::H1)
        .await
        .sse(addr, "/events/a", None)
        .await;
    upstream.wait_connections(1).await;
    upstream.publish("x".repeat(500));
    upstream.publish("small");
    assert_eq!(
        client.next_event().await.unwrap().data,
        "small",
        "the 500-byte event is over the reloaded 100-byte limit"
    );

    proxy.signal("TERM");
    let line = wait_log(&proxy, "Draining");
    assert!(
        line.contains("7s"),
        "the drain uses the reloaded grace: {line}"
    );
    assert_eq!(
        tokio::task::block_in_place(|| proxy.wait_exit(WAIT)),
        Some(0)
    );
    let rest = proxy.drain_log();
    assert!(
        !rest.iter().any(|l| l.contains("after a restart")),
        "{rest:?}"
    );
}
