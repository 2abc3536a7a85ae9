//! Where each value sits in the YAML text. serde_yaml keeps no spans, so validation errors look their field
//! path (`streams[1].upstream.url`) up in this index, built from yaml-rust2's marked events over the same text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// The kind of the document's top-level node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// No document at all (empty, or only comments).
    Empty,
    /// A mapping, as the configuration needs.
    Mapping,
    /// A sequence.
    Sequence,
    /// A scalar (including an explicit `null`).
    Scalar,
}

/// Field path → 1-based (line, column) of its value and of its key.
#[derive(Debug)]
pub struct Spans {
    values: HashMap<String, (usize, usize)>,
    keys: HashMap<String, (usize, usize)>,
    root: RootKind,
    complete: bool,
}

impl Spans {
    /// Indexes the first document of `text`. Text yaml-rust2 cannot parse gives a partial index (serde_yaml
    /// reports the syntax error itself).
    pub fn index(text: &str) -> Self {
        let mut builder = Builder {
            spans: Spans::empty(),
            stack: Vec::new(),
            depth_seen: false,
        };
        let parsed = Parser::new_from_str(text).load(&mut builder, false);
        builder.spans.complete = parsed.is_ok();
        builder.spans
    }

    fn empty() -> Self {
        Self {
            values: HashMap::new(),
            keys: HashMap::new(),
            root: RootKind::Empty,
            complete: false,
        }
    }

    /// The top-level node's kind, when the whole document was indexed (`None` after a syntax error).
    pub fn root(&self) -> Option<RootKind> {
        self.complete.then_some(self.root)
    }

    /// Location of the value at `path`, or of its nearest indexed ancestor, or (1, 1).
    pub fn value(&self, path: &str) -> (usize, usize) {
        self.lookup(&self.values, path)
    }

    /// Location of the key naming `path` (falls back like [`value`](Self::value)).
    pub fn key(&self, path: &str) -> (usize, usize) {
        match self.keys.get(path) {
            Some(at) => *at,
            None => self.value(path),
        }
    }

    fn lookup(&self, map: &HashMap<String, (usize, usize)>, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(at) = map.get(path) {
                return *at;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return map.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

/// An open collection while walking the event stream.
enum Frame {
    Map {
        path: String,
        key: Option<String>,
        expecting_key: bool,
    },
    Seq {
        path: String,
        next: usize,
    },
}

struct Builder {
    spans: Spans,
    stack: Vec<Frame>,
    /// Set once the first document's root node has started; later documents are ignored.
    depth_seen: bool,
}

impl Builder {
    /// Called when a node starts: records its location and returns its path, or `None` for a mapping key
    /// (a scalar key is remembered as the pending key instead).
    fn begin_node(&mut self, scalar_key: Option<&str>, at: (usize, usize)) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map {
                path,
                key,
                expecting_key,
            }) => {
                if *expecting_key {
                    if key.is_none() {
                        // yaml-rust2 marks a block mapping at its first `:`; its first key is a better spot.
                        if let Some(start) = self.spans.values.get_mut(path.as_str()) {
                            *start = (*start).min(at);
                        }
                    }
                    let name = scalar_key.unwrap_or("?");
                    let full = join(path, name);
                    self.spans.keys.entry(full).or_insert(at);
                    *key = Some(name.to_owned());
                    return None;
                }
                join(path, key.as_deref().unwrap_or("?"))
            }
            Some(Frame::Seq { path, next }) => format!("{path}[{next}]"),
        };
        self.spans.values.entry(path.clone()).or_insert(at);
        Some(path)
    }

    /// Called when a node ends (a scalar at once, a collection at its end event).
    fn end_node(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { expecting_key, .. }) => *expecting_key = !*expecting_key,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = (mark.line(), mark.col() + 1);
        if self.stack.is_empty() {
            let kind = match &event {
                Event::MappingStart(..) => RootKind::Mapping,
                Event::SequenceStart(..) => RootKind::Sequence,
                Event::Scalar(..) | Event::Alias(_) => RootKind::Scalar,
                _ => return,
            };
            if self.depth_seen {
                return;
            }
            self.depth_seen = true;
            self.spans.root = kind;
        }
        match event {
            Event::Scalar(value, ..) => {
                self.begin_node(Some(&value), at);
                self.end_node();
            }
            Event::Alias(_) => {
                self.begin_node(None, at);
                self.end_node();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection used as a mapping key gets no path of its own; its contents are indexed
                // under `parent.?`.
                let path = self.begin_node(None, at).unwrap_or_else(|| "?".to_owned());
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map {
                        path,
                        key: None,
                        expecting_key: true,
                    },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_node();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_values_and_keys() {
        let text = "listen:\n  - address: 1.2.3.4:5\n    tls: { cert: a, key: b }\nstreams:\n  - path: /x\n    heartbeat: 15 parsecs\n";
        let spans = Spans::index(text);
        assert_eq!(spans.root(), Some(RootKind::Mapping));
        assert_eq!(spans.value("listen[0].address"), (2, 14));
        assert_eq!(spans.key("listen[0].address"), (2, 5));
        assert_eq!(spans.value("listen[0].tls.key"), (3, 26));
        assert_eq!(spans.value("streams[0].heartbeat"), (6, 16));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(spans.value("streams[0].heartbeat.x"), (6, 16));
        assert_eq!(spans.value("streams[0].nope"), spans.value("streams[0]"));
        assert_eq!(spans.value("nothing"), (1, 1));
        assert_eq!(spans.value("streams[0]"), (5, 5));
    }

    #[test]
    fn root_kinds() {
        assert_eq!(Spans::index("").root(), Some(RootKind::Empty));
        assert_eq!(
            Spans::index("# only a comment\n").root(),
            Some(RootKind::Empty)
        );
        assert_eq!(Spans::index("- a\n").root(), Some(RootKind::Sequence));
        assert_eq!(Spans::index("hello").root(), Some(RootKind::Scalar));
        assert_eq!(Spans::index("~").root(), Some(RootKind::Scalar));
        assert_eq!(Spans::index("a: 1").root(), Some(RootKind::Mapping));
    }

    #[test]
    fn complex_keys_and_garbage_do_not_panic() {
        assert_eq!(Spans::index("a: [\n").root(), None);
        for text in [
            "? [a, b]\n: c\n",
            "{[1]: {x: y}}",
            "a: [\n",
            "&a x: *a",
            ": : :",
            "\t- -",
            "[{]}",
        ] {
            let _ = Spans::index(text);
        }
    }
}
