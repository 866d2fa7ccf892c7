//! The compiled mapping and its execution: the hot path.
//!
//! A [`Mapping`] is immutable and shared between events. Applying it walks a tree prepared at
//! load (dotted targets already split into nested nodes, paths already compiled, lookups
//! already hashed) and builds the output object directly. The input is only
//! borrowed; a value is cloned once, when it is emitted.
//!
//! Each application runs within a [`Budget`] made from the mapping's [`Limits`]: the nodes
//! its queries visit (and one per field evaluated), the output it emits, counted before a
//! value is copied, and its time. Running out fails the field with
//! [`FieldProblem::Budget`](super::error::FieldProblem::Budget). Applying is `apply.rs`; this file
//! holds the plan `compile` builds and what it reads of a record.

mod apply;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::access::Access;
use super::convert::{FieldType, Transform};
use super::error::MappingError;
use super::template::Template;
use crate::jsonpath::JsonPath;
use crate::jsonpath::{Budget, Limits};
use crate::rules::{Expr, Rules};
use apply::build_into;

/// A compiled mapping: build with [`compile`](crate::mapping::compile), run with [`Mapping::apply`].
#[derive(Clone, Debug)]
pub struct Mapping {
    pub(crate) name: String,
    pub(crate) nodes: Vec<Node>,
    pub(crate) limits: Limits,
}

/// One key of an output object.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) key: String,
    pub(crate) kind: NodeKind,
}

#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    Field(Box<Field>),
    /// A nested object made by dotted targets (`price.value`); `origin` is the first target
    /// that created it, for collision messages.
    Object {
        origin: String,
        children: Vec<Node>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The target as written (`price.value`), for error messages.
    pub(crate) target: String,
    pub(crate) source: Source,
    pub(crate) transforms: Vec<Transform>,
    pub(crate) lookup: Option<Arc<Lookup>>,
    pub(crate) expr: Option<CompiledExpr>,
    pub(crate) ty: Option<FieldType>,
    /// Already converted to `ty` at load.
    pub(crate) default: Option<Value>,
    pub(crate) required: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Only `expr` and/or `default`.
    Nothing,
    Path(Access),
    Template(Template),
    Each {
        path: Access,
        fields: Vec<Node>,
    },
}

/// An inline `expr`, with its source for `Debug`. Behind an `Arc` so the plan is cheap to
/// clone without asking anything of the rules module's `Expr` type.
#[derive(Clone)]
pub(crate) struct CompiledExpr {
    pub(crate) src: String,
    pub(crate) expr: Arc<Expr>,
}

impl std::fmt::Debug for CompiledExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expr {:?}", self.src)
    }
}

#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) name: String,
    pub(crate) table: HashMap<String, Value>,
}

impl Mapping {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same mapping applied within other limits than the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Mapping {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Maps one record. Evaluates fields in declared order; stops at the first
    /// field that fails.
    pub fn apply(&self, rules: &Rules, input: &Value) -> Result<Value, MappingError> {
        let mut out = Value::Null;
        self.apply_into(rules, input, &mut out)?;
        Ok(out)
    }

    /// [`Mapping::apply`] into `out`, whatever it holds: the same result, but the objects,
    /// arrays and strings of an earlier output (of the same mapping, for most reuse) are
    /// overwritten in place instead of allocated again and freed. On an error `out` holds
    /// part of an output and is only good to build into again.
    pub fn apply_into(
        &self,
        rules: &Rules,
        input: &Value,
        out: &mut Value,
    ) -> Result<(), MappingError> {
        if !out.is_object() {
            *out = Value::Object(Map::new());
        }
        let Value::Object(fields) = out else {
            return Ok(());
        };
        let mut budget = Budget::new(self.limits.clone());
        build_into(&self.nodes, rules, input, fields, &mut budget).map_err(|f| MappingError {
            mapping: self.name.clone(),
            field: f.field,
            problem: f.problem,
        })
    }

    /// The JSONPaths this mapping reads from a record (`from`, template placeholders and
    /// `each` sources; fields inside `each` read within the elements), or `None` when a
    /// top-level `expr` may read anything in the record. Lets a caller parse only what is
    /// needed.
    pub fn reads(&self) -> Option<Vec<JsonPath>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            collect_reads(node, &mut out)?;
        }
        Some(out)
    }
}

fn collect_reads(node: &Node, out: &mut Vec<JsonPath>) -> Option<()> {
    match &node.kind {
        NodeKind::Object { children, .. } => {
            for child in children {
                collect_reads(child, out)?;
            }
        }
        NodeKind::Field(f) => {
            if f.expr.is_some() {
                return None;
            }
            match &f.source {
                Source::Nothing => {}
                Source::Path(a) => out.push(a.path().clone()),
                Source::Template(t) => out.extend(t.paths().cloned()),
                Source::Each { path, fields } => {
                    // What the inner fields read, below each element: `$.products[*]` with an
                    // inner `$.sku` reads `$.products[*].sku`. When a joined path does not
                    // parse, or the elements are read whole, the elements are read whole.
                    let mut inner = Vec::new();
                    let whole = fields
                        .iter()
                        .try_for_each(|n| collect_reads(n, &mut inner))
                        .is_none()
                        || inner.iter().any(|p| p.as_str() == "$");
                    let joined: Option<Vec<JsonPath>> = inner
                        .iter()
                        .map(|p| {
                            JsonPath::parse(&format!(
                                "{}{}",
                                path.path().as_str(),
                                &p.as_str()[1..]
                            ))
                            .ok()
                        })
                        .collect();
                    match joined {
                        Some(paths) if !whole => out.extend(paths),
                        _ => out.push(path.path().clone()),
                    }
                }
            }
        }
    }
    Some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
