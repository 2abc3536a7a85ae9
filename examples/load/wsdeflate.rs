//! The WebSocket client of `--ws-deflate`: RFC 6455 by hand (tungstenite 0.30 has no permessage-deflate and fails
//! a connection on any RSV1 frame), offering permessage-deflate (RFC 7692) in the handshake with `--ws-offer`'s
//! parameters. A message whose first frame has RSV1 set is inflated with a raw inflater after appending
//! `00 00 ff ff` (§7.2.2); the inflater's window is kept between messages, so servers that compress per
//! connection with context takeover are read too.
//! Pings get a masked pong; anything else is read and dropped. Client inflate CPU is spent here, in the load
//! tool, not in the server under test.

use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::{Tally, Window, stamp};

type BoxError = pushbridge::BoxError;

/// Largest message (inflated or not) the client accepts.
const MAX_MESSAGE: usize = 1 << 20;
/// Read buffer to start with (as the tungstenite clients); grown only for a longer frame.
const READ_BUFFER: usize = 4096;
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the handshake agreed.
pub struct Socket {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` not yet parsed: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Set when the server accepted permessage-deflate.
    inflater: Option<Inflater>,
}

struct Inflater {
    raw: Decompress,
    /// `server_no_context_takeover`: every message from an empty window (reported; the window is kept anyway).
    #[cfg_attr(not(test), allow(dead_code))]
    reset: bool,
    /// The payload and the tail.
    input: Vec<u8>,
    out: Vec<u8>,
}

/// Opens the WebSocket at `path`, offering `offer` (a `Sec-WebSocket-Extensions` value) when it is not empty.
pub async fn open(
    mut tcp: TcpStream,
    host: &str,
    path: &str,
    offer: &str,
) -> Result<Socket, BoxError> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !offer.is_empty() {
        request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = vec![0; READ_BUFFER];
    let mut end = 0;
    loop {
        if end == buf.len() {
            return Err("handshake answer too long".into());
        }
        let n = tcp.read(&mut buf[end..]).await?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        end += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(&buf[..end])? else {
            continue;
        };
        if response.code != Some(101) {
            return Err(format!("handshake status {:?}", response.code).into());
        }
        let extensions: Vec<String> = response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
            .collect();
        let inflater = negotiated(&extensions)?;
        return Ok(Socket {
            tcp,
            buf,
            start: head,
            end,
            inflater,
        });
    }
}

/// The inflater the server's `Sec-WebSocket-Extensions` answer calls for.
fn negotiated(answers: &[String]) -> Result<Option<Inflater>, BoxError> {
    let params: Vec<&str> = answers
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|ext| ext.split(';').next().map(str::trim) == Some("permessage-deflate"))
        .flat_map(|ext| ext.split(';').skip(1).map(str::trim))
        .collect();
    if answers.iter().any(|a| a.contains("permessage-deflate")) {
        // A 32 KiB window inflates whatever `server_max_window_bits` the server chose.
        Ok(Some(Inflater {
            raw: Decompress::new(false),
            reset: params.contains(&"server_no_context_takeover"),
            input: Vec::new(),
            out: Vec::new(),
        }))
    } else {
        Ok(None)
    }
}

impl Socket {
    /// Whether the server accepted permessage-deflate.
    pub fn deflate(&self) -> bool {
        self.inflater.is_some()
    }

    /// Reads messages until the connection fails or closes, recording each event and the payload bytes.
    pub async fn read(mut self, window: &Window, tally: &mut Tally) -> Result<(), BoxError> {
        let mut message: Vec<u8> = Vec::new();
        let mut compressed = false;
        let mut in_message = false;
        loop {
            let (header, len) = self.frame_header().await?;
            self.fill(header + len).await?;
            let at = self.start;
            let (b0, payload) = (self.buf[at], at + header..at + header + len);
            let opcode = b0 & 0x0f;
            let fin = b0 & 0x80 != 0;
            match opcode {
                0x8 => return Err("closed by the server".into()),
                0x9 => {
                    let pong = frame(0xa, &self.buf[payload.clone()]);
                    self.tcp.write_all(&pong).await?;
                }
                0xa => {}
                0x0..=0x2 => {
                    if opcode != 0 {
                        in_message = true;
                        compressed = b0 & 0x40 != 0;
                        message.clear();
                    } else if !in_message {
                        return Err("continuation without a message".into());
                    }
                    if message.len() + len > MAX_MESSAGE {
                        return Err("message too large".into());
                    }
                    message.extend_from_slice(&self.buf[payload]);
                    if fin {
                        in_message = false;
                        self.deliver(&message, compressed, window, tally)?;
                    }
                }
                _ => return Err(format!("opcode {opcode}").into()),
            }
            self.start += header + len;
        }
    }

    fn deliver(
        &mut self,
        payload: &[u8],
        compressed: bool,
        window: &Window,
        tally: &mut Tally,
    ) -> Result<(), BoxError> {
        let text: &[u8] = if compressed {
            let inflater = self
                .inflater
                .as_mut()
                .ok_or("RSV1 without permessage-deflate")?;
            inflater.inflate(payload)?
        } else {
            payload
        };
        tally.payload(window, payload.len(), text.len());
        if let Some(stamp) = stamp(text) {
            tally.record(window, stamp);
        }
        Ok(())
    }

    /// Waits for a whole frame header; its length and the payload length. Server frames are unmasked.
    async fn frame_header(&mut self) -> Result<(usize, usize), BoxError> {
        self.fill(2).await?;
        let b1 = self.buf[self.start + 1];
        if b1 & 0x80 != 0 {
            return Err("masked frame from the server".into());
        }
        let (header, len) = match b1 & 0x7f {
            126 => {
                self.fill(4).await?;
                let s = self.start;
                (
                    4,
                    usize::from(u16::from_be_bytes([self.buf[s + 2], self.buf[s + 3]])),
                )
            }
            127 => {
                self.fill(10).await?;
                let s = self.start;
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.buf[s + 2..s + 10]);
                (10, usize::try_from(u64::from_be_bytes(bytes))?)
            }
            n => (2, usize::from(n)),
        };
        if len > MAX_MESSAGE {
            return Err("frame too large".into());
        }
        Ok((header, len))
    }

    /// Reads until `buf[start..]` holds at least `n` bytes.
    async fn fill(&mut self, n: usize) -> Result<(), BoxError> {
        while self.end - self.start < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            let read = self.tcp.read(&mut self.buf[self.end..]).await?;
            if read == 0 {
                return Err("socket ended".into());
            }
            self.end += read;
        }
        Ok(())
    }
}

impl Inflater {
    /// The inflated message (RFC 7692 §7.2.2), bounded by [`MAX_MESSAGE`].
    fn inflate(&mut self, payload: &[u8]) -> Result<&[u8], BoxError> {
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&TAIL);
        self.out.clear();
        let mut used = 0;
        loop {
            if self.out.len() == self.out.capacity() {
                if self.out.len() >= MAX_MESSAGE {
                    return Err("inflated message too large".into());
                }
                self.out.reserve(self.out.capacity().max(4096));
            }
            let (in_before, out_before) = (self.raw.total_in(), self.out.len());
            self.raw
                .decompress_vec(&self.input[used..], &mut self.out, FlushDecompress::Sync)?;
            used += usize::try_from(self.raw.total_in() - in_before)?;
            let room_left = self.out.len() < self.out.capacity();
            if used == self.input.len() && room_left {
                break;
            }
            if room_left && self.out.len() == out_before && self.raw.total_in() == in_before {
                return Err("inflate made no progress".into());
            }
        }
        // Never reset, even with `server_no_context_takeover`: such a message refers to nothing before it, so a
        // kept window is harmless, and flate2's reset zeroes the 32 KiB window (a memset per message that cost
        // more than the inflate itself at 200 000 messages/s).
        Ok(&self.out)
    }
}

/// A masked (all-zero mask) client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(0x80 | opcode);
    out.push(0x80 | payload.len().min(125) as u8);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&payload[..payload.len().min(125)]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(compressor: &mut Compress, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        compressor
            .compress_vec(text, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn negotiation_reads_the_answer() {
        let answer = |s: &str| negotiated(&[s.to_owned()]).unwrap();
        assert!(answer("x-other").is_none());
        let plain = answer("permessage-deflate").unwrap();
        assert!(!plain.reset);
        let fresh =
            answer("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
                .unwrap();
        assert!(fresh.reset);
    }

    #[test]
    fn inflates_with_and_without_context_takeover() {
        let text =
            br#"{"id":"seq=1 ts=2 ","bids":[{"price":101.5,"qty":10},{"price":101.5,"qty":10}]}"#;
        // Context takeover: the second message refers back to the first.
        let mut compressor = Compress::new(Compression::new(6), false);
        let first = deflate(&mut compressor, text);
        let second = deflate(&mut compressor, text);
        assert!(second.len() < first.len());
        let mut inflater = negotiated(&["permessage-deflate".to_owned()])
            .unwrap()
            .unwrap();
        assert_eq!(inflater.inflate(&first).unwrap(), &text[..]);
        assert_eq!(inflater.inflate(&second).unwrap(), &text[..]);
        // No context takeover: each message alone, twice the same bytes.
        let mut inflater =
            negotiated(&["permessage-deflate; server_no_context_takeover".to_owned()])
                .unwrap()
                .unwrap();
        assert_eq!(inflater.inflate(&first).unwrap(), &text[..]);
        assert_eq!(inflater.inflate(&first).unwrap(), &text[..]);
    }
}
