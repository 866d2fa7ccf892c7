//! [`Need`]: what code reads of a JSON value, built from JSONPaths and from what the rules
//! module found a script reads ([`Read`]), and projecting a value by it and writing back what
//! code made of the projection.

use std::collections::BTreeMap;

use serde_json::Value;

use super::path::simple_path;

/// What a flow needs of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    All,
    /// Only whether the key exists (`"id" in record`): the value is not read.
    Present,
    /// Of an object, only these fields; of an array, these fields of every element; any
    /// other value whole.
    Fields(BTreeMap<String, Need>),
    /// Where a path steps over elements (`[*]`, `[0]`): of an array, these fields of every
    /// element (as [`Need::Fields`]); of an object, everything, because a wildcard selects
    /// every member of an object whatever its name (`$.products[*].sku` over an object of
    /// products reads each member's `sku`); any other value whole.
    Items(BTreeMap<String, Need>),
}

impl Default for Need {
    fn default() -> Self {
        Need::Fields(BTreeMap::new())
    }
}

/// One thing code reads of a value, as the rules module finds it in a script's AST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `record.a.b`: the value at the path.
    Path(Vec<PathStep>),
    /// `"k" in record.a`: whether the key exists.
    Presence(Vec<PathStep>),
}

/// One step of a simple path: a field name, or "every element / any index".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Name(String),
    Elements,
}

impl Need {
    pub fn is_all(&self) -> bool {
        matches!(self, Need::All)
    }

    /// Adds a path: everything below its end is needed.
    pub fn add_path(&mut self, steps: &[PathStep]) {
        if *self == Need::Present {
            *self = Need::default();
        }
        if let Need::Fields(fields) = self {
            if matches!(steps.first(), Some(PathStep::Elements)) {
                *self = Need::Items(std::mem::take(fields));
            }
        }
        let (Need::Fields(fields) | Need::Items(fields)) = self else {
            return;
        };
        match steps.split_first() {
            None => *self = Need::All,
            // Arrays are projected element-wise by the same fields, so past the step the path
            // goes on at this level.
            Some((PathStep::Elements, rest)) => self.add_path(rest),
            Some((PathStep::Name(name), rest)) => {
                fields.entry(name.clone()).or_default().add_path(rest)
            }
        }
    }

    /// Adds a test for the presence of the key at the end of `steps`.
    pub fn add_presence(&mut self, steps: &[PathStep]) {
        let Some((last, parents)) = steps.split_last() else {
            return;
        };
        let mut at = self;
        for step in parents {
            if *at == Need::Present {
                *at = Need::default();
            }
            match (at, step) {
                (Need::Fields(fields) | Need::Items(fields), PathStep::Name(name)) => {
                    at = fields.entry(name.clone()).or_default()
                }
                _ => return,
            }
        }
        match (at, last) {
            (Need::Fields(fields) | Need::Items(fields), PathStep::Name(name)) => {
                fields.entry(name.clone()).or_insert(Need::Present);
            }
            (at @ Need::Present, _) => *at = Need::default(),
            _ => {}
        }
    }

    /// Adds what a JSONPath reads; a path too complex to analyse needs everything.
    pub fn add_jsonpath(&mut self, src: &str) {
        match simple_path(src) {
            Some(steps) => self.add_path(&steps),
            None => *self = Need::All,
        }
    }

    /// Adds what code reads; `None` (a use that cannot be seen through) needs everything.
    pub fn add_reads(&mut self, reads: Option<&[Read]>) {
        match reads {
            Some(reads) => {
                for r in reads {
                    match r {
                        Read::Path(p) => self.add_path(p),
                        Read::Presence(p) => self.add_presence(p),
                    }
                }
            }
            None => *self = Need::All,
        }
    }

    /// A copy of `value` with only what is needed (`Present` keys become null).
    pub fn project(&self, value: &Value) -> Value {
        match (self, value) {
            (Need::All, v) => v.clone(),
            (Need::Present, _) => Value::Null,
            (Need::Fields(fields), v) => project_fields(fields, v),
            (Need::Items(_), Value::Object(_)) => value.clone(),
            (Need::Items(fields), v) => project_fields(fields, v),
        }
    }

    /// Writes into `target` what code given `self.project(target)` made of it: every needed
    /// part is replaced by (or, when gone, removed for) its counterpart in `from`, and the rest
    /// of `target` is left as it was.
    pub fn write_back(&self, target: &mut Value, from: Value) {
        match (self, target, from) {
            (Need::Present, _, _) => {}
            (Need::Items(fields), target @ Value::Array(_), from) => {
                write_back_fields(fields, target, from)
            }
            (Need::Fields(fields), target, from) => write_back_fields(fields, target, from),
            (_, target, from) => *target = from,
        }
    }
}

/// [`Need::project`] by named fields: an object keeps them, an array is projected element by
/// element by them, anything else is kept whole.
fn project_fields(fields: &BTreeMap<String, Need>, value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, need)| Some((k.clone(), need.project(m.get(k)?))))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| project_fields(fields, v)).collect())
        }
        v => v.clone(),
    }
}

/// [`Need::write_back`] by named fields.
fn write_back_fields(fields: &BTreeMap<String, Need>, target: &mut Value, from: Value) {
    match (target, from) {
        (Value::Object(t), Value::Object(mut f)) => {
            for (k, need) in fields {
                match f.remove(k) {
                    Some(v) => match t.get_mut(k) {
                        Some(slot) => need.write_back(slot, v),
                        None => {
                            t.insert(k.clone(), v);
                        }
                    },
                    None if *need != Need::Present => {
                        t.remove(k);
                    }
                    None => {}
                }
            }
            // Keys the code added where it could only have added them by name.
            for (k, v) in f {
                t.insert(k, v);
            }
        }
        (Value::Array(t), Value::Array(f)) if t.len() == f.len() => {
            for (slot, v) in t.iter_mut().zip(f) {
                write_back_fields(fields, slot, v);
            }
        }
        (target, from) => *target = from,
    }
}
