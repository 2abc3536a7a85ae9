//! Reading permessage-deflate client messages through tungstenite, which refuses RSV1 (it knows no extension):
//! [`Rsv1Reader`] follows the frame headers of the bytes read from the client, and for each data message's first
//! frame records whether RSV1 (compressed) was set. On a compressed message it clears RSV1 and turns a text
//! opcode into binary, so tungstenite neither fails it nor checks compressed bytes as UTF-8; the session inflates
//! it ([`inflate`]) and checks the text itself. RSV1 anywhere else (control and continuation frames, RFC 7692
//! §6.1) is left for tungstenite to refuse.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How a client data message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    pub compressed: bool,
    /// Sent as a text message (tungstenite sees a compressed one as binary).
    pub text: bool,
}

/// The record of data messages read so far, in order; the session takes one per message tungstenite yields.
pub type Arrivals = Arc<Mutex<VecDeque<Arrived>>>;

/// Where the reader is in the client's frame stream.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The first header byte (FIN, RSV, opcode) is next.
    Start,
    /// The length byte is next.
    Length,
    /// `left` bytes of an extended length, then the mask (if `masked`).
    ExtLength {
        left: u8,
        len: u64,
        masked: bool,
    },
    /// `left` bytes of masking key, then `len` bytes of payload.
    Mask {
        left: u8,
        len: u64,
    },
    Payload {
        left: u64,
    },
}

pin_project_lite::pin_project! {
    /// A transport whose incoming WebSocket frames are rewritten as the module says (when `arrivals` is set:
    /// permessage-deflate was negotiated); writes pass through.
    pub struct Rsv1Reader<IO> {
        #[pin]
        io: IO,
        at: At,
        masked: bool,
        arrivals: Option<Arrivals>,
    }
}

impl<IO> Rsv1Reader<IO> {
    pub fn new(io: IO, arrivals: Option<Arrivals>) -> Self {
        Rsv1Reader {
            io,
            at: At::Start,
            masked: false,
            arrivals,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for Rsv1Reader<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(arrivals)) = (&polled, this.arrivals.as_ref()) {
            let new = &mut buf.filled_mut()[before..];
            scan(new, this.at, this.masked, arrivals);
        }
        polled
    }
}

/// Follows the frame headers through `bytes`, rewriting the first byte of compressed data messages.
fn scan(bytes: &mut [u8], at: &mut At, masked: &mut bool, arrivals: &Arrivals) {
    let mut i = 0;
    while i < bytes.len() {
        match *at {
            At::Start => {
                let b = bytes[i];
                let opcode = b & 0x0f;
                // Text or binary: the first frame of a message.
                if opcode == 1 || opcode == 2 {
                    let compressed = b & 0x40 != 0;
                    if compressed {
                        bytes[i] = (b & !0x40 & 0xf0) | 2;
                    }
                    if let Ok(mut queue) = arrivals.lock() {
                        queue.push_back(Arrived {
                            compressed,
                            text: opcode == 1,
                        });
                    }
                }
                i += 1;
                *at = At::Length;
            }
            At::Length => {
                let b = bytes[i];
                i += 1;
                *masked = b & 0x80 != 0;
                *at = match b & 0x7f {
                    126 => At::ExtLength {
                        left: 2,
                        len: 0,
                        masked: *masked,
                    },
                    127 => At::ExtLength {
                        left: 8,
                        len: 0,
                        masked: *masked,
                    },
                    n => after_length(u64::from(n), *masked),
                };
            }
            At::ExtLength { left, len, masked } => {
                let len = (len << 8) | u64::from(bytes[i]);
                i += 1;
                *at = if left == 1 {
                    after_length(len, masked)
                } else {
                    At::ExtLength {
                        left: left - 1,
                        len,
                        masked,
                    }
                };
            }
            At::Mask { left, len } => {
                i += 1;
                *at = if left == 1 {
                    payload(len)
                } else {
                    At::Mask {
                        left: left - 1,
                        len,
                    }
                };
            }
            At::Payload { left } => {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - i);
                i += take;
                *at = payload(left - take as u64);
            }
        }
    }
}

fn after_length(len: u64, masked: bool) -> At {
    if masked {
        At::Mask { left: 4, len }
    } else {
        payload(len)
    }
}

fn payload(len: u64) -> At {
    if len == 0 {
        At::Start
    } else {
        At::Payload { left: len }
    }
}

impl<IO: AsyncWrite> AsyncWrite for Rsv1Reader<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Why a compressed message was not inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the bound (close 1009).
    TooBig,
    /// Not valid deflate data (close 1007).
    Invalid,
}

/// The inflater of one session's client messages: a fresh window per message when the client agreed to
/// `client_no_context_takeover`, otherwise one kept from the first compressed message on.
pub struct Inflater {
    keep: bool,
    kept: Option<Box<Decompress>>,
}

impl Inflater {
    pub fn new(client_no_context_takeover: bool) -> Self {
        Inflater {
            keep: !client_no_context_takeover,
            kept: None,
        }
    }

    /// Inflates one message (RFC 7692 §7.2.2: its payload with `00 00 ff ff` appended), allocating at most
    /// `max + 1` bytes of output.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<Bytes, InflateError> {
        let mut fresh;
        let decompress = if self.keep {
            self.kept
                .get_or_insert_with(|| Box::new(Decompress::new(false)))
        } else {
            fresh = Decompress::new(false);
            &mut fresh
        };
        let result = inflate(decompress, payload, max);
        if result.is_err() {
            // A kept window is unusable after an error; the session closes anyway.
            self.kept = None;
        }
        result
    }
}

fn inflate(decompress: &mut Decompress, payload: &[u8], max: usize) -> Result<Bytes, InflateError> {
    const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
    let limit = max.saturating_add(1);
    let mut out = Vec::with_capacity(payload.len().saturating_mul(4).clamp(64, limit));
    'inputs: for input in [payload, &TAIL[..]] {
        let start = decompress.total_in();
        loop {
            let consumed = usize::try_from(decompress.total_in() - start)
                .map_err(|_| InflateError::Invalid)?;
            let (before_in, before_out) = (decompress.total_in(), out.len());
            let status = decompress
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): the message ends here; a kept window starts over.
                decompress.reset(false);
                break 'inputs;
            }
            let all_in = decompress.total_in() - start == input.len() as u64;
            if all_in && out.len() < out.capacity() {
                break;
            }
            if out.len() == out.capacity() {
                // Grow, but never past the bound (+1 to tell "exactly max" from "more").
                let room = out.capacity().saturating_mul(2).min(limit);
                if room <= out.capacity() {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(room - out.len());
            } else if decompress.total_in() == before_in && out.len() == before_out {
                return Err(InflateError::Invalid);
            }
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        Compress::new(Compression::default(), false)
            .compress_vec(data, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn inflates_within_the_bound() {
        let text = b"hello hello hello hello hello".repeat(100);
        let compressed = deflate(&text);
        let mut inflater = Inflater::new(true);
        assert_eq!(
            &inflater.inflate(&compressed, text.len()).unwrap()[..],
            &text[..]
        );
        assert_eq!(
            inflater.inflate(&compressed, text.len() - 1),
            Err(InflateError::TooBig)
        );
        assert_eq!(
            inflater.inflate(b"\xff\xff\xff", 100),
            Err(InflateError::Invalid)
        );
    }

    #[test]
    fn bomb_stops_at_the_bound() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = deflate(&zeros);
        assert!(bomb.len() < 16 << 10, "{}", bomb.len());
        let mut inflater = Inflater::new(true);
        assert_eq!(inflater.inflate(&bomb, 1 << 20), Err(InflateError::TooBig));
    }

    #[test]
    fn context_takeover_keeps_the_window() {
        // Two messages from one compressor: the second refers back into the first.
        let mut compressor = Compress::new(Compression::default(), false);
        let mut messages = Vec::new();
        for text in [
            &b"a repeated sentence, a repeated sentence"[..],
            b"a repeated sentence",
        ] {
            let mut out = Vec::with_capacity(256);
            compressor
                .compress_vec(text, &mut out, FlushCompress::Sync)
                .unwrap();
            out.truncate(out.len() - 4);
            messages.push((out, text));
        }
        let mut inflater = Inflater::new(false);
        for (compressed, text) in messages {
            assert_eq!(&inflater.inflate(&compressed, 1000).unwrap()[..], text);
        }
    }

    #[test]
    fn scan_rewrites_compressed_starts_only() {
        let arrivals = Arrivals::default();
        // Compressed masked text "x" of 3 bytes split across reads, a ping, an uncompressed binary of 130 bytes.
        let mut frames = vec![0xc1, 0x83, 1, 2, 3, 4, 9, 9, 9, 0x89, 0x80, 1, 2, 3, 4];
        frames.extend([0x82, 0xfe, 0, 130, 1, 2, 3, 4]);
        frames.extend([7u8; 130]);
        let (mut at, mut masked) = (At::Start, false);
        let (a, b) = frames.split_at_mut(5);
        scan(a, &mut at, &mut masked, &arrivals);
        scan(b, &mut at, &mut masked, &arrivals);
        assert_eq!(frames[0], 0x82);
        assert_eq!(frames[9], 0x89);
        assert!(matches!(at, At::Start));
        let got: Vec<_> = arrivals.lock().unwrap().drain(..).collect();
        assert_eq!(
            got,
            [
                Arrived {
                    compressed: true,
                    text: true
                },
                Arrived {
                    compressed: false,
                    text: false
                }
            ]
        );
    }
}
