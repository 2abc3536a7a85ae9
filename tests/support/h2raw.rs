//! Raw HTTP/2 frames for tests that play a client breaking the rules (too many streams, silence): frame headers
//! and request header blocks in HPACK literals, no Huffman, no indexing.

/// `:method GET` and `:method POST` in HPACK's static table.
pub const GET: u8 = 0x82;
pub const POST: u8 = 0x83;

/// An HTTP/2 frame: length, type, flags, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a test frame under 16 MiB");
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A request's header block: `method` (GET or POST), `:scheme http`, `:path`, `:authority x`.
pub fn request_headers(method: u8, path: &str) -> Vec<u8> {
    let mut block = vec![method, 0x86]; // :scheme http
    block.push(0x04); // :path, literal without indexing, name from the static table
    block.push(u8::try_from(path.len()).expect("a short test path"));
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 1, b'x']); // :authority x
    block
}

/// A frame read off the wire: type, stream id, payload.
pub struct Received {
    pub kind: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Received {
    /// The error code of a RST_STREAM (or the first 4 payload bytes).
    pub fn code(&self) -> u32 {
        u32::from_be_bytes([
            self.payload[0],
            self.payload[1],
            self.payload[2],
            self.payload[3],
        ])
    }
}

/// Takes the first whole frame off `buf`, if it holds one.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Received> {
    if buf.len() < 9 {
        return None;
    }
    let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
    if buf.len() < 9 + len {
        return None;
    }
    let frame = Received {
        kind: buf[3],
        stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
        payload: buf[9..9 + len].to_vec(),
    };
    buf.drain(..9 + len);
    Some(frame)
}
