//! An event's explanation: what each step saw and what it did, recorded while the flow runs
//! when the caller asks for it (the runtime does, for the event's trail). Dry runs, tests and
//! the benches do not ask, and then nothing here runs: the flow only checks an `Option`.
//!
//! Owns the shapes the trail stores and their bounds: a value quoted is cut at
//! [`VALUE_CHARS`] (a payload at [`PAYLOAD_CHARS`]), a diff lists at most [`DIFF_CHANGES`]
//! changes, and the whole explanation stops at [`MAX_BYTES`], counting the entries it left
//! out. Values under a key whose name says it holds a secret ([`looks_secret`]) are masked
//! here; secrets by value are the runtime's to mask (it holds the project's redactor). This
//! module must not run steps or call connectors: `run.rs` tells it what happened.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::env::looks_secret;
use crate::projection::{PathStep, Read};
use crate::rules::{Expr, RunError};
use crate::state::{StateError, StateStore, UpdateResult};

/// The most bytes of JSON one event's explanation takes; entries past it are counted only.
pub const MAX_BYTES: usize = 64 * 1024;
/// Bytes kept for what holds the entries (`{"entries":[...],"omitted":N}`).
const MARGIN: usize = 64;
/// The most characters of one quoted value (a field a condition read, a diff's old or new).
pub const VALUE_CHARS: usize = 200;
/// The most characters of a payload a `send` made.
pub const PAYLOAD_CHARS: usize = 8 * 1024;
/// The most changes one diff lists; the rest are counted.
pub const DIFF_CHANGES: usize = 50;

/// What the steps of one run saw and did, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub entries: Vec<Entry>,
    /// Entries left out because the explanation reached [`MAX_BYTES`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
    #[serde(skip)]
    bytes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One step's part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The step's label (`steps[4] (switch)`), with `#i` for each `each` element it ran in;
    /// `trigger` for the pipeline's trigger.
    pub step: String,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// The trigger's or a filter's `when`; `then` is `continue`, `skipped` (the trigger did
    /// not match) or `dropped` (a filter stopped the event).
    Condition { test: Test, then: String },
    /// The `when` of every arm tried, in order, and the arm taken (`None`: none matched);
    /// `then` is the label of the taken arm's first step.
    Switch {
        arms: Vec<Test>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        taken: Option<usize>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        otherwise: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then: Option<String>,
    },
    /// A `map`, `set`, `script` or `fetch`: the fields a script read, the call a fetch made,
    /// the record before and after as a diff, and the state keys the step changed.
    Change {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reads: Vec<Seen>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<Call>,
        diff: Diff,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        state: Vec<StateWrite>,
    },
    /// A `send`: the action it made (its index in the trail's `actions`, which has the
    /// remote's answer) and the payload.
    Send {
        connector: Arc<str>,
        op: Arc<str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<Arc<str>>,
        action: usize,
        payload: Value,
    },
    /// An `each`: how many elements its steps ran for (their entries follow, `#i` marked).
    Each { elements: usize },
    /// The step failed.
    Failed { message: String },
}

/// A condition as written, each field it read with its value, the condition with those
/// values in place of the fields, and what it came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub when: String,
    pub reads: Vec<Seen>,
    pub with_values: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One thing code read of the record: `record.amount` and its value (`missing` when the
/// record has no such field), or `"id" in record` and whether the key is there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub read: String,
    pub value: Value,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

/// A `fetch`'s call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub connector: String,
    pub op: String,
    pub params: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What changed from one value to another, path by path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `+` added, `-` removed, `~` changed.
    pub op: Op,
    pub path: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub old: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub new: Option<Value>,
}

/// A field that is there is `Some`, `null` included (`Option`'s own reading makes a `null`
/// None, and a trail read back would lose a change to or from `null`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "+")]
    Added,
    #[serde(rename = "-")]
    Removed,
    #[serde(rename = "~")]
    Changed,
}

/// One state key a step changed (stock reserved, a customer updated): the key and the diff of
/// its value, `+` for a key that was not there, `-` for one deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateWrite {
    pub key: String,
    pub diff: Diff,
}

impl Diff {
    /// Whether it lists `path` as added.
    pub fn added(&self, path: &str) -> bool {
        self.changes
            .iter()
            .any(|c| c.op == Op::Added && c.path == path)
    }
}

impl Explanation {
    /// Adds `entry` unless the explanation is full, in which case it is counted as omitted.
    pub(super) fn push(&mut self, step: &str, what: What) {
        if self.is_full() {
            self.omitted += 1;
            return;
        }
        let entry = Entry {
            step: step.to_string(),
            what,
        };
        // The entry and the comma before it; what holds the entries is within the margin.
        let size = serde_json::to_vec(&entry).map_or(MAX_BYTES, |b| b.len() + 1);
        if self.bytes + size > MAX_BYTES - MARGIN {
            self.omitted += 1;
            // A later, smaller entry would make the trail skip one in the middle: once an entry
            // does not fit, the rest are counted only.
            self.bytes = MAX_BYTES;
            return;
        }
        self.bytes += size;
        self.entries.push(entry);
    }

    /// No further entry fits: the caller may skip the work of making one.
    pub(super) fn is_full(&self) -> bool {
        self.bytes >= MAX_BYTES
    }

    /// Every string in it passed through `mask` (the runtime's redactor of secret values).
    pub fn mask_strings(&mut self, mask: &dyn Fn(&str) -> String) {
        let Ok(mut value) = serde_json::to_value(&*self) else {
            return;
        };
        mask_value(&mut value, mask);
        if let Ok(masked) = serde_json::from_value::<Explanation>(value) {
            self.entries = masked.entries;
        }
    }
}

fn mask_value(value: &mut Value, mask: &dyn Fn(&str) -> String) {
    match value {
        Value::String(s) => {
            let masked = mask(s);
            if masked != *s {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask_value(v, mask)),
        Value::Object(map) => map.values_mut().for_each(|v| mask_value(v, mask)),
        _ => {}
    }
}

/// `expr` evaluated on `record` to `result`: what it read, with its values.
pub(super) fn test(expr: &Expr, record: &Value, result: &Result<bool, RunError>) -> Test {
    let reads = seen(expr.record_reads(), record);
    Test {
        when: expr.source().to_string(),
        with_values: with_values(expr.source(), &reads),
        reads,
        result: result.as_ref().ok().copied(),
        error: result.as_ref().err().map(ToString::to_string),
    }
}

/// The values of what code reads of `record`, each once, in the order the code names them.
/// A path through array elements (`record.items[*].sku`) shows the array.
pub(super) fn seen(reads: Option<&[Read]>, record: &Value) -> Vec<Seen> {
    let Some(reads) = reads else {
        return vec![Seen {
            read: "record".into(),
            value: clip(record, VALUE_CHARS),
            missing: false,
        }];
    };
    let mut done = HashSet::new();
    let mut out = Vec::new();
    for read in reads {
        let (steps, presence) = match read {
            Read::Path(steps) => (steps, false),
            Read::Presence(steps) => (steps, true),
        };
        let names: Vec<&str> = steps
            .iter()
            .map_while(|s| match s {
                PathStep::Name(n) => Some(n.as_str()),
                PathStep::Elements => None,
            })
            .collect();
        let seen = if presence && names.len() == steps.len() {
            let Some((key, parents)) = names.split_last() else {
                continue;
            };
            let there = at(record, parents).is_some_and(|v| v.get(key).is_some());
            Seen {
                read: format!("{} in {}", Value::from(*key), dotted(parents)),
                value: Value::Bool(there),
                missing: false,
            }
        } else {
            match at(record, &names) {
                Some(v) => Seen {
                    read: dotted(&names),
                    value: if names.last().is_some_and(|n| looks_secret(n)) {
                        Value::from("***")
                    } else {
                        clip(v, VALUE_CHARS)
                    },
                    missing: false,
                },
                None => Seen {
                    read: dotted(&names),
                    value: Value::Null,
                    missing: true,
                },
            }
        };
        if done.insert(seen.read.clone()) {
            out.push(seen);
        }
    }
    out
}

fn at<'a>(record: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().try_fold(record, |v, n| v.get(n))
}

/// `record.a.b`; a name that is not an identifier in brackets (`record["a b"]`).
fn dotted(names: &[&str]) -> String {
    let mut out = String::from("record");
    for n in names {
        push_name(&mut out, n);
    }
    out
}

fn push_name(out: &mut String, name: &str) {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        out.push('.');
        out.push_str(name);
    } else {
        out.push('[');
        out.push_str(&Value::from(name).to_string());
        out.push(']');
    }
}

/// The condition's text with each field it read replaced by its value (`record.amount >= 100`
/// → `612.5 >= 100`); text inside string literals is left alone.
pub(super) fn with_values(src: &str, reads: &[Seen]) -> String {
    const SHOWN: usize = 80;
    let mut by_length: Vec<&Seen> = reads.iter().collect();
    // `record.data.email` before `record.data`.
    by_length.sort_by_key(|s| std::cmp::Reverse(s.read.len()));
    let shown = |s: &Seen| {
        if s.missing {
            return "(missing)".to_string();
        }
        let text = s.value.to_string();
        match text.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    };
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        let before = src[..i].chars().next_back();
        let found = by_length.iter().find(|s| {
            rest.starts_with(s.read.as_str())
                && !before.is_some_and(|c| ident(c) || c == '.')
                && !rest[s.read.len()..].chars().next().is_some_and(ident)
        });
        if let Some(s) = found {
            out.push_str(&shown(s));
            i += s.read.len();
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if c == '"' || c == '`' {
            // A literal, copied whole (a `\` escapes the next character).
            let mut end = c.len_utf8();
            let mut escaped = false;
            for (j, d) in rest[end..].char_indices() {
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == c {
                    end += j + d.len_utf8();
                    break;
                }
                if j + d.len_utf8() + c.len_utf8() == rest.len() {
                    end = rest.len();
                }
            }
            out.push_str(&rest[..end]);
            i += end;
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// `value` cut to about `chars` characters of JSON: long strings end in `…(N more chars)`,
/// containers stop at `…: N more` members; values under secret-named keys are `***`.
pub fn clip(value: &Value, chars: usize) -> Value {
    let mut budget = chars;
    clip_within(value, &mut budget)
}

fn clip_within(value: &Value, budget: &mut usize) -> Value {
    match value {
        Value::String(s) => {
            let n = s.chars().count();
            // A short text is kept whole even past the budget: cutting it would say less.
            let keep = (*budget).max(16);
            if n <= keep {
                *budget = budget.saturating_sub(n);
                return value.clone();
            }
            *budget = 0;
            let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            Value::String(format!("{}…({} more chars)", &s[..cut], n - keep))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if *budget == 0 {
                    out.push(Value::String(format!("…{} more items", items.len() - i)));
                    break;
                }
                *budget = budget.saturating_sub(1);
                out.push(clip_within(item, budget));
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (i, (k, v)) in map.iter().enumerate() {
                if *budget == 0 {
                    out.insert("…".into(), Value::String(format!("{} more", map.len() - i)));
                    break;
                }
                *budget = budget.saturating_sub(k.len() + 3);
                let v = if looks_secret(k) {
                    Value::from("***")
                } else {
                    clip_within(v, budget)
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        scalar => {
            *budget = budget.saturating_sub(scalar.to_string().len());
            scalar.clone()
        }
    }
}

/// What changed from `old` to `new`, paths from `root` (`record`, or a state key).
pub(super) fn diff(root: &str, old: &Value, new: &Value) -> Diff {
    let mut out = Diff::default();
    let mut path = root.to_string();
    walk(&mut path, old, new, false, &mut out);
    out
}

fn walk(path: &mut String, old: &Value, new: &Value, secret: bool, out: &mut Diff) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let len = path.len();
                push_name(path, k);
                let secret = secret || looks_secret(k);
                match b.get(k) {
                    Some(w) => walk(path, v, w, secret, out),
                    None => add(out, Op::Removed, path, Some(v), None, secret),
                }
                path.truncate(len);
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    let len = path.len();
                    push_name(path, k);
                    add(
                        out,
                        Op::Added,
                        path,
                        None,
                        Some(w),
                        secret || looks_secret(k),
                    );
                    path.truncate(len);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                match (a.get(i), b.get(i)) {
                    (Some(v), Some(w)) => walk(path, v, w, secret, out),
                    (Some(v), None) => add(out, Op::Removed, path, Some(v), None, secret),
                    (None, Some(w)) => add(out, Op::Added, path, None, Some(w), secret),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        (a, b) => add(out, Op::Changed, path, Some(a), Some(b), secret),
    }
}

fn add(out: &mut Diff, op: Op, path: &str, old: Option<&Value>, new: Option<&Value>, secret: bool) {
    if out.changes.len() >= DIFF_CHANGES {
        out.omitted += 1;
        return;
    }
    let quote = |v: &Value| {
        if secret {
            Value::from("***")
        } else {
            clip(v, VALUE_CHARS)
        }
    };
    out.changes.push(Change {
        op,
        path: path.to_string(),
        old: old.map(quote),
        new: new.map(quote),
    });
}

/// A [`StateStore`] that passes everything to `base` and notes each key an update changed,
/// with its value before and after: how an explanation learns what a step did to the state.
pub(super) struct Watched {
    base: Arc<dyn StateStore>,
    log: Mutex<Vec<Written>>,
}

/// A key, its value before an update and after (None: absent).
type Written = (String, Option<Value>, Option<Value>);

impl Watched {
    pub(super) fn new(base: Arc<dyn StateStore>) -> Watched {
        Watched {
            base,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The keys changed since the last call, each as a diff of its value.
    pub(super) fn take(&self) -> Vec<StateWrite> {
        let log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()));
        log.into_iter()
            .map(|(key, before, after)| {
                let diff = match (&before, &after) {
                    (Some(b), Some(a)) => diff(&key, b, a),
                    _ => {
                        let mut d = Diff::default();
                        let (op, b, a) = match (before.as_ref(), after.as_ref()) {
                            (None, a) => (Op::Added, None, a),
                            (b, _) => (Op::Removed, b, None),
                        };
                        add(&mut d, op, &key, b, a, looks_secret(&key));
                        d
                    }
                };
                StateWrite { key, diff }
            })
            .collect()
    }
}

impl StateStore for Watched {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        self.base.get(key)
    }

    fn update(
        &self,
        keys: &[String],
        f: &mut dyn FnMut(&[Option<Value>]) -> UpdateResult,
    ) -> Result<Value, StateError> {
        // The closure may run more than once (a backend retrying): the last run is what was
        // written.
        let mut seen = None;
        let answer = self.base.update(keys, &mut |current| {
            let (new, answer) = f(current)?;
            seen = Some((current.to_vec(), new.clone()));
            Ok((new, answer))
        })?;
        if let Some((before, after)) = seen {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            for ((key, b), a) in keys.iter().zip(before).zip(after) {
                if b != a {
                    log.push((key.clone(), b, a));
                }
            }
        }
        Ok(answer)
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        self.base.scan_prefix(prefix)
    }

    fn make_durable(&self) -> Result<(), StateError> {
        self.base.make_durable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(read: &str, value: Value) -> Seen {
        Seen {
            read: read.into(),
            value,
            missing: false,
        }
    }

    #[test]
    fn a_condition_shows_the_values_it_read_in_place_of_the_fields() {
        let reads = [
            read("record.data", json!({"a": 1})),
            read("record.data.email", json!("jane@example.com")),
            read("record.route", json!("opportunity")),
        ];
        assert_eq!(
            with_values(
                r#"record.route == "record.route" && type_of(record.data.email) != "" && record.data.a"#,
                &reads
            ),
            r#""opportunity" == "record.route" && type_of("jane@example.com") != "" && {"a":1}.a"#
        );
        let missing = Seen {
            read: "record.total".into(),
            value: Value::Null,
            missing: true,
        };
        assert_eq!(
            with_values("record.total >= 100 && myrecord.total", &[missing]),
            "(missing) >= 100 && myrecord.total"
        );
        assert_eq!(
            with_values(r#"record.x == "unclosed"#, &[]),
            r#"record.x == "unclosed"#
        );
    }

    #[test]
    fn a_diff_lists_added_removed_and_changed_paths_and_masks_secrets() {
        let d = diff(
            "record",
            &json!({"a": 1, "gone": "x", "items": [1, 2], "token": "t1"}),
            &json!({"a": 2, "new": {"b": true}, "items": [1], "token": "t2", "odd name": 1}),
        );
        let lines: Vec<Value> = d
            .changes
            .iter()
            .map(|c| json!([c.op, c.path, c.old, c.new]))
            .collect();
        assert_eq!(
            lines,
            [
                json!(["~", "record.a", 1, 2]),
                json!(["-", "record.gone", "x", null]),
                json!(["-", "record.items[1]", 2, null]),
                json!(["~", "record.token", "***", "***"]),
                json!(["+", "record.new", null, {"b": true}]),
                json!(["+", "record[\"odd name\"]", null, 1]),
            ]
        );
    }

    #[test]
    fn clipped_values_stay_within_their_budget() {
        let long = "x".repeat(10_000);
        let v = clip(&json!({"note": long, "n": 1}), VALUE_CHARS);
        let text = v.to_string();
        assert!(text.len() < 400, "{text}");
        assert!(text.contains("more chars"), "{text}");
        let many: Vec<Value> = (0..10_000).map(Value::from).collect();
        let text = clip(&Value::Array(many), VALUE_CHARS).to_string();
        assert!(text.len() < 1200 && text.contains("more items"), "{text}");
    }

    #[test]
    fn the_explanation_stops_at_its_bound_and_counts_the_rest() {
        let mut e = Explanation::default();
        for i in 0..10_000 {
            e.push(
                &format!("steps[{i}] (set)"),
                What::Failed {
                    message: "m".repeat(100),
                },
            );
        }
        let bytes = serde_json::to_vec(&e).unwrap().len();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert_eq!(e.entries.len() + e.omitted, 10_000);
        assert!(e.omitted > 0);
        let back: Explanation = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back.entries, e.entries);
        // A change from null keeps its null through the trail's bytes.
        let d = diff("record", &json!({"a": null}), &json!({"a": 1, "b": null}));
        let back: Diff = serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.changes[0].old, Some(Value::Null));
        assert_eq!(back.changes[1].new, Some(Value::Null));
    }
}
