//! What a flow reads of the body, worked out from its top-level steps while they compile, so
//! that a body is parsed keeping only those fields.

use super::StepCx;
use crate::config::model::StepConfig;
use crate::flow::{SetValue, Step};
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

/// Adds what one top-level step reads of the body (see [`NeedBuilder`]). What its Rhai reads
/// comes from the compiled step (`None` when it did not compile: the flow will not run).
pub(super) fn add_step_reads(
    cx: &StepCx<'_>,
    step: &StepConfig,
    compiled: Option<&Step>,
    need: &mut NeedBuilder,
) {
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
        StepConfig::Script(_) => match compiled {
            Some(Step::Script { script, .. }) => need.add(|n| script.add_reads_to(n)),
            _ => need.all(),
        },
        StepConfig::Filter(_) => match compiled {
            Some(Step::Filter { when, .. }) => need.add(|n| when.add_reads_to(n)),
            _ => need.all(),
        },
        StepConfig::Set(_) => match compiled {
            Some(Step::Set { fields, .. }) => add_value_reads(need, fields.iter().map(|f| &f.1)),
            _ => need.all(),
        },
        StepConfig::Send(s) => match &s.payload {
            Some(p) => need.add(|n| n.add_jsonpath(p)),
            None => need.all(),
        },
        StepConfig::Fetch(f) => {
            match compiled {
                Some(Step::Fetch { params, .. }) => {
                    add_value_reads(need, params.iter().map(|p| &p.1))
                }
                _ => need.all(),
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

fn add_value_reads<'a>(need: &mut NeedBuilder, values: impl Iterator<Item = &'a SetValue>) {
    for value in values {
        match value {
            SetValue::Expr(e) => need.add(|n| e.add_reads_to(n)),
            SetValue::From(path) => need.add(|n| n.add_jsonpath(path.as_str())),
            SetValue::Literal(_) => {}
        }
    }
}
