//! Building the `Value` and its span index from yaml-rust2's events: maps, sequences and
//! scalars resolved as YAML 1.2's core schema does, anchors and aliases expanded within the
//! bound, `${VAR}` interpolated in strings, problems collected. It must not deserialise into
//! typed config (that is `de.rs`).

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{alias_limit, YamlProblem, ALIAS_CAP, ALIAS_FACTOR, ALIAS_FLOOR};
use crate::config::env::{interpolate, EnvLookup, EnvProblem};
use crate::config::span::{NodeSpan, PathSeg, Pos, ScalarStyle, SpanIndex};

pub(super) fn pos(m: &Marker) -> Pos {
    // yaml-rust2 columns are 0-based; ours are 1-based like every editor's.
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

pub(super) enum Frame {
    Map {
        map: Map<String, Value>,
        path: Vec<PathSeg>,
        anchor: usize,
        /// Nodes made before this one opened: what it holds when it closes is the difference.
        start: usize,
        /// The key read and waiting for its value, with where the key was.
        pending: Option<(String, Pos)>,
    },
    Seq {
        items: Vec<Value>,
        path: Vec<PathSeg>,
        anchor: usize,
        start: usize,
    },
}

#[derive(Default)]
pub(super) struct Builder<'e> {
    pub(super) env: Option<EnvLookup<'e>>,
    pub(super) stack: Vec<Frame>,
    pub(super) root: Option<Value>,
    pub(super) spans: SpanIndex,
    /// Each anchored node with how many nodes it holds (itself included).
    pub(super) anchors: HashMap<usize, (Value, usize)>,
    /// Nodes read from the text itself.
    pub(super) own_nodes: usize,
    /// Nodes copied in by aliases.
    pub(super) alias_nodes: usize,
    pub(super) problems: Vec<YamlProblem>,
    pub(super) fatal: Option<YamlProblem>,
    pub(super) unset_vars: Vec<(Vec<PathSeg>, String, Pos)>,
    pub(super) secrets: Vec<String>,
}

impl<'e> Builder<'e> {
    /// Where the next node goes: its path and the position of its key, or `None` when the
    /// next node is itself a key.
    fn slot(&self) -> Option<(Vec<PathSeg>, Option<Pos>)> {
        match self.stack.last() {
            None => Some((Vec::new(), None)),
            Some(Frame::Map { pending: None, .. }) => None,
            Some(Frame::Map {
                path,
                pending: Some((k, kpos)),
                ..
            }) => {
                let mut p = path.clone();
                p.push(PathSeg::Key(k.clone()));
                Some((p, Some(*kpos)))
            }
            Some(Frame::Seq { items, path, .. }) => {
                let mut p = path.clone();
                p.push(PathSeg::Index(items.len()));
                Some((p, None))
            }
        }
    }

    fn attach(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Map { map, pending, .. }) => {
                if let Some((k, kpos)) = pending.take() {
                    if map.contains_key(&k) {
                        self.problems.push(YamlProblem {
                            pos: kpos,
                            message: format!("duplicate key `{k}`"),
                        });
                    }
                    map.insert(k, value);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tagged_str: bool,
        mark: Marker,
    ) {
        let at = pos(&mark);
        let Some((path, key_pos)) = self.slot() else {
            // A mapping key: keys are never interpolated.
            if let Some(Frame::Map {
                pending, map, path, ..
            }) = self.stack.last_mut()
            {
                // yaml-rust2 marks a block mapping's start after its first key; the first key
                // is where a reader sees the mapping begin.
                if map.is_empty() {
                    if let Some(span) = self.spans.get(path).copied() {
                        if (at.line, at.col) < (span.value.line, span.value.col) {
                            self.spans
                                .insert(path.clone(), NodeSpan { value: at, ..span });
                        }
                    }
                }
                *pending = Some((text, at));
            }
            return;
        };
        let plain = style == TScalarStyle::Plain && !tagged_str;
        let text = if text.contains('$') {
            self.interpolate(&path, text, at, style)
        } else {
            text
        };
        let value = if plain {
            resolve_plain(&text).unwrap_or_else(|message| {
                self.problems.push(YamlProblem { pos: at, message });
                Value::Null
            })
        } else {
            Value::String(text.clone())
        };
        let multiline =
            matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) || text.contains('\n');
        let style = if multiline {
            ScalarStyle::Block
        } else {
            ScalarStyle::Inline {
                quoted: matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                ),
            }
        };
        self.spans.insert(
            path,
            NodeSpan {
                key: key_pos,
                value: at,
                style: Some(style),
            },
        );
        self.own_nodes += 1;
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), 1));
        }
        self.attach(value);
    }

    /// All nodes made so far, read or copied.
    fn made(&self) -> usize {
        self.own_nodes + self.alias_nodes
    }

    /// Copies the node anchored as `id` in, unless that takes the copies past
    /// [`alias_limit`]: checked before copying, so a document of nested aliases (each copying
    /// the one before several times) is refused without being built.
    fn alias(&mut self, id: usize, mark: Marker) {
        if self.slot().is_none() {
            self.fatal.get_or_insert(YamlProblem {
                pos: pos(&mark),
                message: "an alias as a key is not supported".into(),
            });
            return;
        }
        let (value, size) = match self.anchors.get(&id) {
            Some((value, size)) => (Some(value), *size),
            None => (None, 1),
        };
        let copied = self.alias_nodes.saturating_add(size);
        let limit = alias_limit(self.own_nodes);
        if copied > limit {
            self.fatal.get_or_insert(YamlProblem {
                pos: pos(&mark),
                message: format!(
                    "this alias makes the file too large: with it, aliases copy {copied} nodes, \
                     more than the {limit} allowed here ({ALIAS_FACTOR} times the file's own \
                     {} nodes so far, at least {ALIAS_FLOOR}, at most {ALIAS_CAP}); anchors \
                     that copy other anchors grow exponentially",
                    self.own_nodes
                ),
            });
            return;
        }
        let value = value.cloned().unwrap_or(Value::Null);
        self.alias_nodes = copied;
        self.attach(value);
    }

    fn interpolate(
        &mut self,
        path: &[PathSeg],
        text: String,
        at: Pos,
        style: TScalarStyle,
    ) -> String {
        let Some(env) = self.env else { return text };
        let done = interpolate(&text, env);
        let quoted = usize::from(matches!(
            style,
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
        ));
        let col_of = |offset: usize| Pos {
            line: at.line,
            col: at.col + quoted + text.get(..offset).map_or(0, |s| s.chars().count()),
        };
        for p in done.problems {
            match p {
                EnvProblem::Unset { var, offset } => {
                    self.unset_vars.push((path.to_vec(), var, col_of(offset)));
                }
                EnvProblem::Malformed { offset, message } => {
                    self.problems.push(YamlProblem {
                        pos: col_of(offset),
                        message,
                    });
                }
            }
        }
        self.secrets.extend(done.secrets);
        // A value at a key that says it is a secret (`token:`, `X-Auth-Token:`) is one,
        // whatever its variable is called.
        if let Some(PathSeg::Key(k)) = path.last() {
            if crate::config::env::looks_secret(k) {
                self.secrets
                    .extend(done.from_env.into_iter().map(|(_, v)| v));
            }
        }
        done.text
    }

    fn open(&mut self, is_map: bool, anchor: usize, mark: Marker) {
        let at = pos(&mark);
        let Some((path, key_pos)) = self.slot() else {
            self.fatal.get_or_insert(YamlProblem {
                pos: at,
                message: "a mapping or list as a key is not supported; keys are plain strings"
                    .into(),
            });
            // Parse on so the event stream stays balanced; the result is discarded.
            self.stack.push(Frame::Seq {
                items: Vec::new(),
                path: Vec::new(),
                anchor: 0,
                start: 0,
            });
            return;
        };
        self.spans.insert(
            path.clone(),
            NodeSpan {
                key: key_pos,
                value: at,
                style: None,
            },
        );
        let start = self.made();
        self.own_nodes += 1;
        self.stack.push(if is_map {
            Frame::Map {
                map: Map::new(),
                path,
                anchor,
                start,
                pending: None,
            }
        } else {
            Frame::Seq {
                items: Vec::new(),
                path,
                anchor,
                start,
            }
        });
    }

    fn close(&mut self) {
        let (value, anchor, start) = match self.stack.pop() {
            Some(Frame::Map {
                map, anchor, start, ..
            }) => (Value::Object(map), anchor, start),
            Some(Frame::Seq {
                items,
                anchor,
                start,
                ..
            }) => (Value::Array(items), anchor, start),
            None => return,
        };
        if anchor > 0 {
            let size = self.made().saturating_sub(start);
            self.anchors.insert(anchor, (value.clone(), size));
        }
        self.attach(value);
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.fatal.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                self.scalar(text, style, anchor, tagged_str, mark);
            }
            Event::MappingStart(anchor, _) => self.open(true, anchor, mark),
            Event::SequenceStart(anchor, _) => self.open(false, anchor, mark),
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            Event::Alias(id) => self.alias(id, mark),
            Event::DocumentStart if self.root.is_some() => {
                self.fatal.get_or_insert(YamlProblem {
                    pos: pos(&mark),
                    message: "more than one YAML document in this file; one is expected".into(),
                });
            }
            _ => {}
        }
    }
}

/// The YAML 1.2 core schema for plain scalars: null, booleans, integers and floats; anything
/// else is a string. Numbers keep their exact text (serde_json's arbitrary precision).
///
/// `0x` and `0o` integers take only their own digits (`0x-5` is the string it looks like) and
/// are read exactly into any size up to 128 bits; a longer one is an error rather than a
/// truncated or wrapped number.
fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let negative = text.starts_with('-');
    for (prefix, radix, name) in [("0x", 16, "hexadecimal"), ("0o", 8, "octal")] {
        let Some(digits) = unsigned.strip_prefix(prefix) else {
            continue;
        };
        // `from_str_radix` would take a sign after the prefix; the core schema takes digits.
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            break;
        }
        let magnitude = u128::from_str_radix(digits, radix)
            .map_err(|_| format!("{name} integer `{text}` is too large (more than 128 bits)"))?;
        let decimal = if negative && magnitude != 0 {
            format!("-{magnitude}")
        } else {
            magnitude.to_string()
        };
        return decimal
            .parse::<Number>()
            .map(Value::Number)
            .map_err(|e| format!("{name} integer `{text}`: {e}"));
    }
    if looks_numeric(unsigned) {
        // Leading zeros ("007") are not JSON numbers: a SKU like that stays a string.
        let candidate = text.strip_prefix('+').unwrap_or(text);
        if let Ok(n) = candidate.parse::<Number>() {
            return Ok(Value::Number(n));
        }
    }
    Ok(Value::String(text.to_string()))
}

fn looks_numeric(s: &str) -> bool {
    let mut seen_digit = false;
    for (i, c) in s.char_indices() {
        match c {
            '0'..='9' => seen_digit = true,
            '.' => {}
            'e' | 'E' if seen_digit && i + 1 < s.len() => {}
            '+' | '-' if i > 0 && matches!(s.as_bytes()[i - 1], b'e' | b'E') => {}
            _ => return false,
        }
    }
    seen_digit
}
