//! What the comparison removes, in one place: pushbridge's documented changes to a stream (docs/protocol.md), and
//! the matching rule for ids. Everything else a client gets must equal what the reference got.
//!
//! [`REMOVED`] lists each change and where it is documented; the functions below are the only code that applies
//! them. Nothing else is removed or rewritten before [`compare`].

/// Every documented change the comparison removes, with where docs/protocol.md (or docs/config.md) says so.
pub const REMOVED: &[(&str, &str)] = &[
    (
        "the SSE first flush (`: pushbridge` comment, `retry:`) and heartbeat comments: never events, invisible to \
         an EventSource; `?open=1` is not used",
        "docs/protocol.md \"SSE\"",
    ),
    (
        "generated ids: an event the application sent without an id gets `<epoch>-<seq>`; it stands where a \
         browser reading the app keeps its last event ID (see `id_matches`)",
        "docs/protocol.md \"Events and ids\"",
    ),
    (
        "the gap notice: the `pushbridge-gap` event (SSE, WebSocket) and `gap: true` (long-poll); counted, then removed",
        "docs/protocol.md \"Events and ids\", \"Gaps are reported once\"",
    ),
    (
        "upstream replays: after a reconnect that sent `Last-Event-ID: X` (or a resume position X), the events \
         repeating in order what followed the newest X (optionally X's own event first) are dropped; after one \
         that sent no position, the same from the session's first event when it repeats the held event with its id",
        "docs/protocol.md \"Upstream replays and reused ids\"",
    ),
    (
        "events over `limits.max_event_bytes` are dropped (the corpus keeps them far from the bound)",
        "docs/config.md `limits.max_event_bytes`, docs/protocol.md \"Upstream kinds\"",
    ),
    (
        "SSE client transport: CR and CRLF inside data arrive as LF (one `data:` line per line of data)",
        "docs/protocol.md \"SSE\"",
    ),
    (
        "the event name of an unnamed event reads `message` on every transport (WebSocket/long-poll envelopes, \
         EventSource's type)",
        "docs/protocol.md \"WebSocket\", \"Long-poll\"",
    ),
];

/// Where the id of an event came from, as a pushbridge client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// The application's id.
    App(String),
    /// An id the hub generated (`<8 hex>-<seq>`).
    Generated,
}

/// One event through pushbridge: name (`message` when unnamed), data, id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub event: String,
    pub data: String,
    pub id: Id,
}

/// How the reference reports ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRule {
    /// `Some(id)` the event's own id, `None` when it carried none: the documented mapping of the JSON kinds and
    /// Redis, and node `eventsource` 4.x, whose `lastEventId` is the event's own id or "" (not WHATWG's sticky
    /// value).
    Own,
    /// A WHATWG browser's `lastEventId`: the last event ID string, kept by events without an id, changed by
    /// id-only blocks, reset by an empty `id:`.
    Sticky,
}

/// One event of the reference: name, data and the id as its reader reports it (`""`: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub event: String,
    pub data: String,
    pub id: String,
}

/// One item of a reference reader's log: an event, or a (re)connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefItem {
    Open,
    Event(Expected),
}

/// The shape of the ids the hub generates.
pub fn is_generated(id: &str) -> bool {
    id.split_once('-').is_some_and(|(epoch, seq)| {
        epoch.len() == 8
            && epoch.bytes().all(|b| b.is_ascii_hexdigit())
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A pushbridge client's event, its id classified.
pub fn got(event: &str, data: &str, id: &str) -> Got {
    Got {
        event: if event.is_empty() { "message" } else { event }.to_owned(),
        data: data.to_owned(),
        id: if is_generated(id) {
            Id::Generated
        } else {
            Id::App(id.to_owned())
        },
    }
}

/// The reference log with the documented removals applied: events over `max_event_bytes`, and the upstream
/// replays a reconnect sent (the reader's `lastEventId` at each reconnection is the `Last-Event-ID` it sent, as long
/// as ids are its own ids: node `eventsource` commits the id of each event it dispatches).
pub fn reference(log: &[RefItem], max_event_bytes: usize) -> Vec<Expected> {
    let mut held: Vec<Expected> = Vec::new();
    // The replay window: events expected to repeat, in order; `own` may come first once.
    let mut window: Vec<Expected> = Vec::new();
    let mut own: Option<Expected> = None;
    let mut opened = 0;
    let mut last_id = String::new();
    for item in log {
        match item {
            RefItem::Open => {
                opened += 1;
                window.clear();
                own = None;
                if opened > 1
                    && !last_id.is_empty()
                    && let Some(at) = held.iter().rposition(|e| e.id == last_id)
                {
                    own = Some(held[at].clone());
                    window = held[at + 1..].to_vec();
                }
            }
            RefItem::Event(event) => {
                if event.data.len() > max_event_bytes {
                    continue;
                }
                if !event.id.is_empty() {
                    last_id.clone_from(&event.id);
                }
                if own.take().is_some_and(|o| o == *event) {
                    continue;
                }
                if window.first() == Some(event) {
                    window.remove(0);
                    continue;
                }
                window.clear();
                held.push(event.clone());
            }
        }
    }
    held
}

/// The reference of a route without `resume`: a reconnect sends no position, so the replay window opens at the
/// session's first event when it has an id and repeats the newest held event with that id; the events repeating, in
/// order, what followed it are dropped too, up to the first that differs (docs/protocol.md "Upstream replays and
/// reused ids"; events without an id never open the window).
pub fn reference_held_ids(log: &[RefItem]) -> Vec<Expected> {
    let mut held: Vec<Expected> = Vec::new();
    // The index in `held` the next replayed event must repeat; `Some(None)`: a session's first event is next.
    let mut window: Option<Option<usize>> = None;
    let mut opened = 0;
    for item in log {
        match item {
            RefItem::Open => {
                opened += 1;
                window = (opened > 1).then_some(None);
            }
            RefItem::Event(event) => {
                let at = match window.take() {
                    Some(None) if !event.id.is_empty() => {
                        held.iter().rposition(|e| e.id == event.id)
                    }
                    Some(next) => next,
                    None => None,
                };
                if let Some(at) = at.filter(|&at| held.get(at) == Some(event)) {
                    window = Some(Some(at + 1)).filter(|_| at + 1 < held.len());
                    continue;
                }
                held.push(event.clone());
            }
        }
    }
    held
}

/// The reference as a client of the SSE transport reads it: CR and CRLF in data become LF.
pub fn over_sse(expected: &[Expected]) -> Vec<Expected> {
    expected
        .iter()
        .map(|e| Expected {
            data: e.data.replace("\r\n", "\n").replace('\r', "\n"),
            ..e.clone()
        })
        .collect()
}

/// Whether pushbridge's id stands for the reference's: the app's own id where the reference has one; a generated
/// id where the app gave none (`Own`: the reference has no id; `Sticky`: the browser kept its last event ID, or an
/// empty `id:` reset it).
fn id_matches(rule: IdRule, id: &Id, expected: &str, previous: &str) -> bool {
    match (rule, id) {
        (_, Id::App(id)) => id == expected,
        (IdRule::Own, Id::Generated) => expected.is_empty(),
        (IdRule::Sticky, Id::Generated) => expected == previous || expected.is_empty(),
    }
}

/// `None` when `got` is `expected` after the removals; else a description of every difference.
pub fn compare(rule: IdRule, expected: &[Expected], got: &[Got]) -> Option<String> {
    let mut differences = Vec::new();
    let mut previous = "";
    for i in 0..expected.len().max(got.len()) {
        match (expected.get(i), got.get(i)) {
            (Some(e), Some(g)) => {
                if e.event != g.event
                    || e.data != g.data
                    || !id_matches(rule, &g.id, &e.id, previous)
                {
                    differences.push(format!(
                        "#{i}: expected {} got {}",
                        show_expected(e),
                        show_got(g)
                    ));
                }
            }
            (Some(e), None) => differences.push(format!("#{i}: missing {}", show_expected(e))),
            (None, Some(g)) => differences.push(format!("#{i}: extra {}", show_got(g))),
            (None, None) => {}
        }
        if let Some(e) = expected.get(i) {
            previous = &e.id;
        }
    }
    if differences.is_empty() {
        return None;
    }
    differences.truncate(8);
    Some(format!(
        "{}\n      expected: {}\n      got:      {}",
        differences.join("; "),
        list(expected.iter().map(show_expected)),
        list(got.iter().map(show_got))
    ))
}

/// At most 24 items, then how many more.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let shown: Vec<String> = items.take(24).collect();
    let more = if n > shown.len() {
        format!(", … {} more", n - shown.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(", "))
}

fn short(data: &str) -> String {
    if data.len() > 40 {
        let cut = (0..=40)
            .rev()
            .find(|&i| data.is_char_boundary(i))
            .unwrap_or(0);
        format!("{:?}…({} bytes)", &data[..cut], data.len())
    } else {
        format!("{data:?}")
    }
}

fn show_expected(e: &Expected) -> String {
    format!("({} {} id={:?})", e.event, short(&e.data), e.id)
}

fn show_got(g: &Got) -> String {
    let id = match &g.id {
        Id::App(id) => format!("{id:?}"),
        Id::Generated => "<generated>".into(),
    };
    format!("({} {} id={id})", g.event, short(&g.data))
}
