//! What a condition read of the record and what it came to: each read path with its value, and
//! the condition's source with those values written in.

use std::collections::HashSet;

use serde_json::Value;

use super::{clip, Seen, Test, VALUE_CHARS};
use crate::config::env::looks_secret;
use crate::projection::{PathStep, Read};
use crate::rules::{Expr, RunError};

/// `expr` evaluated on `record` to `result`: what it read, with its values.
pub(in crate::flow) fn test(expr: &Expr, record: &Value, result: &Result<bool, RunError>) -> Test {
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
pub(in crate::flow) fn seen(reads: Option<&[Read]>, record: &Value) -> Vec<Seen> {
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

pub(super) use crate::rules::push_name;

/// The condition's text with each field it read replaced by its value (`record.amount >= 100`
/// → `612.5 >= 100`); text inside string literals is left alone.
pub(in crate::flow) fn with_values(src: &str, reads: &[Seen]) -> String {
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
