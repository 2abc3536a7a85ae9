//! An application written as short request handlers (what PHP, Rails, Django or a serverless function does) that
//! publishes to pushbridge with one HTTP call per event — no stream held open, nothing to poll. `POST /orders/{id}/paid`
//! marks an order paid and publishes `{"data": {...}, "event": "paid"}` to the stream `/orders/{id}`; every client
//! subscribed there (SSE, WebSocket, long-poll) gets it. The same call in a shell:
//!
//!   curl -H "Authorization: Bearer $PUBLISH_TOKEN" -H 'Content-Type: application/json' \
//!        -d '{"data": {"order": "42"}, "event": "paid"}' http://127.0.0.1:9091/orders/42
//!
//! cargo run -- run -c examples/publish.yaml      # pushbridge: clients on :8080, the publish listener on :9091
//! cargo run --example publish_app                  # this app on 127.0.0.1:8090 (PUBLISH_TOKEN: dev-token)
//! curl -N http://127.0.0.1:8080/orders/42 -H 'Accept: text/event-stream' &   # a subscriber
//! curl -X POST http://127.0.0.1:8090/orders/42/paid                          # the handler publishes

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pushbridge::BoxError;

/// Where the app publishes: pushbridge's `publish.address` and `publish.token`.
#[derive(Clone)]
pub struct Pushbridge {
    pub address: SocketAddr,
    pub token: String,
}

impl Pushbridge {
    /// The one HTTP call: `POST /orders/{id}` with a JSON event. Returns pushbridge's answer
    /// (`{"published": 1, "ids": [...], "subscribers": K}`).
    pub async fn publish(
        &self,
        stream: &str,
        event: serde_json::Value,
    ) -> Result<String, BoxError> {
        let tcp = tokio::net::TcpStream::connect(self.address).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = Request::post(stream)
            .header("host", self.address.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event.to_string())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != StatusCode::OK {
            return Err(format!("publish failed: {status} {body}").into());
        }
        Ok(body)
    }
}

/// The handler: `POST /orders/{id}/paid` → publish, answer with pushbridge's answer.
async fn handle(pushbridge: Pushbridge, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let order = path
        .strip_prefix("/orders/")
        .and_then(|rest| rest.strip_suffix("/paid"))
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    let (status, body) = match order {
        Some(id) if req.method() == http::Method::POST => {
            let event =
                serde_json::json!({ "data": { "order": id, "status": "paid" }, "event": "paid" });
            match pushbridge.publish(&format!("/orders/{id}"), event).await {
                Ok(answer) => (StatusCode::OK, answer),
                Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
            }
        }
        _ => (StatusCode::NOT_FOUND, "POST /orders/{id}/paid\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Serves the app on `listener`.
pub async fn serve(listener: tokio::net::TcpListener, pushbridge: Pushbridge) {
    while let Ok((tcp, _)) = listener.accept().await {
        let pushbridge = pushbridge.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let pushbridge = pushbridge.clone();
                async move { Ok::<_, Infallible>(handle(pushbridge, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let pushbridge = Pushbridge {
        address: std::env::var("PUSHBRIDGE_PUBLISH")
            .unwrap_or_else(|_| "127.0.0.1:9091".into())
            .parse()?,
        token: std::env::var("PUBLISH_TOKEN").unwrap_or_else(|_| "dev-token".into()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    println!(
        "app on http://127.0.0.1:8090, publishing to {}",
        pushbridge.address
    );
    serve(listener, pushbridge).await;
    Ok(())
}
