//! HTTP/2 to one upstream (`protocol: h2c`, or `auto` over https): one shared connection, made on first use and
//! again once it closed, carrying each request with `:authority` = the client's Host and no `host` field (RFC 9113
//! §8.3.1) — hyper-util's pooled client cannot, as it takes `:authority` from the URI it also connects to. An
//! `auto` upstream whose ALPN picks `http/1.1` is remembered as such and served by the HTTP/1.1 pool from then on.

use std::future::poll_fn;

use http::header::HOST;
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Mutex;
use tower_service::Service;

use super::{Failure, HttpClient, RequestBody};
use crate::BoxError;

pub(super) struct Multiplexed {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://host:port/`: where to connect.
    target: Uri,
    scheme: Scheme,
    /// The upstream's authority without user-info: `:authority` for a request without a Host (HTTP/1.0).
    authority: Authority,
    /// `auto`: HTTP/1.1 when ALPN does not pick `h2`.
    auto: bool,
    /// Held while connecting, so concurrent requests wait for one connection instead of each making one.
    state: Mutex<State>,
}

enum State {
    None,
    /// The connection, numbered so a request that failed on it does not discard a newer one.
    H2(http2::SendRequest<RequestBody>, u64),
    /// `auto` upstream that chose HTTP/1.1.
    Http1,
}

enum Via {
    H2(http2::SendRequest<RequestBody>, u64),
    Http1,
}

impl Multiplexed {
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        scheme: &Scheme,
        authority: &Authority,
        auto: bool,
    ) -> Result<Multiplexed, BoxError> {
        let host = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, host)| host);
        let authority: Authority = host.parse()?;
        let target = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()?;
        Ok(Multiplexed {
            connector,
            target,
            scheme: scheme.clone(),
            authority,
            auto,
            state: Mutex::new(State::None),
        })
    }

    /// Sends `req` (its `Host` the client's) over the shared connection; when the connection turns out closed
    /// before the request went out, once more over a new one.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        http1: &HttpClient,
    ) -> Result<Response<Incoming>, Failure> {
        let (mut sender, mut number) = match self.connection(None).await? {
            Via::H2(sender, number) => (sender, number),
            Via::Http1 => {
                return Ok(http1
                    .request(req.map(RequestBody::without_trailers))
                    .await?);
            }
        };
        self.to_http2(&mut req)?;
        let mut retried = false;
        loop {
            let error = match sender.ready().await {
                Err(error) => error,
                Ok(()) => match sender.try_send_request(req).await {
                    Ok(response) => return Ok(response),
                    Err(mut error) => match error.take_message() {
                        Some(unsent) => {
                            req = unsent;
                            error.into_error()
                        }
                        None => return Err(exchange_failed(error.into_error())),
                    },
                },
            };
            if retried {
                return Err(exchange_failed(error));
            }
            tracing::debug!(%error, "HTTP/2 upstream connection unusable: retrying on a new one");
            retried = true;
            (sender, number) = match self.connection(Some(number)).await? {
                Via::H2(sender, number) => (sender, number),
                // The upstream changed its ALPN answer; the request is already in HTTP/2 form.
                Via::Http1 => return Err(exchange_failed("upstream no longer speaks HTTP/2")),
            };
        }
    }

    /// The client's Host becomes `:authority` (the URI's authority), and the `host` field goes.
    fn to_http2(&self, req: &mut Request<RequestBody>) -> Result<(), Failure> {
        let authority = match req.headers_mut().remove(HOST) {
            None => self.authority.clone(),
            // RFC 9113 §8.3.1: no user-info in `:authority`.
            Some(host) if host.as_bytes().contains(&b'@') => return Err(Failure::BadHost),
            Some(host) => Authority::try_from(host.as_bytes()).map_err(|_| Failure::BadHost)?,
        };
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Failure::BadHost)?;
        *req.version_mut() = Version::HTTP_2;
        Ok(())
    }

    /// The live connection, or a new one (also when `failed` names the current one).
    async fn connection(&self, failed: Option<u64>) -> Result<Via, Failure> {
        let mut state = self.state.lock().await;
        let mut number = 0;
        match &*state {
            State::Http1 => return Ok(Via::Http1),
            State::H2(sender, n) => {
                if !sender.is_closed() && failed != Some(*n) {
                    return Ok(Via::H2(sender.clone(), *n));
                }
                number = n.wrapping_add(1);
            }
            State::None => {}
        }
        let connect = |error: BoxError| Failure::Upstream {
            connect: true,
            error,
        };
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(connect)?;
        let io = connector.call(self.target.clone()).await.map_err(connect)?;
        if self.auto && !io.connected().is_negotiated_h2() {
            tracing::debug!(upstream = %self.target, "Pass-through upstream chose HTTP/1.1 in ALPN");
            *state = State::Http1;
            return Ok(Via::Http1);
        }
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| connect(e.into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP/2 upstream connection ended");
            }
        });
        *state = State::H2(sender.clone(), number);
        Ok(Via::H2(sender, number))
    }
}

fn exchange_failed(error: impl Into<BoxError>) -> Failure {
    Failure::Upstream {
        connect: false,
        error: error.into(),
    }
}
