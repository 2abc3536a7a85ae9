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
