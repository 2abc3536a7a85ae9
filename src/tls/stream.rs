//! A server TLS connection on a TCP socket, driven through rustls's unbuffered API (`rustls::unbuffered`), that
//! holds no buffer while idle. tokio-rustls keeps rustls's 4 KiB read buffer for the life of a connection; here
//! the socket is read only once it is readable, into a buffer taken for that read and given back as soon as every
//! record in it is processed. TLS bytes to send and decrypted bytes not yet read are kept only until they are
//! written or read. Bytes keep their order both ways: records are decrypted in arrival order and handed out in
//! that order; handshake records rustls queues (session tickets, key updates, alerts) and encrypted writes are
//! appended to one output buffer in the order rustls produces them and sent from its front.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read (rustls reads 4 KiB at a time too). A record longer than what is buffered
/// grows the buffer by this much per read, up to [`MAX_INCOMING`].
const READ_SIZE: usize = 4096;
/// The most TLS bytes held unprocessed: a handshake message of up to 64 KiB (rustls's limit) plus a record.
const MAX_INCOMING: usize = 0xffff + 16 * 1024 + 2048 + 5;
/// The most plaintext one write encrypts; the rest waits for the next write.
const MAX_WRITE: usize = 64 * 1024;
/// Room for each record's header, content type, padding and tag (TLS 1.2 and 1.3, every suite rustls offers);
/// a shortfall is retried with the size rustls asks for.
const RECORD_OVERHEAD: usize = 64;
/// Largest plaintext per record (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 16 * 1024;

/// Completes the server handshake on `tcp`. Bytes the client sent after its handshake are kept for the first
/// read. Callers bound the time it may take.
pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
    let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let mut tls = TlsStream {
        io: tcp,
        conn,
        incoming: Vec::new(),
        consumed: 0,
        outgoing: Vec::new(),
        sent: 0,
        plain: Vec::new(),
        taken: 0,
        read_closed: false,
        socket_eof: false,
        close_queued: false,
    };
    poll_fn(|cx| tls.poll_handshake(cx)).await?;
    Ok(tls)
}

/// A TLS connection after its handshake (see the module docs).
pub struct TlsStream {
    io: TcpStream,
    conn: UnbufferedServerConnection,
    /// TLS bytes read, those before `consumed` already processed (the rest is part of a record, or of a handshake
    /// message); unallocated when all are. Processed bytes are dropped from the front only when a read needs the
    /// room, so many small records cost one copy, not one each.
    incoming: Vec<u8>,
    consumed: usize,
    /// TLS bytes to send, those before `sent` already sent; unallocated when all are.
    outgoing: Vec<u8>,
    sent: usize,
    /// Decrypted bytes, those before `taken` already read; unallocated when all are.
    plain: Vec<u8>,
    taken: usize,
    /// The peer's `close_notify` arrived: reads return end of file once `plain` is read.
    read_closed: bool,
    /// The socket ended without a `close_notify`: reads fail with `UnexpectedEof` once `plain` is read (a truncation
    /// the application must not take for a clean end, as with tokio-rustls).
    socket_eof: bool,
    /// Our `close_notify` is queued: nothing more may be written.
    close_queued: bool,
}

/// Where processing the buffered records stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Everything buffered is processed; application data may be sent.
    Traffic,
    /// The handshake needs more bytes from the peer.
    NeedData,
    /// The peer's `close_notify` arrived (reported once by rustls, remembered in `read_closed`).
    PeerClosed,
    /// Both sides have sent `close_notify`: nothing more either way.
    Closed,
}

/// What to do once rustls allows application data.
enum Action<'a> {
    None,
    Encrypt(&'a [u8]),
    CloseNotify,
}

impl TlsStream {
    /// The protocol ALPN chose, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Whether the handshake was full or resumed.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.conn.handshake_kind()
    }

    /// Bytes of buffer the connection holds outside rustls's own state.
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let step = match self.process(&mut Action::None) {
                Ok(step) => step,
                Err(error) => return self.fail(cx, error),
            };
            ready!(self.poll_send(cx))?;
            match step {
                // TLS 1.3 lets a server send before the client's Finished: the handshake is not over yet.
                Step::Traffic if !self.conn.is_handshaking() => return Poll::Ready(Ok(())),
                Step::Traffic | Step::NeedData => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(unexpected_eof()));
                    }
                }
                Step::PeerClosed | Step::Closed => return Poll::Ready(Err(unexpected_eof())),
            }
        }
    }

    /// Sends what the socket takes at once of the alert queued for `error`, then fails with it.
    fn fail<T>(&mut self, cx: &mut Context<'_>, error: io::Error) -> Poll<io::Result<T>> {
        let _ = self.poll_send(cx);
        Poll::Ready(Err(error))
    }

    /// Processes the buffered records until rustls needs more input or allows application data (then performs
    /// `action` and sets it to `None`), or reports the peer's close. Decrypted data goes to `plain`, TLS bytes to
    /// send to `outgoing`.
    fn process(&mut self, action: &mut Action<'_>) -> io::Result<Step> {
        loop {
            let UnbufferedStatus { mut discard, state } = self
                .conn
                .process_tls_records(&mut self.incoming[self.consumed..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.discard(discard);
                    self.queue_alert();
                    return Err(invalid(error));
                }
            };
            let step = match state {
                ConnectionState::ReadTraffic(mut read) => {
                    // Every record is taken: rustls has already committed to them.
                    while let Some(record) = read.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        if self.taken == self.plain.len() {
                            self.plain.clear();
                            self.taken = 0;
                        }
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.outgoing, &mut encode)?;
                    None
                }
                // `outgoing` is sent from its front, in order, before anything appended later.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Step::NeedData),
                // Set here, not by the caller: rustls reports `PeerClosed` once, maybe while `plain` still holds the
                // data that came before it.
                ConnectionState::PeerClosed => {
                    self.read_closed = true;
                    Some(Step::PeerClosed)
                }
                ConnectionState::Closed => {
                    self.read_closed = true;
                    Some(Step::Closed)
                }
                ConnectionState::WriteTraffic(mut write) => {
                    match std::mem::replace(action, Action::None) {
                        Action::None => {}
                        Action::Encrypt(data) => {
                            let records = data.len().div_ceil(MAX_FRAGMENT).max(1);
                            let room = data.len() + records * RECORD_OVERHEAD;
                            append(&mut self.outgoing, room, |out| write.encrypt(data, out))?;
                        }
                        Action::CloseNotify => {
                            append(&mut self.outgoing, RECORD_OVERHEAD, |out| {
                                write.queue_close_notify(out)
                            })?;
                        }
                    }
                    Some(Step::Traffic)
                }
                ConnectionState::ReadEarlyData(_) => {
                    return Err(invalid("early data, which is not enabled"));
                }
                other => return Err(invalid(format!("unexpected TLS state {other:?}"))),
            };
            self.discard(discard);
            if let Some(step) = step {
                return Ok(step);
            }
        }
    }

    /// After an error, the fatal alert rustls queued (if any) goes to `outgoing`, for the caller to try to send.
    /// Only while records are queued: rustls hands them out before it deframes again, which would fail again.
    fn queue_alert(&mut self) {
        while self.conn.wants_write() {
            let UnbufferedStatus { discard, state } = self
                .conn
                .process_tls_records(&mut self.incoming[self.consumed..]);
            let encoded = match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, &mut encode).is_ok()
                }
                _ => false,
            };
            self.discard(discard);
            if !encoded {
                return;
            }
        }
    }

    /// Marks the next `n` bytes of `incoming` processed, freeing it when nothing is left.
    fn discard(&mut self, n: usize) {
        self.consumed += n;
        if self.consumed >= self.incoming.len() {
            self.incoming = Vec::new();
            self.consumed = 0;
        }
    }

    /// Reads once the socket is readable, into `incoming` (taken for the read, freed again if nothing came):
    /// the number of bytes read, 0 at the end of file.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            if self.incoming.is_empty() {
                self.incoming = Vec::new();
            }
            ready!(self.io.poll_read_ready(cx))?;
            let held = self.incoming.len() - self.consumed;
            if held >= MAX_INCOMING {
                return Poll::Ready(Err(invalid("a TLS message larger than 64 KiB")));
            }
            let want = READ_SIZE.min(MAX_INCOMING - held);
            if self.incoming.capacity() - self.incoming.len() < want {
                // The processed front makes room first; the buffer grows only if that is not enough.
                if self.consumed > 0 {
                    self.incoming.copy_within(self.consumed.., 0);
                    self.incoming.truncate(held);
                    self.consumed = 0;
                }
                if self.incoming.capacity() - self.incoming.len() < want {
                    self.incoming.reserve_exact(want);
                }
            }
            match self.io.try_read_buf(&mut self.incoming) {
                Ok(n) => return Poll::Ready(Ok(n)),
                // tokio cleared the readiness: the next turn waits for the socket again.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// Sends `outgoing` from `sent` on; freed once all is sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Copies decrypted bytes into `buf`; freed once all are read.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.plain.len() - self.taken).min(buf.remaining());
        buf.put_slice(&self.plain[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plain.len() {
            self.plain = Vec::new();
            self.taken = 0;
        }
    }

    /// Runs `action` at the next point rustls allows application data (past a `close_notify` it reports first).
    fn perform(&mut self, mut action: Action<'_>) -> io::Result<()> {
        while !matches!(action, Action::None) {
            match self.process(&mut action)? {
                Step::Traffic => {}
                Step::PeerClosed => {}
                Step::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
                Step::NeedData => return Err(invalid("write before the handshake completed")),
            }
        }
        Ok(())
    }
}

/// Appends the handshake record `encode` holds to `out`.
fn encode_into<Data>(out: &mut Vec<u8>, encode: &mut EncodeTlsData<'_, Data>) -> io::Result<()> {
    let at = out.len();
    // Asked with no room, rustls says the record's size: `out` grows by that much only.
    let mut room = 0;
    loop {
        out.resize(at + room, 0);
        match encode.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size
            }
            Err(error) => {
                out.truncate(at);
                return Err(invalid(error));
            }
        }
    }
}

/// Lets `fill` write into `out` past its end, with `room` bytes to begin with and what rustls asks for after.
fn append<E: Into<EncryptError>>(
    out: &mut Vec<u8>,
    mut room: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> io::Result<()> {
    let at = out.len();
    loop {
        out.resize(at + room, 0);
        match fill(&mut out[at..]).map_err(Into::into) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size
            }
            Err(error) => {
                out.truncate(at);
                return Err(invalid(error));
            }
        }
    }
}

/// The end of the socket before the peer's `close_notify` (the message rustls's own reader gives).
fn unexpected_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed connection without sending TLS close_notify",
    )
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.plain.len() {
                this.take_plain(buf);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            if this.socket_eof {
                return Poll::Ready(Err(unexpected_eof()));
            }
            let step = match this.process(&mut Action::None) {
                Ok(step) => step,
                Err(error) => return this.fail(cx, error),
            };
            // Whatever processing queued (a key update's answer, an alert) goes out now if the socket takes it;
            // if not, with the next write or flush.
            if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
            if this.taken < this.plain.len() {
                continue;
            }
            // `process` set `read_closed` on the peer's close_notify; otherwise every full record is processed.
            if matches!(step, Step::Traffic | Step::NeedData) && ready!(this.poll_fill(cx))? == 0 {
                this.socket_eof = true;
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    /// Encrypts up to [`MAX_WRITE`] bytes of `buf` and sends what the socket takes; what it does not take goes
    /// before the next write, which waits for it (so at most one write's bytes wait), or with a flush.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        if this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_WRITE);
        this.perform(Action::Encrypt(&buf[..n]))?;
        if let Poll::Ready(Err(error)) = this.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends a `close_notify`, then ends the socket's sending side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            ready!(this.poll_send(cx))?;
            this.perform(Action::CloseNotify)?;
            this.close_queued = true;
        }
        ready!(this.poll_send(cx))?;
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            Err(error) if error.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
