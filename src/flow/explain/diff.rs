//! What changed between two values, as the bounded list of changes a trail keeps, values under
//! secret-named keys masked.

use serde_json::Value;

use super::reads::push_name;
use super::{clip, Change, Diff, Op, DIFF_CHANGES, VALUE_CHARS};
use crate::config::env::looks_secret;

/// What changed from `old` to `new`, paths from `root` (`record`, or a state key).
pub(in crate::flow) fn diff(root: &str, old: &Value, new: &Value) -> Diff {
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

pub(super) fn add(
    out: &mut Diff,
    op: Op,
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    secret: bool,
) {
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
