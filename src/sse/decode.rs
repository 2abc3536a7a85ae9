//! The incremental event-stream decoder: WHATWG HTML §9.2.6 "Interpreting an event stream", with one addition the
//! spec leaves to implementations, a memory bound (`max_event_bytes`) on one line and on one event's data.
//!
//! Line ends are found with `memchr2` over each chunk; a line that ends inside the chunk is parsed in place, only a
//! line split across chunks is copied (into one reused buffer). UTF-8 is decoded per field value with replacement
//! characters, which equals decoding the whole stream first: CR, LF and `:` are ASCII and never part of a
//! multi-byte sequence.

use std::mem;
use std::time::Duration;

use memchr::{memchr, memchr2};

/// The UTF-8 byte order mark; one is ignored at the start of a stream (§9.2.6, "One leading U+FEFF ...").
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One thing the decoder produced, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event (a block with a non-empty data buffer, ended by a blank line).
    Event(SseEvent),
    /// A valid `retry:` line (one or more ASCII digits only; saturates at `u64::MAX` ms): the new reconnection
    /// time. Reported when the line is read, not at dispatch, as the spec sets the reconnection time at once.
    Retry(Duration),
    /// A blank line ended a block that set the last event ID string without dispatching an event (an `id:` and no
    /// data, or an event cut over the bound): the new last event ID string (`""`: reset). WHATWG §9.2.6 sets it at
    /// every dispatch, before the empty-data check; an [`Item::Event`] carries its own.
    LastEventId(String),
    /// An event (or a single line) exceeded max_event_bytes: its bytes were discarded up to the next blank
    /// line; decoding continues after it. `bytes` = how many bytes were seen when it was cut, that is the bytes
    /// of all the block's lines (line ends not counted) up to the blank line that ended it.
    Oversize { bytes: usize },
}

/// A dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id` field given in THIS event block, if any (None when the block had no valid id line).
    /// `Some("")` when the block had an empty `id` line, which resets the last event id.
    pub id: Option<String>,
    /// The event type; None means the default "message" (an empty `event:` value is None too).
    pub event: Option<String>,
    pub data: String,
}

/// What happens to the rest of the line being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineMode {
    /// Buffer it: it is a field line within the bound.
    Keep,
    /// A comment (starts with `:`): skip without buffering, whatever its length.
    Comment,
    /// Over the bound, or inside an event already cut: skip.
    Drop,
}

/// An incremental event-stream decoder; one per stream (see [`Decoder::restart`] for a reconnect).
///
/// Holds a few times `max_event_bytes` at most, whatever the input: the partial line, the data buffer, the event
/// type and id (each from one bounded line); bytes past the bound are counted and dropped, never stored.
#[derive(Debug, Clone)]
pub struct Decoder {
    max: usize,
    /// Bytes of a leading BOM matched so far, while `bom_done` is false.
    bom_matched: usize,
    bom_done: bool,
    /// The previous chunk ended in CR: an LF starting the next chunk belongs to that line end.
    pending_cr: bool,
    /// The current line's bytes when it spans chunks (mode `Keep` only); never longer than `max`.
    line: Vec<u8>,
    mode: LineMode,
    /// The data buffer: each `data` value followed by LF.
    data: String,
    /// The event type buffer.
    event_type: String,
    /// The last valid `id` value of the current block (the spec's last-event-id buffer, when set in this block).
    block_id: Option<String>,
    /// The last event id committed at a blank line (the spec's "last event ID string").
    last_id: String,
    /// Bytes of the current block's lines, for `Item::Oversize`.
    block_bytes: usize,
    /// The current block passed the bound: everything up to its blank line is dropped.
    oversize: bool,
}

impl Decoder {
    /// A decoder whose lines and whose per-event data are each bounded by `max_event_bytes` bytes.
    pub fn new(max_event_bytes: usize) -> Self {
        Decoder {
            max: max_event_bytes,
            bom_matched: 0,
            bom_done: false,
            pending_cr: false,
            line: Vec::new(),
            mode: LineMode::Keep,
            data: String::new(),
            event_type: String::new(),
            block_id: None,
            last_id: String::new(),
            block_bytes: 0,
            oversize: false,
        }
    }

    /// Feed a chunk; pushes decoded items in order.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) {
        let mut chunk = chunk;
        if !self.bom_done {
            while self.bom_matched < BOM.len() {
                match chunk.first() {
                    None => return,
                    Some(&b) if b == BOM[self.bom_matched] => {
                        self.bom_matched += 1;
                        chunk = &chunk[1..];
                    }
                    Some(_) => break,
                }
            }
            self.bom_done = true;
            if self.bom_matched < BOM.len() {
                // Not a BOM after all: the bytes matched so far are stream content.
                self.scan(&BOM[..self.bom_matched], out);
            }
        }
        self.scan(chunk, out);
    }

    /// The last event id as a reconnect sends it in `Last-Event-ID`; "" if none yet. This is the last-event-id
    /// buffer as committed by the most recent blank line (the spec's "last event ID string"): an `id` line
    /// whose block has not ended yet does not count, exactly as in a browser.
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// Start decoding a new stream (after a reconnect): drops any partial line and event, expects a BOM again,
    /// keeps the last event id.
    pub fn restart(&mut self) {
        let last_id = mem::take(&mut self.last_id);
        *self = Decoder {
            last_id,
            ..Decoder::new(self.max)
        };
    }

    /// Splits `bytes` into lines; CR, LF and CRLF end a line, even with the CRLF split across chunks.
    fn scan(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        let mut rest = bytes;
        if rest.is_empty() {
            return;
        }
        if mem::take(&mut self.pending_cr) && rest[0] == b'\n' {
            rest = &rest[1..];
        }
        while let Some(i) = memchr2(b'\n', b'\r', rest) {
            self.end_line(&rest[..i], out);
            rest = if rest[i] == b'\n' {
                &rest[i + 1..]
            } else {
                match rest.get(i + 1) {
                    Some(b'\n') => &rest[i + 2..],
                    Some(_) => &rest[i + 1..],
                    None => {
                        self.pending_cr = true;
                        &[]
                    }
                }
            };
        }
        if !rest.is_empty() {
            self.append_partial(rest);
        }
    }

    /// Takes the non-empty start or middle of a line whose end has not arrived yet.
    fn append_partial(&mut self, part: &[u8]) {
        self.block_bytes = self.block_bytes.saturating_add(part.len());
        if self.mode != LineMode::Keep {
            return;
        }
        if self.line.is_empty() && part[0] == b':' {
            self.mode = LineMode::Comment;
        } else if self.oversize {
            self.mode = LineMode::Drop;
        } else if self.line.len() + part.len() > self.max {
            self.mode = LineMode::Drop;
            self.line.clear();
            self.cut();
        } else {
            self.line.extend_from_slice(part);
        }
    }

    /// Takes the last part of a line (possibly empty) once its line end has arrived.
    fn end_line(&mut self, part: &[u8], out: &mut Vec<Item>) {
        self.block_bytes = self.block_bytes.saturating_add(part.len());
        if mem::replace(&mut self.mode, LineMode::Keep) != LineMode::Keep {
            return;
        }
        if self.line.is_empty() {
            self.process_line(part, out);
        } else if self.line.len() + part.len() > self.max {
            self.line.clear();
            self.cut();
        } else {
            let mut line = mem::take(&mut self.line);
            line.extend_from_slice(part);
            self.process_line(&line, out);
            line.clear();
            self.line = line;
        }
    }

    /// §9.2.6: the steps for one complete line (without its line end).
    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if self.oversize || line[0] == b':' {
            return;
        }
        if line.len() > self.max {
            self.cut();
            return;
        }
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                // The dispatched data is the buffer less its final LF.
                if self.data.len() + value.len() > self.max {
                    self.cut();
                } else {
                    self.data.reserve(value.len() + 1);
                    self.data.push_str(&value);
                    self.data.push('\n');
                }
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&String::from_utf8_lossy(value));
            }
            b"id" if memchr(0, value).is_none() => {
                self.block_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |ms, digit| {
                    ms.saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'))
                });
                out.push(Item::Retry(Duration::from_millis(ms)));
            }
            _ => {}
        }
    }

    /// The current block passed the bound: free what it holds and drop the rest of it.
    fn cut(&mut self) {
        self.oversize = true;
        self.data = String::new();
    }

    /// §9.2.6 "dispatch the event", at a blank line.
    fn dispatch(&mut self, out: &mut Vec<Item>) {
        let block_bytes = mem::take(&mut self.block_bytes);
        let id = self.block_id.take();
        if let Some(id) = &id {
            self.last_id.clone_from(id);
        }
        let event_type = mem::take(&mut self.event_type);
        let oversize = mem::take(&mut self.oversize);
        if oversize || self.data.is_empty() {
            if let Some(id) = id {
                out.push(Item::LastEventId(id));
            }
            if oversize {
                out.push(Item::Oversize { bytes: block_bytes });
            }
            return;
        }
        let mut data = mem::take(&mut self.data);
        data.pop();
        out.push(Item::Event(SseEvent {
            id,
            event: (!event_type.is_empty()).then_some(event_type),
            data,
        }));
    }

    /// Heap bytes held by the decoder, for the memory-bound tests.
    #[cfg(test)]
    pub(super) fn retained_bytes(&self) -> usize {
        self.line.capacity()
            + self.data.capacity()
            + self.event_type.capacity()
            + self.block_id.as_ref().map_or(0, String::capacity)
            + self.last_id.capacity()
    }
}
