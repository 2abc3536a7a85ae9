//! A WebSocket push server (tokio-tungstenite) on 127.0.0.1:0 as an application's `ws` upstream: sends every
//! logged message after the `since` query parameter, then new ones as they are published; agrees to the
//! `v1.feed` subprotocol; plain or TLS (a fresh self-signed certificate, for `wss://`); can be killed and
//! restarted on the same port, or frozen (stops reading, so pings go unanswered).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_util::sync::CancellationToken;

use super::client::WAIT;
use super::feeds::Log;

/// What one upstream connection asked for.
#[derive(Debug, Clone, Default)]
pub struct WsRequest {
    pub since: Option<String>,
    pub protocol: Option<String>,
    pub authorization: Option<String>,
}

struct State {
    log: Log<Message>,
    requests: Mutex<Vec<WsRequest>>,
    connections: watch::Sender<usize>,
    /// Bumped by `freeze`: connections opened before the bump hang.
    frozen: watch::Sender<u64>,
}

pub struct WsUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Mutex<CancellationToken>,
    tls: Option<TlsAcceptor>,
}

impl WsUpstream {
    pub async fn start() -> WsUpstream {
        WsUpstream::with_tls(None).await
    }

    /// A `wss://` server; also returns the PEM of its self-signed certificate (for `ca_file`).
    pub async fn start_tls() -> (WsUpstream, String) {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let (cert_pem, key_pem) =
            pushbridge::tls::self_signed(&["localhost", "127.0.0.1"]).unwrap();
        let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let upstream = WsUpstream::with_tls(Some(TlsAcceptor::from(Arc::new(tls)))).await;
        (upstream, cert_pem)
    }

    async fn with_tls(tls: Option<TlsAcceptor>) -> WsUpstream {
        let state = Arc::new(State {
            log: Log::new(),
            requests: Mutex::new(Vec::new()),
            connections: watch::Sender::new(0),
            frozen: watch::Sender::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, state.clone(), stop.clone(), tls.clone()));
        WsUpstream {
            addr,
            state,
            stop: Mutex::new(stop),
            tls,
        }
    }

    /// Logs a text message with `id` (what `since` is compared with) and sends it to every connection.
    pub fn publish(&self, id: &str, text: impl Into<String>) {
        self.state.log.push(Some(id), Message::text(text.into()));
    }

    pub fn publish_binary(&self, bytes: &'static [u8]) {
        self.state.log.push(None, Message::binary(bytes));
    }

    /// Closes the listener and every connection.
    pub fn kill(&self) {
        self.stop.lock().unwrap().cancel();
    }

    pub async fn restart(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            self.state.clone(),
            stop.clone(),
            self.tls.clone(),
        ));
        *self.stop.lock().unwrap() = stop;
    }

    /// Open connections stop reading and writing (a hung upstream); new ones are served normally.
    pub fn freeze(&self) {
        self.state.frozen.send_modify(|f| *f += 1);
    }

    pub fn requests(&self) -> Vec<WsRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub async fn wait_connections(&self, n: usize) {
        let mut rx = self.state.connections.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|&c| c >= n))
            .await
            .expect("upstream connections in time")
            .expect("upstream alive");
    }
}

async fn accept(
    listener: TcpListener,
    state: Arc<State>,
    stop: CancellationToken,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let (state, stop, tls) = (state.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve(tcp, state, stop).await,
                Some(tls) => {
                    if let Ok(stream) = tls.accept(tcp).await {
                        serve(stream, state, stop).await;
                    }
                }
            }
        });
    }
}

// tungstenite's handshake callback returns its large `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn serve<S>(tcp: S, state: Arc<State>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = WsRequest::default();
    let callback = |request: &Request, mut response: Response| {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        seen.since = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "since")
            .map(|(_, v)| v.into_owned());
        seen.protocol = header("sec-websocket-protocol");
        seen.authorization = header("authorization");
        if seen.protocol.as_deref() == Some("v1.feed") {
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static("v1.feed"),
            );
        }
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let mut next = state.log.start(seen.since.as_deref());
    state.requests.lock().unwrap().push(seen);
    state.connections.send_modify(|c| *c += 1);
    let mut len = state.log.watch();
    let mut frozen = state.frozen.subscribe();
    let opened = *frozen.borrow();
    loop {
        for message in state.log.from(next) {
            // Killed: send nothing more, even what was logged since.
            if stop.is_cancelled() {
                return;
            }
            next += 1;
            if ws.send(message).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = async { drop(frozen.wait_for(|&f| f > opened).await) } => {
                stop.cancelled().await;
                return;
            }
            changed = len.changed() => if changed.is_err() { return },
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}
