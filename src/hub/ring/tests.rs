use super::*;

fn ids(ring: &Ring, from: u64) -> Vec<String> {
    let mut out = Vec::new();
    ring.read(from, usize::MAX, &mut out);
    out.iter().map(|e| e.id.to_string()).collect()
}

fn data(ring: &Ring) -> Vec<String> {
    let mut out = Vec::new();
    ring.read(0, usize::MAX, &mut out);
    out.iter().map(|e| e.data.to_string()).collect()
}

/// Pushes an upstream event; true when it was added (false: dropped as a replay).
fn add(ring: &mut Ring, id: Option<&str>, data: &str) -> bool {
    matches!(
        ring.push(id, None, data, Instant::now()),
        Push::Added { .. }
    )
}

fn reused(ring: &mut Ring, id: &str, data: &str) -> bool {
    match ring.push(Some(id), None, data, Instant::now()) {
        Push::Added { reused_id, .. } => reused_id,
        Push::Replayed => panic!("{id} {data} dropped as a replay"),
    }
}

#[test]
fn generates_ids_and_bounds_count() {
    let mut ring = Ring::new(3, Duration::from_secs(60), "ep");
    for i in 0..5 {
        assert!(add(&mut ring, None, &format!("d{i}")));
    }
    assert_eq!(ring.len(), 3);
    assert_eq!(ring.oldest(), 2);
    assert_eq!(ring.head(), 5);
    assert_eq!(ids(&ring, 0), ["ep-2", "ep-3", "ep-4"]);
    assert_eq!(ids(&ring, 4), ["ep-4"]);
    assert_eq!(ring.resume("ep-3"), ResumeAt::Found(4));
    assert_eq!(ring.resume("ep-1"), ResumeAt::Gap(2));
    assert_eq!(ring.resume("unknown"), ResumeAt::Gap(2));
    assert_eq!(
        ring.upstream_last_id(),
        None,
        "generated ids are not sent upstream"
    );
}

#[test]
fn the_upstream_last_id_follows_the_whatwg_last_event_id_buffer() {
    let mut ring = Ring::new(2, Duration::from_secs(60), "ep");
    add(&mut ring, Some("a"), "1");
    add(&mut ring, None, "2");
    assert_eq!(
        ring.upstream_last_id().as_deref(),
        Some("a"),
        "kept by an event without id"
    );
    add(&mut ring, None, "3");
    assert_eq!(
        ring.upstream_last_id().as_deref(),
        Some("a"),
        "kept after its event is evicted"
    );
    add(&mut ring, Some(""), "4");
    assert_eq!(ring.upstream_last_id(), None, "reset by an empty id");
    assert_eq!(ids(&ring, 0), ["ep-2", "ep-3"]);
}

/// Issue 7 item 2, the three sequences: every event is new (none is dropped), as a browser reading the app sees.
#[test]
fn reused_ids_are_new_events_and_resume_from_the_newest_occurrence() {
    // An app restarted with a per-process counter: Last-Event-ID 2 is ignored, the counter starts again.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    assert!(!reused(&mut ring, "1", "a"));
    assert!(!reused(&mut ring, "2", "b"));
    ring.open_replay(Some("2"));
    assert!(reused(&mut ring, "1", "c"));
    assert!(reused(&mut ring, "2", "d"));
    assert!(!reused(&mut ring, "3", "e"));
    assert_eq!(data(&ring), ["a", "b", "c", "d", "e"]);
    assert_eq!(
        ring.resume("1"),
        ResumeAt::Found(3),
        "the newest occurrence"
    );
    // A long-poll cursor after d: "2" names b and d, so a position token (issue 15 B3).
    assert_eq!(ring.position(4), "pb:ep:4");
    assert_eq!(ring.position(2), "pb:ep:2", "b's id now names d too");
    assert_eq!(ring.position(5), "3");

    // The same id twice in one connection.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    assert!(!reused(&mut ring, "5", "a"));
    assert!(reused(&mut ring, "5", "b"));
    assert_eq!(data(&ring), ["a", "b"]);

    // id: 5, a reset, id: 5 again.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    assert!(add(&mut ring, Some("5"), "a"));
    assert!(add(&mut ring, Some(""), "b"));
    assert!(reused(&mut ring, "5", "c"));
    assert_eq!(data(&ring), ["a", "b", "c"]);
    assert_eq!(ids(&ring, 1), ["ep-1", "5"]);
}

#[test]
fn evicting_an_older_occurrence_keeps_the_newest_in_the_index() {
    let mut ring = Ring::new(2, Duration::from_secs(60), "ep");
    add(&mut ring, Some("x"), "1");
    add(&mut ring, Some("x"), "2");
    add(&mut ring, Some("y"), "3");
    assert_eq!(ring.resume("x"), ResumeAt::Found(2));
}

#[test]
fn a_replay_after_resume_is_dropped_in_order_until_the_first_mismatch() {
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    for (id, data) in [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")] {
        add(&mut ring, Some(id), data);
    }
    // The upstream was asked to resume after 2 and replays 3 and 4 (id, name and data equal): dropped.
    ring.open_replay(Some("2"));
    assert!(!add(&mut ring, Some("3"), "c"));
    assert!(!add(&mut ring, Some("4"), "d"));
    // The window is over: the same event again is new.
    assert!(add(&mut ring, Some("4"), "d"));
    assert_eq!(data(&ring), ["a", "b", "c", "d", "d"]);

    // A mismatch ends the window: it and everything after are new, even a later match.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    for (id, data) in [("1", "a"), ("2", "b"), ("3", "c")] {
        add(&mut ring, Some(id), data);
    }
    ring.open_replay(Some("1"));
    assert!(!add(&mut ring, Some("2"), "b"));
    assert!(add(&mut ring, Some("3"), "C"), "same id, other data");
    assert!(
        add(&mut ring, Some("3"), "c"),
        "the window closed at the mismatch"
    );

    // The event name counts; events without id are matched by name and data.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    ring.push(Some("1"), None, "a", Instant::now());
    ring.push(None, Some("tick"), "b", Instant::now());
    ring.open_replay(Some("1"));
    assert!(matches!(
        ring.push(None, Some("tock"), "b", Instant::now()),
        Push::Added { .. }
    ));
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    ring.push(Some("1"), None, "a", Instant::now());
    ring.push(None, Some("tick"), "b", Instant::now());
    ring.open_replay(Some("1"));
    assert!(matches!(
        ring.push(None, Some("tick"), "b", Instant::now()),
        Push::Replayed
    ));

    // An inclusive resume resends the resume id's own event first: dropped too, once.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    for (id, data) in [("1", "a"), ("2", "b")] {
        add(&mut ring, Some(id), data);
    }
    ring.open_replay(Some("1"));
    assert!(!add(&mut ring, Some("1"), "a"));
    assert!(!add(&mut ring, Some("2"), "b"));
    assert!(add(&mut ring, Some("1"), "a"));
    ring.open_replay(Some("2"));
    assert!(!add(&mut ring, Some("2"), "b"));
    assert!(add(&mut ring, Some("2"), "b"));

    // A position the ring does not know: no window.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    add(&mut ring, Some("1"), "a");
    ring.open_replay(Some("zzz"));
    assert!(add(&mut ring, Some("1"), "a"));
}

#[test]
fn without_a_position_a_replay_is_dropped_from_the_first_event_on() {
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    for (id, data) in [("1", "a"), ("2", "b")] {
        add(&mut ring, Some(id), data);
    }
    // The app replays what it has (from its start or from later), then goes on.
    ring.open_replay(None);
    assert!(!add(&mut ring, Some("1"), "a"));
    assert!(!add(&mut ring, Some("2"), "b"));
    assert!(add(&mut ring, Some("3"), "c"));
    ring.open_replay(None);
    assert!(!add(&mut ring, Some("2"), "b"));
    assert!(!add(&mut ring, Some("3"), "c"));
    assert!(add(&mut ring, Some("2"), "b"));
    // Only the session's first event anchors: a reused id with new data, or a held event later on, is new.
    ring.open_replay(None);
    assert!(add(&mut ring, Some("1"), "a2"));
    assert!(add(&mut ring, Some("3"), "c"));
    assert_eq!(data(&ring), ["a", "b", "c", "b", "a2", "c"]);
}

#[test]
fn events_without_an_id_never_open_a_replay_window() {
    // An SSE app without ids (heartbeats, a hello on connect) reconnects with no Last-Event-ID: all delivered.
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    add(&mut ring, None, "ping");
    add(&mut ring, None, "ping");
    ring.open_replay(None);
    assert!(add(&mut ring, None, "ping"));
    assert!(add(&mut ring, None, "ping"));
    assert_eq!(ring.len(), 4);
}

#[test]
fn a_replay_from_an_evicted_last_id_matches_from_the_oldest_held() {
    let mut ring = Ring::new(2, Duration::from_secs(60), "ep");
    add(&mut ring, Some("1"), "a");
    add(&mut ring, None, "b");
    add(&mut ring, None, "c");
    // "1" was evicted but is still the upstream's last id: what it resends after 1 is b, c.
    ring.open_replay(Some("1"));
    assert!(!add(&mut ring, None, "b"));
    assert!(!add(&mut ring, None, "c"));
    assert!(add(&mut ring, None, "d"));
}

#[test]
fn an_id_only_block_sets_the_upstream_last_id_and_where_a_replay_starts() {
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    add(&mut ring, Some("1"), "a");
    add(&mut ring, None, "b");
    ring.set_upstream_last_id("1");
    add(&mut ring, None, "c");
    assert_eq!(ring.upstream_last_id().as_deref(), Some("1"));
    // Resumed after the id-only "1" (not after the event "1"): the app resends only c, then a new b.
    ring.open_replay(Some("1"));
    assert!(!add(&mut ring, None, "c"));
    assert!(add(&mut ring, None, "b"));
    assert_eq!(data(&ring), ["a", "b", "c", "b"]);
    // An id-only block with nothing after it: whatever comes next is new.
    ring.set_upstream_last_id("9");
    ring.open_replay(Some("9"));
    assert!(add(&mut ring, None, "b"));
    // An empty id-only block resets it.
    ring.set_upstream_last_id("");
    assert_eq!(ring.upstream_last_id(), None);
}

#[test]
fn a_log_position_names_the_entry_before_a_sequence() {
    let mut ring = Ring::new(2, Duration::from_secs(60), "ep");
    assert_eq!(ring.log_position(0, None), None, "not connected yet");
    assert_eq!(
        ring.log_position(0, Some("5-0".into())).as_deref(),
        Some("5-0")
    );
    ring.open_replay(Some("5-0"));
    for id in ["6-0", "7-0", "8-0"] {
        add(&mut ring, Some(id), "x");
    }
    // 6-0 was evicted; the session resumed after 5-0 at sequence 0.
    let at = |seq| {
        ring.log_position(seq, Some("9-0".into()))
            .map(|id| id.to_string())
    };
    assert_eq!(at(0).as_deref(), Some("5-0"));
    assert_eq!(at(1).as_deref(), Some("6-0"), "the newest evicted");
    assert_eq!(at(2).as_deref(), Some("7-0"));
    assert_eq!(at(3).as_deref(), Some("8-0"), "the head: the newest held");
    let mut ring = Ring::new(1, Duration::from_secs(60), "ep");
    for id in ["1-0", "2-0", "3-0"] {
        add(&mut ring, Some(id), "x");
    }
    assert_eq!(ring.log_position(0, None), None, "lagged: unknown");
}

#[test]
fn position_tokens_name_a_sequence_of_this_ring() {
    let mut ring = Ring::new(2, Duration::from_secs(60), "ep");
    assert_eq!(ring.position(0), "pb:ep:0");
    assert_eq!(ring.resume("pb:ep:0"), ResumeAt::Found(0));
    add(&mut ring, Some("a"), "1");
    assert_eq!(ring.position(1), "a");
    assert_eq!(ring.position(0), "pb:ep:0");
    assert_eq!(ring.resume("pb:ep:0"), ResumeAt::Found(0));
    add(&mut ring, Some("b"), "2");
    add(&mut ring, Some("c"), "3");
    // Seq 0 was evicted: the token names a lost position.
    assert_eq!(ring.resume("pb:ep:0"), ResumeAt::Gap(1));
    assert_eq!(ring.resume("pb:ep:1"), ResumeAt::Found(1));
    assert_eq!(ring.resume("pb:ep:3"), ResumeAt::Found(3));
    for bad in [
        "pb:other:1",
        "pb:ep:4",
        "pb:ep:x",
        "pb:ep:+1",
        "pb:ep",
        "pb:",
    ] {
        assert_eq!(ring.resume(bad), ResumeAt::Gap(1), "{bad}");
    }
}

#[test]
fn evicts_by_age() {
    let start = Instant::now();
    let mut ring = Ring::new(10, Duration::from_secs(5), "ep");
    ring.push(None, None, "old", start);
    let later = start + Duration::from_secs(6);
    ring.evict_expired(later);
    assert!(ring.is_empty());
    assert_eq!(ring.oldest(), 1);
    assert_eq!(ring.resume("ep-0"), ResumeAt::Gap(1));
    assert_eq!(ring.position(1), "pb:ep:1");
}

#[test]
fn a_byte_budget_evicts_the_oldest_and_every_byte_is_released() {
    use crate::event::{BufferBytes, EVENT_OVERHEAD};
    let global = Arc::new(AtomicUsize::new(0));
    let account = Arc::new(BufferBytes::new(global.clone()));
    let global_max = Arc::new(AtomicUsize::new(usize::MAX));
    let per_event = 1 + 1000 + EVENT_OVERHEAD;
    let mut ring = Ring::new(100, Duration::from_secs(60), "ep").with_budget(Budget {
        account: account.clone(),
        max_bytes: 3 * per_event,
        global_max: global_max.clone(),
    });
    let big = "x".repeat(1000);
    for i in 0..5 {
        add(&mut ring, Some(&i.to_string()), &big);
    }
    assert_eq!(ids(&ring, 0), ["2", "3", "4"]);
    assert_eq!(account.stream(), 3 * per_event);
    // Encodings count once they are made.
    let mut held = Vec::new();
    ring.read(0, 10, &mut held);
    held[0].sse_frame();
    held[1].envelope();
    assert!(account.stream() > 3 * per_event + 2000);
    drop(held);
    // Over the stream budget now: the next push evicts more than one.
    let Push::Added { evicted, .. } = ring.push(Some("5"), None, &big, Instant::now()) else {
        panic!("added")
    };
    assert!(evicted.stream >= 2, "{evicted:?}");
    // The process-wide budget evicts too; never the event just pushed.
    global_max.store(1, Ordering::Relaxed);
    let Push::Added { evicted, .. } = ring.push(Some("6"), None, &big, Instant::now()) else {
        panic!("added")
    };
    assert!(evicted.global >= 1, "{evicted:?}");
    assert_eq!(ids(&ring, 0), ["6"]);
    drop(ring);
    assert_eq!(global.load(Ordering::Relaxed), 0, "every byte released");
}

/// Issue 15 B3: a long-poll cursor is the plain id only while that id names one event; a cursor given that way
/// still means that event after the upstream reuses the id, and an ambiguous position is a token.
#[test]
fn a_cursor_names_the_occurrence_it_was_given_for() {
    let mut ring = Ring::new(10, Duration::from_secs(60), "ep");
    add(&mut ring, Some("1"), "a");
    add(&mut ring, Some("2"), "b");
    let cursor = ring.position(2);
    assert_eq!(cursor, "2", "unambiguous: the app's own id");
    // The app restarts with a fresh counter.
    reused(&mut ring, "1", "a2");
    reused(&mut ring, "2", "b2");
    assert_eq!(ring.resume_cursor(&cursor), ResumeAt::Found(2));
    // A client's Last-Event-ID (SSE) still means the newest occurrence.
    assert_eq!(ring.resume("2"), ResumeAt::Found(4));
    // Where "2" is ambiguous the cursor is a position token, which resolves exactly.
    let token = ring.position(4);
    assert_eq!(token, "pb:ep:4");
    assert_eq!(ring.resume_cursor(&token), ResumeAt::Found(4));
    assert_eq!(ring.position(2), "pb:ep:2");
}

#[test]
fn a_cursor_whose_occurrence_was_evicted_while_the_id_is_reused_gets_a_gap() {
    let mut ring = Ring::new(3, Duration::from_secs(60), "ep");
    add(&mut ring, Some("7"), "a");
    let cursor = ring.position(1);
    assert_eq!(cursor, "7");
    add(&mut ring, None, "b");
    reused(&mut ring, "7", "c");
    add(&mut ring, None, "d");
    // The "7" the cursor meant was evicted; the one held is another event: never a silent skip to it.
    assert_eq!(ring.oldest(), 1);
    assert_eq!(ring.resume_cursor(&cursor), ResumeAt::Gap(1));
    assert_eq!(
        ring.position(3),
        "pb:ep:3",
        "7 no longer names one event from when it was held"
    );
}
