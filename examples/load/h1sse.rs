//! A lean HTTP/1.1 SSE client (plaintext or TLS): one task per connection reading the socket itself, a chunked
//! transfer-coding decoder (RFC 9112 §7.1) and [`SseScanner`], so a delivery costs a read and a `memmem`, not
//! hyper's connection task, body channel and wake-ups. The h2 mode still uses hyper.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::stats::{SseScanner, Tally, Window, stamp};

type BoxError = pushbridge::BoxError;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes read per `read` call (one buffer per connection, allocated when the stream starts).
const READ_BUFFER: usize = 16 * 1024;

/// An open SSE response: the socket, the body bytes read with the head, and whether the body is chunked.
pub struct Stream {
    io: Box<dyn AsyncRead + Unpin + Send>,
    early: Vec<u8>,
    chunked: bool,
}

/// Sends `GET path` and reads the response head; errs unless the status is 2xx.
pub async fn open<IO>(mut io: IO, host: &str, path: &str) -> Result<Stream, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n");
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > MAX_HEAD {
            return Err("response head too large".into());
        }
        if io.read_buf(&mut head).await? == 0 {
            return Err("closed before the response head".into());
        }
    };
    let (status, chunked) = parse_head(&head[..end])?;
    if !(200..300).contains(&status) {
        return Err(format!("status {status}").into());
    }
    Ok(Stream {
        io: Box::new(io),
        early: head[end..].to_vec(),
        chunked,
    })
}

/// The status code and whether `Transfer-Encoding` ends in `chunked`.
fn parse_head(head: &[u8]) -> Result<(u16, bool), BoxError> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("bad status line")?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().to_ascii_lowercase().ends_with("chunked")
        })
    });
    Ok((status, chunked))
}

/// Reads events until the stream ends or fails.
pub async fn read(mut stream: Stream, window: &Window, tally: &mut Tally) -> Result<(), BoxError> {
    let mut scanner = SseScanner::default();
    let mut dechunk = stream.chunked.then(Dechunker::default);
    let mut on_data = |data: &[u8]| {
        scanner.feed(data, |block| {
            if let Some(stamp) = stamp(block) {
                tally.record(window, stamp);
            }
        })
    };
    let mut consume = |bytes: &[u8]| -> Result<bool, &'static str> {
        match &mut dechunk {
            Some(dechunk) => dechunk.feed(bytes, &mut on_data),
            None => on_data(bytes).map(|()| false),
        }
    };
    if consume(&stream.early)? {
        return Err("stream ended".into());
    }
    stream.early = Vec::new();
    let mut buffer = vec![0; READ_BUFFER];
    loop {
        let n = stream.io.read(&mut buffer).await?;
        if n == 0 || consume(&buffer[..n])? {
            return Err("stream ended".into());
        }
    }
}

/// Decodes the chunked transfer coding incrementally.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: State,
    size: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    /// A chunk extension, up to the end of the size line.
    Extension,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    Done,
}

impl Dechunker {
    /// Feeds body bytes, passing chunk data to `out`; `Ok(true)` once the last chunk has been seen.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), &'static str>,
    ) -> Result<bool, &'static str> {
        while let Some(&byte) = input.first() {
            match self.state {
                State::Size | State::Extension => {
                    input = &input[1..];
                    match byte {
                        b'\n' if self.size == 0 => self.state = State::Done,
                        b'\n' => self.state = State::Data,
                        _ if self.state == State::Extension => {}
                        b'\r' => {}
                        b';' | b' ' | b'\t' => self.state = State::Extension,
                        _ => {
                            let digit = (byte as char).to_digit(16).ok_or("bad chunk size")?;
                            self.size = self
                                .size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(u64::from(digit)))
                                .ok_or("chunk size overflows")?;
                        }
                    }
                }
                State::Data => {
                    let n = input
                        .len()
                        .min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    out(&input[..n])?;
                    input = &input[n..];
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataEnd;
                    }
                }
                State::DataEnd => {
                    input = &input[1..];
                    if byte == b'\n' {
                        self.state = State::Size;
                    }
                }
                State::Done => return Ok(true),
            }
        }
        Ok(self.state == State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk(parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut d = Dechunker::default();
        let mut data = Vec::new();
        let mut done = false;
        for part in parts {
            done = d
                .feed(part, &mut |bytes| {
                    data.extend_from_slice(bytes);
                    Ok(())
                })
                .unwrap();
        }
        (data, done)
    }

    #[test]
    fn dechunks_at_every_split() {
        let body = b"3\r\n:\n\n\r\n1B;ext=1\r\ndata: seq=1 ts=5 xxxxxxxx\n\n\r\n0\r\n\r\n";
        let expected = b":\n\ndata: seq=1 ts=5 xxxxxxxx\n\n".to_vec();
        assert_eq!(dechunk(&[body]), (expected.clone(), true));
        for at in 0..=body.len() {
            assert_eq!(
                dechunk(&[&body[..at], &body[at..]]),
                (expected.clone(), true),
                "split at {at}"
            );
        }
        assert_eq!(dechunk(&[&body[..20]]).1, false);
    }

    #[test]
    fn rejects_a_bad_size() {
        let mut d = Dechunker::default();
        assert!(d.feed(b"zz\r\n", &mut |_| Ok(())).is_err());
        let mut d = Dechunker::default();
        assert!(d.feed(b"fffffffffffffffff\r\n", &mut |_| Ok(())).is_err());
    }

    /// A real socket: a server answering one chunked SSE response, events split across writes, a replayed
    /// event and the last chunk.
    #[tokio::test]
    async fn reads_a_chunked_stream_from_a_socket() {
        use std::time::Duration;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
                assert!(socket.read_buf(&mut head).await.unwrap() > 0);
            }
            assert!(head.starts_with(b"GET /events/bench HTTP/1.1\r\n"));
            let events = [
                "data: seq=1 ts=1\n\n",
                "data: seq=2 ts=2\n\n",
                "data: seq=2 ts=2\n\n",
            ];
            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for event in events {
                out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
            }
            out.extend_from_slice(b"0\r\n\r\n");
            for part in out.chunks(7) {
                socket.write_all(part).await.unwrap();
                socket.flush().await.unwrap();
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = open(tcp, &addr.to_string(), "/events/bench").await.unwrap();
        let window = Window::default();
        window.open(Duration::from_secs(60), Duration::from_secs(0));
        let mut tally = Tally::default();
        let ended = read(stream, &window, &mut tally).await;
        assert_eq!(ended.unwrap_err().to_string(), "stream ended");
        assert_eq!((tally.events, tally.duplicated), (3, 1));
        server.await.unwrap();
    }

    #[test]
    fn reads_the_head() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (200, true));
        assert_eq!(
            parse_head(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n").unwrap(),
            (503, false)
        );
        assert!(parse_head(b"nonsense\r\n\r\n").is_err());
    }
}
