//! Secrets by value masked in a finished explanation, in place: every string it holds, field
//! by field and inside the values it quotes, passed to the caller's mask, and replaced only
//! when the mask changed it. Owns only that walk: what a secret is (the project's redactor)
//! is the caller's. The keys of the objects it quotes are names, not values: not masked.

use std::sync::Arc;

use serde_json::Value;

use super::{Call, Change, Decision, Diff, Entry, Explanation, Seen, StateWrite, Test, What};

/// Gives the masked form of a string, or `None` when there is nothing in it to mask.
type Mask<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl Explanation {
    /// Every string in it passed through `mask` (the runtime's redactor of secret values),
    /// in place: a string is replaced only when the mask changed it.
    pub fn mask_strings(&mut self, mask: &dyn Fn(&str) -> Option<String>) {
        for entry in &mut self.entries {
            entry_(entry, mask);
        }
    }
}

fn entry_(entry: &mut Entry, mask: &Mask<'_>) {
    let Entry { step, what } = entry;
    text(step, mask);
    match what {
        What::Condition { test: t, then } => {
            test(t, mask);
            text(then, mask);
        }
        What::Switch {
            arms,
            taken: _,
            otherwise: _,
            then,
        } => {
            arms.iter_mut().for_each(|t| test(t, mask));
            if let Some(then) = then {
                text(then, mask);
            }
        }
        What::Change {
            reads,
            call,
            diff: d,
            state,
            decisions,
            decisions_omitted: _,
        } => {
            reads.iter_mut().for_each(|s| seen(s, mask));
            if let Some(Call {
                connector,
                op,
                params,
                error,
            }) = call
            {
                text(connector, mask);
                text(op, mask);
                value(params, mask);
                if let Some(error) = error {
                    text(error, mask);
                }
            }
            diff(d, mask);
            for StateWrite { key, diff: d } in state {
                text(key, mask);
                diff(d, mask);
            }
            decisions.iter_mut().for_each(|d| decision(d, mask));
        }
        What::Send {
            connector,
            op,
            object,
            action: _,
            payload,
        } => {
            shared(connector, mask);
            shared(op, mask);
            if let Some(object) = object {
                shared(object, mask);
            }
            value(payload, mask);
        }
        What::Each { elements: _ } => {}
        What::Failed { message } => text(message, mask),
    }
}

fn test(test: &mut Test, mask: &Mask<'_>) {
    let Test {
        when,
        reads,
        with_values,
        result: _,
        error,
    } = test;
    text(when, mask);
    reads.iter_mut().for_each(|s| seen(s, mask));
    text(with_values, mask);
    if let Some(error) = error {
        text(error, mask);
    }
}

fn decision(decision: &mut Decision, mask: &Mask<'_>) {
    let Decision {
        at,
        when,
        reads,
        result: _,
        error,
    } = decision;
    text(at, mask);
    text(when, mask);
    reads.iter_mut().for_each(|s| seen(s, mask));
    if let Some(error) = error {
        text(error, mask);
    }
}

fn seen(seen: &mut Seen, mask: &Mask<'_>) {
    let Seen {
        read,
        value: v,
        missing: _,
    } = seen;
    text(read, mask);
    value(v, mask);
}

fn diff(diff: &mut Diff, mask: &Mask<'_>) {
    for Change {
        op: _,
        path,
        old,
        new,
    } in &mut diff.changes
    {
        text(path, mask);
        if let Some(old) = old {
            value(old, mask);
        }
        if let Some(new) = new {
            value(new, mask);
        }
    }
}

fn value(v: &mut Value, mask: &Mask<'_>) {
    match v {
        Value::String(s) => text(s, mask),
        Value::Array(items) => items.iter_mut().for_each(|v| value(v, mask)),
        Value::Object(map) => map.values_mut().for_each(|v| value(v, mask)),
        _ => {}
    }
}

fn text(s: &mut String, mask: &Mask<'_>) {
    if let Some(masked) = mask(s) {
        *s = masked;
    }
}

fn shared(s: &mut Arc<str>, mask: &Mask<'_>) {
    if let Some(masked) = mask(s) {
        *s = masked.into();
    }
}
