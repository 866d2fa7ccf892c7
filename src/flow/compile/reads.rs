//! What a flow reads of the body, worked out from its top-level steps while they compile, so
//! that a body is parsed keeping only those fields.

use super::steps::set_value_kind;
use super::StepCx;
use crate::config::model::StepConfig;
use crate::projection::Need;

/// What the top-level steps read of the body, worked out while they compile. `open` until a
/// `map` without `into` replaces the record: nothing after it sees the body.
pub(super) struct NeedBuilder {
    pub(super) need: Need,
    pub(super) open: bool,
}

impl NeedBuilder {
    pub(super) fn add(&mut self, f: impl FnOnce(&mut Need)) {
        if self.open {
            f(&mut self.need);
        }
    }
    pub(super) fn all(&mut self) {
        self.add(|n| *n = Need::All);
    }
    pub(super) fn finish(self) -> Need {
        // A record that is never replaced ends up in the output whole.
        if self.open {
            Need::All
        } else {
            self.need
        }
    }
}

/// Adds what one top-level step reads of the body (see [`NeedBuilder`]).
pub(super) fn add_step_reads(cx: &StepCx<'_>, step: &StepConfig, need: &mut NeedBuilder) {
    match step {
        StepConfig::Map(m) => {
            match cx
                .mappings
                .get(&m.mapping)
                .cloned()
                .flatten()
                .and_then(|m| m.reads())
            {
                Some(paths) => need.add(|n| paths.iter().for_each(|p| n.add_jsonpath(p.as_str()))),
                None => need.all(),
            }
            if m.into.is_none() {
                need.open = false;
            }
        }
        StepConfig::Script(name) => {
            let src = cx.script_sources.get(name).copied().unwrap_or_default();
            need.add(|n| n.add_rhai(src));
        }
        StepConfig::Filter(src) => need.add(|n| n.add_rhai(src)),
        StepConfig::Set(fields) => {
            for value in fields.values() {
                match set_value_kind(value) {
                    Some(("expr", src)) => need.add(|n| n.add_rhai(src)),
                    Some((_, src)) => need.add(|n| n.add_jsonpath(src)),
                    None => {}
                }
            }
        }
        StepConfig::Send(s) => match &s.payload {
            Some(p) => need.add(|n| n.add_jsonpath(p)),
            None => need.all(),
        },
        StepConfig::Fetch(f) => {
            for value in f.params.values() {
                match set_value_kind(value) {
                    Some(("expr", src)) => need.add(|n| n.add_rhai(src)),
                    Some((_, src)) => need.add(|n| n.add_jsonpath(src)),
                    None => {}
                }
            }
            // Without `into` the answer replaces the record: later steps read it, not the body.
            if f.into.is_none() {
                need.open = false;
            }
        }
        // Arms may replace the record or not; not worth following. Nor are an `each`'s steps.
        StepConfig::Switch(_) | StepConfig::Each(_) => need.all(),
    }
}
