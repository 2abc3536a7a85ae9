//! Tests of the SSE decoder and encoder: one table row per WHATWG §9.2.6 rule, each row fed whole, one byte at a
//! time and split at every point; the memory bound; property tests for round-trips and chunking invariance.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const MAX: usize = 1 << 16;

fn ev(id: Option<&str>, event: Option<&str>, data: &str) -> Item {
    Item::Event(SseEvent {
        id: id.map(str::to_owned),
        event: event.map(str::to_owned),
        data: data.to_owned(),
    })
}

fn last_id(id: &str) -> Item {
    Item::LastEventId(id.to_owned())
}

fn retry(ms: u64) -> Item {
    Item::Retry(Duration::from_millis(ms))
}

/// Feeds `chunks` in order to a fresh decoder: (items, last event id).
fn decode_chunks<'a>(
    max: usize,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Item>, String) {
    let mut decoder = Decoder::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut out);
    }
    (out, decoder.last_event_id().to_owned())
}

/// Decodes `input` whole, byte by byte and split in two at every point; all must agree.
fn decode_every_way(max: usize, input: &[u8]) -> (Vec<Item>, String) {
    let whole = decode_chunks(max, [input]);
    let bytewise = decode_chunks(max, input.chunks(1));
    assert_eq!(
        bytewise,
        whole,
        "one byte at a time: {:?}",
        String::from_utf8_lossy(input)
    );
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let split = decode_chunks(max, [a, &[][..], b]);
        assert_eq!(
            split,
            whole,
            "split at {at}: {:?}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

struct Case {
    name: &'static str,
    max: usize,
    input: &'static [u8],
    items: Vec<Item>,
    last_id: &'static str,
}

fn case(name: &'static str, input: &'static [u8], items: Vec<Item>, last_id: &'static str) -> Case {
    Case {
        name,
        max: MAX,
        input,
        items,
        last_id,
    }
}

fn cases() -> Vec<Case> {
    let none = None;
    vec![
        case(
            "basic",
            b"data: hello\n\n",
            vec![ev(none, none, "hello")],
            "",
        ),
        // Byte order mark.
        case(
            "bom stripped",
            b"\xEF\xBB\xBFdata: a\n\n",
            vec![ev(none, none, "a")],
            "",
        ),
        case(
            "bom stripped once: the second makes an unknown field name",
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
            vec![ev(none, none, "b")],
            "",
        ),
        case(
            "bom only at stream start",
            b"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
            vec![ev(none, none, "a")],
            "",
        ),
        Case {
            name: "a partial bom is content, not dropped",
            max: 1,
            input: b"\xEF\xBB\n\n",
            items: vec![Item::Oversize { bytes: 2 }],
            last_id: "",
        },
        // Line ends.
        case(
            "cr, crlf and lf line ends",
            b"data: a\rdata: b\r\ndata: c\n\r\n",
            vec![ev(none, none, "a\nb\nc")],
            "",
        ),
        case(
            "cr cr is a blank line",
            b"data: a\r\rdata: b\r\r",
            vec![ev(none, none, "a"), ev(none, none, "b")],
            "",
        ),
        case(
            "lf cr is a blank line",
            b"data: a\n\rdata: b\n\r",
            vec![ev(none, none, "a"), ev(none, none, "b")],
            "",
        ),
        // Field parsing.
        case(
            "no colon: whole line is the name",
            b"data\n\n",
            vec![ev(none, none, "")],
            "",
        ),
        case(
            "two empty data lines",
            b"data\ndata:\n\n",
            vec![ev(none, none, "\n")],
            "",
        ),
        case(
            "one leading space stripped",
            b"data:  two\n\n",
            vec![ev(none, none, " two")],
            "",
        ),
        case(
            "no space after colon",
            b"data:x\n\n",
            vec![ev(none, none, "x")],
            "",
        ),
        case(
            "colon inside the value",
            b"data: a:b: c\n\n",
            vec![ev(none, none, "a:b: c")],
            "",
        ),
        case(
            "space before the colon is part of the name",
            b"data : x\n\n",
            vec![],
            "",
        ),
        case("field names are case sensitive", b"Data: x\n\n", vec![], ""),
        case(
            "trailing space kept",
            b"data: x \n\n",
            vec![ev(none, none, "x ")],
            "",
        ),
        case(
            "comment ignored",
            b": hi\n:\ndata: x\n: mid\n\n",
            vec![ev(none, none, "x")],
            "",
        ),
        case(
            "comment alone dispatches nothing",
            b": ping\n\n",
            vec![],
            "",
        ),
        case(
            "unknown field ignored",
            b"foo: bar\ndata: x\nbaz\n\n",
            vec![ev(none, none, "x")],
            "",
        ),
        // data.
        case(
            "data lines joined by lf",
            b"data: a\ndata: b\n\n",
            vec![ev(none, none, "a\nb")],
            "",
        ),
        case(
            "nul in data kept",
            b"data: a\0b\n\n",
            vec![ev(none, none, "a\0b")],
            "",
        ),
        case(
            "blank line without data dispatches nothing",
            b"\n\n\r\n",
            vec![],
            "",
        ),
        // event.
        case(
            "event type set then reset after dispatch",
            b"event: ping\ndata: x\n\ndata: y\n\n",
            vec![ev(none, Some("ping"), "x"), ev(none, none, "y")],
            "",
        ),
        case(
            "event type reset by an empty dispatch",
            b"event: ping\n\ndata: y\n\n",
            vec![ev(none, none, "y")],
            "",
        ),
        case(
            "last event line wins",
            b"event: a\nevent: b\ndata\n\n",
            vec![ev(none, Some("b"), "")],
            "",
        ),
        case(
            "empty event type is message",
            b"event:\ndata: x\n\n",
            vec![ev(none, none, "x")],
            "",
        ),
        // id.
        case(
            "id",
            b"id: 1\ndata: x\n\n",
            vec![ev(Some("1"), none, "x")],
            "1",
        ),
        case(
            "last event id persists, event id does not",
            b"id: 1\ndata: x\n\ndata: y\n\n",
            vec![ev(Some("1"), none, "x"), ev(none, none, "y")],
            "1",
        ),
        case(
            "id containing nul ignored",
            b"id: 1\n\nid: a\0b\ndata: x\n\n",
            vec![last_id("1"), ev(none, none, "x")],
            "1",
        ),
        case(
            "empty id resets",
            b"id: 1\ndata: x\n\nid\ndata: y\n\n",
            vec![ev(Some("1"), none, "x"), ev(Some(""), none, "y")],
            "",
        ),
        case(
            "id of a block without data still counts",
            b"id: 7\n\n",
            vec![last_id("7")],
            "7",
        ),
        case(
            "empty id of a block without data resets",
            b"id: 1\ndata: x\n\nid\n\n",
            vec![ev(Some("1"), none, "x"), last_id("")],
            "",
        ),
        case(
            "id of an unfinished block not committed",
            b"id: 1\ndata: a\n\nid: 2\ndata: b\n",
            vec![ev(Some("1"), none, "a")],
            "1",
        ),
        // retry.
        case("retry", b"retry: 1500\n", vec![retry(1500)], ""),
        case("retry without space", b"retry:0\n", vec![retry(0)], ""),
        case(
            "retry reported in line order",
            b"data: a\nretry: 5\n\n",
            vec![retry(5), ev(none, none, "a")],
            "",
        ),
        case(
            "retry not digits ignored",
            b"retry: 15s\nretry: -1\nretry:\nretry\nretry: 1 \nretry:  1\n",
            vec![],
            "",
        ),
        case(
            "retry overflow saturates",
            b"retry: 99999999999999999999999\n",
            vec![retry(u64::MAX)],
            "",
        ),
        // End of input and encodings.
        case(
            "no dispatch without the blank line",
            b"id: 3\nevent: e\ndata: x\n",
            vec![],
            "",
        ),
        case("incomplete line discarded", b"data: x", vec![], ""),
        case(
            "invalid utf-8 replaced",
            b"data: a\xFFb\n\n",
            vec![ev(none, none, "a\u{FFFD}b")],
            "",
        ),
        case(
            "truncated sequence replaced",
            b"event: \xC3\ndata: x\n\n",
            vec![ev(none, Some("\u{FFFD}"), "x")],
            "",
        ),
        case(
            "multi-byte utf-8",
            b"data: \xC3\xA9\xE2\x82\xAC\n\n",
            vec![ev(none, none, "é€")],
            "",
        ),
        // The memory bound.
        Case {
            name: "line over the bound",
            max: 8,
            input: b"data: 123456789\n\ndata: ok\n\n",
            items: vec![Item::Oversize { bytes: 15 }, ev(None, None, "ok")],
            last_id: "",
        },
        Case {
            name: "data exactly at the bound",
            max: 10,
            input: b"data:12345\ndata:6789\n\n",
            items: vec![ev(None, None, "12345\n6789")],
            last_id: "",
        },
        Case {
            name: "data accumulated over the bound",
            max: 10,
            input: b"data:12345\ndata:67890\n\ndata: ok\n\n",
            items: vec![Item::Oversize { bytes: 20 }, ev(None, None, "ok")],
            last_id: "",
        },
        Case {
            name: "comments are not bounded",
            max: 4,
            input: b": a very long comment\ndata\n\n",
            items: vec![ev(None, None, "")],
            last_id: "",
        },
        Case {
            name: "oversize block: id before the cut kept, lines after dropped, event type reset",
            max: 10,
            input: b"id: 1\nevent: e\ndata:12345678901\nid: 2\nretry: 5\n\ndata:ok\n\n",
            items: vec![
                last_id("1"),
                Item::Oversize {
                    bytes: 5 + 8 + 16 + 5 + 8,
                },
                ev(None, None, "ok"),
            ],
            last_id: "1",
        },
    ]
}

#[test]
fn decoder_follows_whatwg_rules() {
    for case in cases() {
        let (items, last_id) = decode_every_way(case.max, case.input);
        assert_eq!(items, case.items, "{}", case.name);
        assert_eq!(last_id, case.last_id, "{}", case.name);
    }
}

#[test]
fn huge_line_without_newline_stays_bounded() {
    const BOUND: usize = 1024;
    let mut decoder = Decoder::new(BOUND);
    let mut out = Vec::new();
    decoder.feed(b"data: ", &mut out);
    let chunk = vec![b'a'; 64 * 1024];
    let chunks = 100 * 1024 * 1024 / chunk.len();
    for _ in 0..chunks {
        decoder.feed(&chunk, &mut out);
        assert!(
            decoder.retained_bytes() <= 2 * BOUND,
            "{}",
            decoder.retained_bytes()
        );
    }
    assert!(out.is_empty());
    decoder.feed(b"\r\n\r\ndata: ok\r\n\r\n", &mut out);
    let bytes = 6 + chunks * chunk.len();
    assert_eq!(out, vec![Item::Oversize { bytes }, ev(None, None, "ok")]);
}

#[test]
fn many_data_lines_stay_bounded() {
    const BOUND: usize = 4096;
    let mut decoder = Decoder::new(BOUND);
    let mut out = Vec::new();
    for _ in 0..100_000 {
        decoder.feed(b"data: 0123456789\n", &mut out);
        assert!(
            decoder.retained_bytes() <= 3 * BOUND,
            "{}",
            decoder.retained_bytes()
        );
    }
    decoder.feed(b"\n", &mut out);
    assert_eq!(
        out,
        vec![Item::Oversize {
            bytes: 100_000 * 16
        }]
    );
}

#[test]
fn restart_keeps_last_event_id_only() {
    let mut decoder = Decoder::new(MAX);
    let mut out = Vec::new();
    decoder.feed(
        b"\xEF\xBB\xBFid: 9\ndata: a\n\nevent: e\nid: 10\ndata: half",
        &mut out,
    );
    decoder.restart();
    decoder.feed(b"\xEF\xBB\xBFdata: b\n\n", &mut out);
    assert_eq!(out, vec![ev(Some("9"), None, "a"), ev(None, None, "b")]);
    assert_eq!(decoder.last_event_id(), "9");
}

#[test]
fn encoder_output() {
    let cases: Vec<(Option<&str>, Option<&str>, &str, &str)> = vec![
        (None, None, "hello", "data: hello\n\n"),
        (None, None, "", "data:\n\n"),
        (
            Some("1"),
            Some("ping"),
            "a\r\nb\rc\nd",
            "id: 1\nevent: ping\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
        ),
        (None, None, "a\n", "data: a\ndata:\n\n"),
        (None, None, " lead", "data:  lead\n\n"),
        (Some(""), Some(""), "x", "id:\ndata: x\n\n"),
        (Some("1\r\n2\0"), None, "x", "id: 12\ndata: x\n\n"),
        (
            None,
            Some("x\ndata: evil\r"),
            "y",
            "event: xdata: evil\ndata: y\n\n",
        ),
        (None, Some("\r\n"), "y", "data: y\n\n"),
    ];
    for (id, event, data, want) in cases {
        let got = encode_event(id, event, data);
        assert_eq!(
            String::from_utf8_lossy(&got),
            want,
            "{id:?} {event:?} {data:?}"
        );
    }
    assert_eq!(&encode_comment("hi")[..], b": hi\n");
    assert_eq!(&encode_comment("")[..], b":\n");
    assert_eq!(&encode_comment("a\r\nb\r")[..], b": a\n: b\n:\n");
    assert_eq!(&encode_retry(3000)[..], b"retry: 3000\n\n");
}

#[test]
fn injected_event_name_does_not_break_framing() {
    let bytes = encode_event(
        Some("7\n\ndata: forged"),
        Some("x\n\ndata: forged\n\n"),
        "real",
    );
    let (items, last_id) = decode_every_way(MAX, &bytes);
    assert_eq!(
        items,
        vec![ev(Some("7data: forged"), Some("xdata: forged"), "real")]
    );
    assert_eq!(last_id, "7data: forged");
}

/// Text with many line ends, colons, spaces and non-ASCII characters.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        Just("\r\n".to_owned()),
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("\u{FEFF}".to_owned()),
        "[a-z]{1,5}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// Byte strings shaped like event streams, with invalid UTF-8 and BOM pieces mixed in.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"data:"[..],
            b"data: ",
            b"id: ",
            b"id:",
            b"event: ",
            b"retry: ",
            b":",
            b" ",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b"\0",
            b"\xEF\xBB\xBF",
            b"\xEF\xBB",
            b"\xC3\xA9",
            b"\xFF",
            b"123",
            b"abc",
        ])
        .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Splits `bytes` at the given fractions of its length.
fn split_at_points<'a>(bytes: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p.index(bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks.push(&bytes[start..]);
    chunks
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(
        id in proptest::option::of("[^\0\r\n]*"),
        event in proptest::option::of(text()),
        data in text(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let bytes = encode_event(id.as_deref(), event.as_deref(), &data);
        let (items, last_id) = decode_chunks(MAX, split_at_points(&bytes, &points));
        let event = event.map(|e| e.replace(['\r', '\n'], "")).filter(|e| !e.is_empty());
        let data = data.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(items, vec![Item::Event(SseEvent { id: id.clone(), event, data })]);
        prop_assert_eq!(last_id, id.unwrap_or_default());
    }

    #[test]
    fn comments_and_retry_dispatch_nothing(text in text(), ms in any::<u64>()) {
        let mut bytes = encode_comment(&text).to_vec();
        bytes.extend_from_slice(&encode_retry(ms));
        bytes.extend_from_slice(&encode_comment(&text));
        let (items, _) = decode_chunks(MAX, [&bytes[..]]);
        prop_assert_eq!(items, vec![retry(ms)]);
    }

    #[test]
    fn chunking_never_changes_the_result(
        bytes in stream_bytes(),
        max in prop_oneof![0usize..24, Just(MAX)],
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = decode_chunks(max, [&bytes[..]]);
        prop_assert_eq!(decode_chunks(max, split_at_points(&bytes, &points)), whole.clone());
        prop_assert_eq!(decode_chunks(max, bytes.chunks(1)), whole);
    }

    #[test]
    fn arbitrary_bytes_any_chunking(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = decode_chunks(16, [&bytes[..]]);
        prop_assert_eq!(decode_chunks(16, split_at_points(&bytes, &points)), whole);
    }
}
