//! The fast path: queries of plain names, indexes and wildcards, read from their text
//! (`parse_simple`) and walked directly over the `serde_json::Value` without the budgeted
//! evaluator. It must not decide validity (the engine has already accepted every query it
//! sees) nor handle anything but child segments of one name, index or wildcard.

use serde_json::Value;

use super::reader::Reader;
use super::{Segment, Step};

/// The steps as segments, if none is a wildcard.
pub(super) fn as_segments(steps: &[Step]) -> Option<Vec<Segment>> {
    steps
        .iter()
        .map(|s| match s {
            Step::Child(seg) => Some(seg.clone()),
            Step::Wildcard => None,
        })
        .collect()
}

fn child<'a>(v: &'a Value, seg: &Segment) -> Option<&'a Value> {
    match seg {
        Segment::Name(name) => v.as_object()?.get(name.as_str()),
        Segment::Index(i) => {
            let items = v.as_array()?;
            let at = if *i < 0 {
                items
                    .len()
                    .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
            } else {
                usize::try_from(*i).ok()?
            };
            items.get(at)
        }
    }
}

pub(super) fn walk<'a>(mut v: &'a Value, segs: &[Segment]) -> Option<&'a Value> {
    for seg in segs {
        v = child(v, seg)?;
    }
    Some(v)
}

/// Applies each step to every node selected so far, in order: exactly RFC 9535's rule for a
/// sequence of segments, and iterative, so a long path cannot exhaust the stack.
pub(super) fn walk_simple<'a>(root: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    // The names and indexes before the first wildcard select at most one node.
    let split = steps
        .iter()
        .position(|s| matches!(s, Step::Wildcard))
        .unwrap_or(steps.len());
    let (head, tail) = steps.split_at(split);
    let mut start = Some(root);
    for step in head {
        if let Step::Child(seg) = step {
            start = start.and_then(|v| child(v, seg));
        }
    }
    let mut nodes: Vec<&'a Value> = start.into_iter().collect();
    let mut next = Vec::new();
    for step in tail {
        if nodes.is_empty() {
            break;
        }
        next.clear();
        match step {
            Step::Child(seg) => next.extend(nodes.iter().filter_map(|v| child(v, seg))),
            Step::Wildcard => {
                for v in &nodes {
                    match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(members) => next.extend(members.values()),
                        _ => {}
                    }
                }
            }
        }
        std::mem::swap(&mut nodes, &mut next);
    }
    nodes
}

/// Reads a query made only of child segments holding one name, one index or a wildcard
/// (`$`, `.name`, `.*`, `['name']`, `["name"]`, `[3]`, `[-1]`, `[*]`, with the blanks RFC
/// 9535 allows). `None` for anything else. Called only on queries the engine accepted, so it
/// needs to read valid queries right, not to reject invalid ones.
pub(super) fn parse_simple(src: &str) -> Option<Vec<Step>> {
    let mut r = Reader {
        s: src.as_bytes(),
        src,
        i: 0,
    };
    if !r.eat(b'$') {
        return None;
    }
    let mut steps = Vec::new();
    loop {
        r.blanks();
        match r.peek() {
            None => return Some(steps),
            Some(b'.') => {
                r.i += 1;
                match r.peek()? {
                    b'*' => {
                        r.i += 1;
                        steps.push(Step::Wildcard);
                    }
                    b'.' => return None, // descendant segment
                    _ => steps.push(Step::Child(Segment::Name(r.shorthand_name()?))),
                }
            }
            Some(b'[') => {
                r.i += 1;
                r.blanks();
                let step = match r.peek()? {
                    b'*' => {
                        r.i += 1;
                        Step::Wildcard
                    }
                    q @ (b'\'' | b'"') => {
                        r.i += 1;
                        Step::Child(Segment::Name(r.string(q)?))
                    }
                    b'-' | b'0'..=b'9' => Step::Child(Segment::Index(r.int()?)),
                    _ => return None, // filter, slice without start
                };
                r.blanks();
                if !r.eat(b']') {
                    return None; // several selectors, or a slice
                }
                steps.push(step);
            }
            Some(_) => return None,
        }
    }
}
