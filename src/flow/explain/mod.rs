//! An event's explanation: what each step saw and what it did, recorded while the flow runs
//! when the caller asks for it (the runtime does, for the event's trail). Dry runs, tests and
//! the benches do not ask, and then nothing here runs: the flow only checks an `Option`.
//!
//! Owns the shapes the trail stores and their bounds: a value quoted is cut at
//! [`VALUE_CHARS`] (a payload at [`PAYLOAD_CHARS`]), a diff lists at most [`DIFF_CHANGES`]
//! changes, and the whole explanation stops at [`MAX_BYTES`], counting the entries it left
//! out. Values under a key whose name says it holds a secret ([`looks_secret`]) are masked
//! here; secrets by value are the runtime's to mask (it holds the project's redactor). This
//! module must not run steps or call connectors: `run.rs` tells it what happened. What a
//! condition read is in `reads.rs`, the changes between two values in `diff.rs`, the state
//! store that notes what a step wrote in `watched.rs`, the masking of secret values in
//! `mask.rs`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod diff;
mod mask;
mod reads;
mod watched;

pub use crate::rules::MAX_DECISIONS;
pub(super) use diff::diff;
pub(super) use reads::{seen, test};
pub(super) use watched::Watched;

use crate::config::env::looks_secret;

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
        /// A script's `if`s as it evaluated them, in order (at most
        /// [`MAX_DECISIONS`](crate::rules::MAX_DECISIONS)); `decisions_omitted` more were not
        /// kept.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        decisions: Vec<Decision>,
        #[serde(default, skip_serializing_if = "is_zero")]
        decisions_omitted: usize,
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

/// An `if` a script evaluated: where (`scripts/x.rhai:19:1`, the `if` keyword), its condition
/// as written, each value it read just before, and what it came to (`error`: it was not a
/// bool, and the `if` failed on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at: String,
    pub when: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Seen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Decision {
    /// What `decided` recorded of the script in `file`, values clipped and masked as the rest
    /// of an explanation's.
    pub(super) fn of(file: &str, decided: crate::rules::Decision) -> Decision {
        let crate::rules::Decision {
            line,
            col,
            when,
            reads,
            result,
        } = decided;
        let reads = reads
            .into_iter()
            .map(|(read, value)| {
                let secret = read.rsplit(['.', '[']).next().is_some_and(looks_secret);
                match value {
                    None => Seen {
                        read,
                        value: Value::Null,
                        missing: true,
                    },
                    Some(_) if secret => Seen {
                        read,
                        value: Value::from("***"),
                        missing: false,
                    },
                    Some(v) => Seen {
                        read,
                        value: clip(&v, VALUE_CHARS),
                        missing: false,
                    },
                }
            })
            .collect();
        let (result, error) = match result {
            Ok(b) => (Some(b), None),
            Err(e) => (None, Some(e)),
        };
        Decision {
            at: format!("{file}:{line}:{col}"),
            when,
            reads,
            result,
            error,
        }
    }
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
        let size = json_len(&entry).map_or(MAX_BYTES, |n| n + 1);
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
}

/// The length of `value`'s JSON, counted without making it.
fn json_len(value: &impl Serialize) -> Option<usize> {
    let mut counted = Counted(0);
    serde_json::to_writer(&mut counted, value).ok()?;
    Some(counted.0)
}

/// Counts the bytes written to it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
            *budget = budget.saturating_sub(json_len(scalar).unwrap_or(0));
            scalar.clone()
        }
    }
}

#[cfg(test)]
mod tests;
