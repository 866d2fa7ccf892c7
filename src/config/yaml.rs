//! The one place YAML is read.
//!
//! Parses a YAML file into a `serde_json::Value` (the value model the whole engine uses) and,
//! in the same pass, a [`SpanIndex`] from every node's path to its line and column, then
//! interpolates `${VAR}` in string values. Typed config is deserialised from that value with
//! `serde_path_to_error`, so a type error or an unknown key comes back with the path of the
//! node, and the span index turns the path into `file:line:col`. Aliases are expanded here
//! too, within a bound on how many nodes they may copy (see `alias_limit`).
//!
//! Why not serde_yaml: it is deprecated upstream, and its `Value` keeps no positions, so a
//! second parser would be needed for spans anyway. yaml-rust2's event parser gives both.
//! A successor is a change to this file only.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diag::{did_you_mean, Code, Diagnostic};
use super::env::{interpolate, EnvLookup, EnvProblem};
use super::span::{display_path, NodeSpan, PathSeg, Pos, ScalarStyle, SpanIndex};

/// A parsed YAML document with positions.
#[derive(Debug, Default, Clone)]
pub struct Doc {
    pub value: Value,
    pub spans: SpanIndex,
    /// `${VAR}` references with VAR unset and no default: where they are and which variable.
    pub unset_vars: Vec<(Vec<PathSeg>, String, Pos)>,
    /// Values that came from the environment.
    pub secrets: Vec<String>,
}

/// A problem found while reading YAML: a syntax error, a duplicate key, a malformed `${`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub pos: Pos,
    pub message: String,
}

/// Parses `text`. Syntax errors stop the parse (one problem); everything else is collected.
pub fn parse(text: &str, env: EnvLookup<'_>) -> Result<(Doc, Vec<YamlProblem>), YamlProblem> {
    let mut builder = Builder {
        env: Some(env),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(YamlProblem {
            pos: pos(m),
            message: format!("YAML syntax: {}", e.info()),
        });
    }
    if let Some(p) = builder.fatal.take() {
        return Err(p);
    }
    let value = builder.root.take().unwrap_or(Value::Null);
    Ok((
        Doc {
            value,
            spans: builder.spans,
            unset_vars: builder.unset_vars,
            secrets: builder.secrets,
        },
        builder.problems,
    ))
}

/// Aliases may copy this many times the nodes a file has of its own...
pub const ALIAS_FACTOR: usize = 4;
/// ...but always this many...
pub const ALIAS_FLOOR: usize = 10_000;
/// ...and never more than this many, whatever the file's size (about a hundred megabytes of
/// values at most).
pub const ALIAS_CAP: usize = 1_000_000;

/// How many nodes aliases may copy into a file that has `own` nodes of its own so far. Own
/// nodes so far, not in the whole file: an anchor comes before its aliases, so what an alias
/// copies is always measured against text already read.
fn alias_limit(own: usize) -> usize {
    own.saturating_mul(ALIAS_FACTOR)
        .clamp(ALIAS_FLOOR, ALIAS_CAP)
}

fn pos(m: &Marker) -> Pos {
    // yaml-rust2 columns are 0-based; ours are 1-based like every editor's.
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

enum Frame {
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
struct Builder<'e> {
    env: Option<EnvLookup<'e>>,
    stack: Vec<Frame>,
    root: Option<Value>,
    spans: SpanIndex,
    /// Each anchored node with how many nodes it holds (itself included).
    anchors: HashMap<usize, (Value, usize)>,
    /// Nodes read from the text itself.
    own_nodes: usize,
    /// Nodes copied in by aliases.
    alias_nodes: usize,
    problems: Vec<YamlProblem>,
    fatal: Option<YamlProblem>,
    unset_vars: Vec<(Vec<PathSeg>, String, Pos)>,
    secrets: Vec<String>,
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
            if super::env::looks_secret(k) {
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

/// A typed-deserialisation failure: the path of the node and a message meant for a person.
#[derive(Debug, Clone)]
pub struct DeError {
    pub path: Vec<PathSeg>,
    pub message: String,
    pub help: Option<String>,
    /// The error concerns a key (unknown key) rather than a value.
    pub at_key: bool,
}

/// Deserialises a typed config out of a document.
pub fn from_doc<T: DeserializeOwned>(value: &Value) -> Result<T, DeError> {
    from_doc_at(value, &[])
}

/// Deserialises a typed config out of the node at `base` of a document.
pub fn from_doc_at<T: DeserializeOwned>(value: &Value, base: &[PathSeg]) -> Result<T, DeError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut path: Vec<PathSeg> = base.to_vec();
        path.extend(e.path().iter().filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        }));
        let raw = e.into_inner().to_string();
        let (message, help, at_key) = humanize(&raw, &mut path);
        DeError {
            path,
            message,
            help,
            at_key,
        }
    })
}

/// Turns serde's wording into ours, with a "did you mean" for misspelt keys and kinds.
fn humanize(raw: &str, path: &mut Vec<PathSeg>) -> (String, Option<String>, bool) {
    let ticked: Vec<&str> = raw.split('`').skip(1).step_by(2).collect();
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let wrong = rest.split('`').next().unwrap_or_default();
        if path.last() != Some(&PathSeg::Key(wrong.to_string())) {
            path.push(PathSeg::Key(wrong.to_string()));
        }
        let expected = &ticked[1.min(ticked.len())..];
        let help =
            did_you_mean(wrong, expected.iter().copied()).or_else(|| expected_list(expected));
        let help = if expected.is_empty() {
            Some("this place takes no keys".into())
        } else {
            help
        };
        return (format!("unknown key `{wrong}`"), help, true);
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let wrong = rest.split('`').next().unwrap_or_default();
        let expected = &ticked[1.min(ticked.len())..];
        let help =
            did_you_mean(wrong, expected.iter().copied()).or_else(|| expected_list(expected));
        return (format!("unknown kind `{wrong}`"), help, true);
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return (format!("missing key `{name}`"), None, false);
    }
    let message = raw
        .replace("invalid type: ", "wrong type: found ")
        .replace("expected u32", "expected a whole number")
        .replace("expected u64", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a character", "expected one character")
        .replace("map, expected", "mapping, expected")
        .replace("sequence", "list");
    (message, None, false)
}

fn expected_list(expected: &[&str]) -> Option<String> {
    if expected.is_empty() {
        return None;
    }
    let names: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    Some(format!("expected one of {}", names.join(", ")))
}

/// Builds the diagnostic for a deserialisation error in `file`.
pub fn diagnostic(file: &std::path::Path, doc: &Doc, source: &str, err: &DeError) -> Diagnostic {
    let mut kind_path = err.path.clone();
    kind_path.push(PathSeg::Key("kind".into()));
    let at = if err.message.starts_with("unknown kind") && err.path.last() == kind_path.last() {
        // An internally tagged kind (`kind: htp`): point at the value of `kind`.
        doc.spans.value_pos(&err.path)
    } else if err.message.starts_with("unknown kind") && doc.spans.get(&kind_path).is_some() {
        doc.spans.value_pos(&kind_path)
    } else if err.at_key {
        doc.spans.key_pos(&err.path)
    } else {
        doc.spans.value_pos(&err.path)
    };
    let mut message = err.message.clone();
    if !err.path.is_empty() && !err.at_key {
        message = format!("{}: {message}", display_path(&err.path));
    }
    // Read off the wording `humanize` gives each serde error.
    let code = match err.message.as_str() {
        m if m.starts_with("unknown key") => Code::UnknownKey,
        m if m.starts_with("unknown kind") => Code::UnknownKind,
        m if m.starts_with("missing key") => Code::MissingKey,
        m if m.starts_with("wrong type") => Code::WrongType,
        _ => Code::InvalidValue,
    };
    let d = Diagnostic::error(file, at, message)
        .with_code(code)
        .with_source(source);
    match &err.help {
        Some(h) => d.with_help(h.clone()),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn key(s: &str) -> PathSeg {
        PathSeg::Key(s.into())
    }

    #[test]
    fn builds_values_with_core_schema_types() {
        let src = "a: 1\nb: 2.50\nc: true\nd: ~\ne: '007'\nf: 007\ng: hello\nh: [1, x]\ni: 123456789012345678901234567890\nj: !!str 12\n";
        let (doc, problems) = parse(src, &no_env).unwrap();
        assert!(problems.is_empty());
        assert_eq!(
            doc.value.to_string(),
            r#"{"a":1,"b":2.50,"c":true,"d":null,"e":"007","f":"007","g":"hello","h":[1,"x"],"i":123456789012345678901234567890,"j":"12"}"#
        );
    }

    #[test]
    fn indexes_positions_of_keys_and_values() {
        let src = "pipeline: p\nsteps:\n  - send: { to: sf, op: create }\n  - script: x\n";
        let (doc, _) = parse(src, &no_env).unwrap();
        let to = [key("steps"), PathSeg::Index(0), key("send"), key("to")];
        assert_eq!(doc.spans.value_pos(&to), Pos { line: 3, col: 17 });
        assert_eq!(doc.spans.key_pos(&to), Pos { line: 3, col: 13 });
        assert_eq!(
            doc.spans.value_pos(&[key("steps"), PathSeg::Index(1)]),
            Pos { line: 4, col: 5 }
        );
    }

    #[test]
    fn reports_syntax_errors_and_duplicates() {
        let err = parse("a: [1, 2\nb: 3\n", &no_env).unwrap_err();
        assert!(err.message.starts_with("YAML syntax"), "{}", err.message);
        let (_, problems) = parse("a: 1\na: 2\n", &no_env).unwrap();
        assert_eq!(
            problems,
            vec![YamlProblem {
                pos: Pos { line: 2, col: 1 },
                message: "duplicate key `a`".into()
            }]
        );
    }

    #[test]
    fn interpolates_values_not_keys_and_records_unset() {
        let env = |n: &str| (n == "HOST").then(|| "example.com".to_string());
        let (doc, _) = parse(
            "url: https://${HOST}/x\n${HOST}: 1\nn: ${N:-5}\nsecret: \"${S}\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(doc.value["url"], "https://example.com/x");
        assert_eq!(doc.value["${HOST}"], 1);
        assert_eq!(doc.value["n"], 5);
        assert_eq!(
            doc.unset_vars,
            vec![(
                vec![key("secret")],
                "S".to_string(),
                Pos { line: 4, col: 10 }
            )]
        );
        // `HOST` names no secret and `url` is no secret's key: shown as it is.
        assert!(doc.secrets.is_empty());
    }

    #[test]
    fn anchors_and_aliases_copy_values() {
        let (doc, _) = parse("a: &x { k: 1 }\nb: *x\n", &no_env).unwrap();
        assert_eq!(doc.value["b"], json!({"k": 1}));
    }

    #[test]
    fn hex_and_octal_integers_are_exact_or_refused() {
        let src = "a: 0xFFFFFFFFFFFFFFFF\nb: -0x10\nc: 0x-5\nd: 0o17\ne: -0o7\nf: 0o8\n\
                   g: 0xffffffffffffffffffffffffffffffff\nh: 0x\ni: 0o+1\n";
        let (doc, problems) = parse(src, &no_env).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            doc.value.to_string(),
            r#"{"a":18446744073709551615,"b":-16,"c":"0x-5","d":15,"e":-7,"f":"0o8","g":340282366920938463463374607431768211455,"h":"0x","i":"0o+1"}"#
        );
        let (doc, problems) = parse(
            "big: 0x1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\noct: 0o7777777777777777777777777777777777777777777777\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].pos, Pos { line: 1, col: 6 });
        assert!(problems[0].message.contains("too large"), "{problems:?}");
        assert_eq!(problems[1].pos, Pos { line: 2, col: 6 });
        assert!(
            problems[1].message.starts_with("octal integer"),
            "{problems:?}"
        );
        assert_eq!(doc.value["big"], Value::Null);
    }

    /// Nine levels of ten aliases each: 10^9 nodes if built.
    fn alias_bomb() -> String {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        src
    }

    #[test]
    fn aliases_that_copy_too_much_are_refused_where_they_are() {
        let src = alias_bomb();
        let err = parse(&src, &no_env).unwrap_err();
        // Level 3 copies 10 x 111 nodes: with the 1110 before it, past the floor of 10 000.
        assert!(err.message.contains("too large"), "{}", err.message);
        assert_eq!(err.pos.line, 4, "{err:?}");
        assert!(err.pos.col > 1, "{err:?}");
    }

    #[test]
    fn aliases_within_the_limit_copy_whole_trees() {
        // Each level copies the last twice: about 3000 nodes copied, under the floor.
        let mut src = String::from("l0: &l0 { k: 1 }\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n"));
        }
        let (doc, problems) = parse(&src, &no_env).unwrap();
        assert!(problems.is_empty());
        assert_eq!(doc.value["l9"][1][0][1][0][0][1][0][0][1], json!({"k": 1}));
        // A big file may copy more than the floor: four times its own nodes.
        let leaves: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let src = format!("a: &a [{}]\nb: [*a, *a, *a]\n", leaves.join(", "));
        let (doc, _) = parse(&src, &no_env).unwrap();
        assert_eq!(doc.value["b"][2][4999], 4999);
        let src = format!("a: &a [{}]\nb: [*a, *a, *a, *a, *a]\n", leaves.join(", "));
        assert!(parse(&src, &no_env).is_err());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Field {
        from: String,
        #[serde(rename = "type")]
        ty: Option<String>,
    }

    #[test]
    fn unknown_keys_point_at_the_key_with_a_suggestion() {
        let src = "fields:\n  a: { from: $.x, tyep: decimal }\n";
        let (doc, _) = parse(src, &no_env).unwrap();
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            fields: std::collections::BTreeMap<String, Field>,
        }
        let err = from_doc::<File>(&doc.value).unwrap_err();
        let d = diagnostic(std::path::Path::new("m.yaml"), &doc, src, &err);
        assert_eq!(d.pos, Pos { line: 2, col: 19 });
        assert_eq!(d.message, "unknown key `tyep`");
        assert_eq!(d.help.as_deref(), Some("did you mean `type`?"));
    }
}
