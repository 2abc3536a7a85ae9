//! The connector of the HTTP/1.1 pass-through client, whose connections keep reading after a failed write. An
//! application may answer (413, 401) without reading the request body and close; the kernel then resets the
//! connection while pushbridge is still sending the body, and hyper's HTTP/1.1 client fails the whole exchange on
//! that write error, even with the answer already received — RFC 9112 §9.5 wants it delivered. So once a write
//! fails with a reset or broken pipe, the connection takes further writes as sent and discards them, and hyper
//! goes on to read the answer; without one the read fails or ends and the exchange fails as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::BoxError;

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Makes [`ReadAfterReset`] connections (http or https).
#[derive(Clone)]
pub(in crate::passthrough) struct Connector(HttpsConnector<HttpConnector>);

impl Connector {
    pub fn new(inner: HttpsConnector<HttpConnector>) -> Connector {
        Connector(inner)
    }
}

impl Service<Uri> for Connector {
    type Response = ReadAfterReset;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ReadAfterReset, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.0.call(dst);
        Box::pin(async move {
            Ok(ReadAfterReset {
                inner: connecting.await?,
                reset: false,
            })
        })
    }
}

/// A connection whose writes succeed (discarded) once one failed with a reset or broken pipe.
pub(in crate::passthrough) struct ReadAfterReset {
    inner: Stream,
    reset: bool,
}

impl ReadAfterReset {
    /// `Ready(Ok(n))` for a write after (or failing with) a reset; otherwise the write's own result.
    fn forgive<T>(&mut self, polled: Poll<io::Result<T>>, written: T) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Err(error)) if is_reset(&error) => {
                tracing::debug!(%error, "Pass-through upstream stopped reading: reading its answer");
                self.reset = true;
                Poll::Ready(Ok(written))
            }
            other => other,
        }
    }
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl Read for ReadAfterReset {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl Write for ReadAfterReset {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.reset {
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.forgive(polled, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.reset {
            return Poll::Ready(Ok(len));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.forgive(polled, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.forgive(polled, ())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset {
            return Poll::Ready(Ok(()));
        }
        let polled = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
        this.forgive(Poll::Ready(polled), ())
    }
}

impl Connection for ReadAfterReset {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
