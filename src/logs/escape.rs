//! Control characters out of the text log: every field of every record (the message, event and span fields) is
//! written through [`Escape`], so a value a client or the application chose (a channel, an `Origin`, an error
//! message) cannot end a record, forge the next one or drive a terminal. The JSON format escapes them itself.

use std::fmt::{self, Write};

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The text format's fields ([`DefaultFields`], without colour) with control characters escaped.
#[derive(Default)]
pub struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut escape = Escape(&mut writer);
        self.0.format_fields(Writer::new(&mut escape), fields)
    }
}

/// Writes through to `W` with [`needs_escape`] characters escaped: `\n`, `\r`, `\t`, `\xNN` for the rest of C0
/// and DEL, `\u{NNNN}` for C1, line separators and bidirectional overrides.
pub struct Escape<W>(pub W);

/// Characters a text log must not carry raw: C0 and C1 controls, DEL (`char::is_control`), U+2028/U+2029 (line
/// and paragraph separators) and the bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069).
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl<W: Write> Write for Escape<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if (c as u32) < 0x80 => write!(self.0, "\\x{:02x}", c as u32)?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        Escape(&mut out).write_str(s).unwrap();
        out
    }

    #[test]
    fn controls_separators_and_overrides_are_escaped_the_rest_kept() {
        let cases = [
            ("plain text, ünïcode ✓", "plain text, ünïcode ✓"),
            ("a\r\nb\tc", r"a\r\nb\tc"),
            ("\x1b[2J\x07\x00\x7f", r"\x1b[2J\x07\x00\x7f"),
            ("\u{9b}31m", r"\u{9b}31m"),
            (
                "x\u{2028}y\u{202e}z\u{2066}",
                r"x\u{2028}y\u{202e}z\u{2066}",
            ),
            (r"\n stays", r"\n stays"),
        ];
        for (input, output) in cases {
            assert_eq!(escaped(input), output, "{input:?}");
        }
    }

    #[test]
    fn nothing_that_needs_escaping_survives() {
        let all: String = (0..0x3000u32).filter_map(char::from_u32).collect();
        assert!(!escaped(&all).contains(needs_escape));
    }
}
