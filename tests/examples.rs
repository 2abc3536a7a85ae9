//! Every shipped config (config.example.yaml and examples/*.yaml) passes validation; TLS paths are pointed at
//! a freshly made certificate and key (validation parses them as `run` does).

mod support;

use pushbridge::config::Config;

#[test]
fn shipped_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    support::certs::TestCa::new().leaf_files(dir.path(), support::certs::KeyKind::EcdsaP256);
    let tls_dir = format!("{}/", dir.path().display());
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/etc/pushbridge/tls/", &tls_dir);
            if let Err(error) = Config::parse(&path.display().to_string(), &text) {
                panic!("{} is invalid:\n{error}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "found {checked} example configs");
}

#[test]
fn per_client_mode_refuses_long_poll() {
    let yaml = r#"
listen: [{ address: "127.0.0.1:0" }]
streams:
  - path: /me
    upstream: { url: "http://127.0.0.1:1/me" }
    mode: per-client
"#;
    let error = Config::parse("t.yaml", yaml).unwrap_err().to_string();
    assert!(
        error.contains("streams[0].transports[2]") && error.contains("per-client"),
        "{error}"
    );
}

#[allow(dead_code)] // its `main` is the example's own
#[path = "../examples/chat.rs"]
mod chat;

/// Issue 16, item 1: examples/chat.yaml in front of examples/chat.rs as shipped (ports moved to free ones). A
/// client cannot read a room around the stream route, nor post into another room with a forged
/// `X-Pushbridge-Params`, through the public listener.
#[tokio::test]
async fn chat_example_keeps_its_internal_endpoints_internal() {
    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Full};
    use support::client::{Proto, connect, empty};

    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, internal_addr) =
        (public.local_addr().unwrap(), internal.local_addr().unwrap());
    tokio::spawn(chat::serve(public, internal));
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat.yaml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("127.0.0.1:8090", &public_addr.to_string())
        .replace("127.0.0.1:8091", &internal_addr.to_string());
    let dir = tempfile::tempdir().unwrap();
    let proxy = support::binary::start(dir.path(), &yaml, 1, true);
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());

    let mut reader = connect(addr, Proto::H1).await;
    let mut admins = reader.sse(addr, "/chat/admins", None).await;
    support::client::eventually("the admins room stream is up", || async {
        let (_, metrics) = support::client::get_text(admin, "/metrics").await;
        metrics.contains("pushbridge_upstream_up{route=\"chat\"} 1")
    })
    .await;

    let post = |path: &str, body: &'static str| {
        Request::post(path)
            .header("host", addr.to_string())
            .header("content-type", "text/plain")
            .header("x-pushbridge-params", "room=admins")
            .header("x-pushbridge-stream", "chat")
            .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
            .unwrap()
    };
    let mut client = connect(addr, Proto::H1).await;
    let read = Request::get("/internal/events/admins")
        .header("host", addr.to_string())
        .body(empty())
        .unwrap();
    assert_eq!(client.send(read).await.status(), 404);
    let forged = client
        .send(post("/internal/messages", "forged direct"))
        .await;
    assert_eq!(forged.status(), 404);
    // Through the stream route the room is the one posted to, whatever the client claims.
    let lobby = client.send(post("/chat/lobby", "forged via lobby")).await;
    assert_eq!(lobby.status(), 204);
    let marker = client.send(post("/chat/admins", "marker")).await;
    assert_eq!(marker.status(), 204);
    let event = admins.next_event().await.unwrap();
    assert!(event.data.contains("\"text\":\"marker\""), "{}", event.data);
    assert!(event.data.contains("\"room\":\"admins\""), "{}", event.data);
}

#[allow(dead_code)] // its `main` is the example's own
#[path = "../examples/publish_app.rs"]
mod publish_app;

/// Issue 18: examples/publish.yaml in front of examples/publish_app.rs as shipped (ports moved to free ones): the
/// app's handler publishes with one HTTP call and an SSE subscriber of the order's stream gets the event.
#[tokio::test]
async fn publish_example_handler_reaches_a_subscriber() {
    use support::client::{Proto, connect};

    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/publish.yaml"
    ))
    .unwrap()
    .replace("127.0.0.1:8080", "127.0.0.1:0")
    .replace("127.0.0.1:9090", "127.0.0.1:0")
    .replace("127.0.0.1:9091", "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let proxy = support::binary::start(dir.path(), &yaml, 1, true);
    let addr = proxy.listen[0];
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    tokio::spawn(publish_app::serve(
        app,
        publish_app::Pushbridge {
            address: proxy.publish.unwrap(),
            token: "dev-token".into(),
        },
    ));
    let mut sse = connect(addr, Proto::H1)
        .await
        .sse(addr, "/orders/42", None)
        .await;
    let mut client = connect(app_addr, Proto::H1).await;
    let request = http::Request::post("/orders/42/paid")
        .header("host", app_addr.to_string())
        .body(support::client::empty())
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.status(), 200);
    let event = sse.next_event().await.unwrap();
    assert_eq!(event.event.as_deref(), Some("paid"));
    assert_eq!(event.data, r#"{"order":"42","status":"paid"}"#);
}
