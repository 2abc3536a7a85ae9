//! Server-Sent Events wire format, both directions: an incremental decoder (bytes in over any chunk boundaries →
//! [`Item`]s out) and an encoder (event fields → one `text/event-stream` block as [`bytes::Bytes`]).
//!
//! The rules are those of the WHATWG HTML Living Standard §9.2.6 "Interpreting an event stream"
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>). Everything here
//! is pure (no I/O, no clocks) and is fuzzed by `fuzz/fuzz_targets/sse_decode.rs`.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{Decoder, Item, SseEvent};
pub use encode::{encode_comment, encode_event, encode_retry};
