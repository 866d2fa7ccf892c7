//! The compiled mapping and its execution: the hot path.
//!
//! A [`Mapping`] is immutable and shared between events. Applying it walks a tree prepared at
//! load (dotted targets already split into nested nodes, paths already compiled, lookups
//! already hashed) and builds the output object directly. The input is only
//! borrowed; a value is cloned once, when it is emitted.
//!
//! Each application runs within a [`Budget`] made from the mapping's [`Limits`]: the nodes
//! its queries visit (and one per field evaluated), the output it emits, counted before a
//! value is copied, and its time. Running out fails the field with [`FieldProblem::Budget`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::access::Access;
use super::convert::{convert, key_text, map_scalars, transform, FieldType, Transform};
use super::error::{show, FieldProblem, MappingError};
use super::template::Template;
use crate::jsonpath::JsonPath;
use crate::jsonpath::{Budget, Exceeded, Limits};
use crate::rules::{Expr, Rules};

/// A compiled mapping: build with [`compile`](super::compile), run with [`Mapping::apply`].
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

/// A field failure before the mapping name is attached (which costs an allocation, so it
/// happens once, at the top).
struct Fail {
    field: String,
    problem: Box<FieldProblem>,
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

fn build(
    nodes: &[Node],
    rules: &Rules,
    root: &Value,
    budget: &mut Budget,
) -> Result<Map<String, Value>, Fail> {
    let mut out = Map::new();
    build_into(nodes, rules, root, &mut out, budget)?;
    Ok(out)
}

/// Builds the object of `nodes` into `out`, reusing what it holds: fields it has are written
/// in place, fields omitted this time and keys no node makes are removed.
fn build_into(
    nodes: &[Node],
    rules: &Rules,
    root: &Value,
    out: &mut Map<String, Value>,
    budget: &mut Budget,
) -> Result<(), Fail> {
    // Into an empty object every field is new: no point looking for it first.
    let fresh = out.is_empty();
    let mut kept = 0;
    for node in nodes {
        let slot = if fresh { None } else { out.get_mut(&node.key) };
        let filled = match (&node.kind, slot) {
            (NodeKind::Field(field), Some(slot)) => field.eval_into(rules, root, slot, budget)?,
            (NodeKind::Field(field), None) => match field.eval(rules, root, budget)? {
                Some(v) => {
                    out.insert(node.key.clone(), v);
                    true
                }
                None => false,
            },
            (NodeKind::Object { children, .. }, Some(Value::Object(inner))) => {
                build_into(children, rules, root, inner, budget)?;
                // An object whose fields were all omitted is omitted too, rather than `{}`.
                !inner.is_empty()
            }
            (NodeKind::Object { children, .. }, _) => {
                let inner = build(children, rules, root, budget)?;
                let filled = !inner.is_empty();
                if filled {
                    out.insert(node.key.clone(), Value::Object(inner));
                }
                filled
            }
        };
        if filled {
            kept += 1;
        } else if !fresh {
            out.remove(&node.key);
        }
    }
    // Keys of an earlier output that no node makes (a script added them, say).
    if out.len() != kept {
        out.retain(|k, _| nodes.iter().any(|n| n.key == *k));
    }
    Ok(())
}

impl Field {
    fn fail(&self, problem: FieldProblem) -> Fail {
        Fail {
            field: self.target.clone(),
            problem: Box::new(problem),
        }
    }

    /// Running out of `budget` while reading `from` (a path, or what the field makes).
    fn over<'s>(&'s self, from: &'s str) -> impl FnOnce(Exceeded) -> Fail + 's {
        move |exceeded| {
            self.fail(FieldProblem::Budget {
                from: from.into(),
                exceeded,
            })
        }
    }

    /// What the field makes, named for a budget error.
    fn made_by(&self) -> &str {
        match &self.source {
            _ if self.expr.is_some() => "expr",
            Source::Path(a) => a.path().as_str(),
            Source::Each { path, .. } => path.path().as_str(),
            Source::Template(_) => "template",
            Source::Nothing => "default",
        }
    }

    /// Counts the field's value as output (before a borrowed one is copied).
    fn emit(&self, v: &Value, budget: &mut Budget) -> Result<(), Fail> {
        budget.output(v).map_err(self.over(self.made_by()))
    }

    /// The field's value, or `None` when it is omitted.
    fn eval(
        &self,
        rules: &Rules,
        root: &Value,
        budget: &mut Budget,
    ) -> Result<Option<Value>, Fail> {
        budget.visit(1).map_err(self.over(self.made_by()))?;
        if let Source::Each { path, fields } = &self.source {
            let mut out = Value::Null;
            return Ok(self
                .each_into(path, fields, rules, root, &mut out, budget)?
                .then_some(out));
        }
        match self.value(rules, root, budget)? {
            Some(v) => {
                self.emit(&v, budget)?;
                Ok(Some(v.into_owned()))
            }
            None => Ok(None),
        }
    }

    /// [`Field::eval`] into `slot`, reusing what it holds; false when the field is omitted
    /// (`slot` is then as it was).
    fn eval_into(
        &self,
        rules: &Rules,
        root: &Value,
        slot: &mut Value,
        budget: &mut Budget,
    ) -> Result<bool, Fail> {
        budget.visit(1).map_err(self.over(self.made_by()))?;
        match &self.source {
            Source::Each { path, fields } => {
                self.each_into(path, fields, rules, root, slot, budget)
            }
            // A template and nothing else: rendered into the string already there.
            Source::Template(t)
                if self.transforms.is_empty()
                    && self.lookup.is_none()
                    && self.expr.is_none()
                    && self.ty.is_none() =>
            {
                let len = match slot {
                    Value::String(text) => {
                        text.clear();
                        t.render_into(text, root);
                        text.len()
                    }
                    other => {
                        let text = t.render(root);
                        let len = text.len();
                        *other = Value::String(text);
                        len
                    }
                };
                budget
                    .output_bytes(len + 2)
                    .map_err(self.over("template"))?;
                Ok(true)
            }
            _ => Ok(match self.value(rules, root, budget)? {
                Some(Cow::Borrowed(v)) => {
                    self.emit(v, budget)?;
                    match (&mut *slot, v) {
                        (Value::String(to), Value::String(from)) => to.clone_from(from),
                        (to, from) => *to = from.clone(),
                    }
                    true
                }
                Some(Cow::Owned(v)) => {
                    self.emit(&v, budget)?;
                    *slot = v;
                    true
                }
                None => false,
            }),
        }
    }

    /// The value of a field that is not an `each`, borrowed when it is a value of the record
    /// or of the mapping as it stands. Stages, in order: read (`from` or `template`),
    /// transforms, lookup, `expr`, then default/required for a missing value, then `type`.
    fn value<'a>(
        &'a self,
        rules: &Rules,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Option<Cow<'a, Value>>, Fail> {
        // Most fields only read a path, maybe with a type: that case skips the stages.
        if let (Source::Path(a), true, None, None) = (
            &self.source,
            self.transforms.is_empty(),
            &self.lookup,
            &self.expr,
        ) {
            if !a.is_many() {
                return self.read(a, a.get_one(root).filter(|v| !v.is_null()));
            }
        }
        let (mut from, found) = match &self.source {
            Source::Nothing => ("default", None),
            Source::Path(a) => (
                a.path().as_str(),
                a.get(root, budget).map_err(self.over(a.path().as_str()))?,
            ),
            Source::Template(t) => ("template", Some(Cow::Owned(Value::String(t.render(root))))),
            // `eval` and `eval_into` take these before.
            Source::Each { .. } => return Ok(None),
        };
        let mut value = found.filter(|v| !v.is_null());
        if let Some(mut v) = value.take() {
            for t in &self.transforms {
                v = map_scalars(v, &mut |s| Ok::<_, Fail>(transform(*t, s)))?;
            }
            if let Some(lookup) = &self.lookup {
                v = map_scalars(v, &mut |s| self.look_up(lookup, from, s))?;
            }
            value = Some(v);
        }
        if let Some(expr) = &self.expr {
            from = "expr";
            let out = expr
                .expr
                .eval_field(rules, value.as_deref(), root)
                .map_err(|e| {
                    self.fail(FieldProblem::Expr {
                        message: e.to_string(),
                    })
                })?;
            value = Some(Cow::<Value>::Owned(out)).filter(|v| !v.is_null());
        }
        let Some(mut v) = value else {
            return match &self.default {
                Some(d) => Ok(Some(Cow::Borrowed(d))),
                None if self.required => {
                    Err(self.fail(FieldProblem::Missing { from: from.into() }))
                }
                None => Ok(None),
            };
        };
        if let Some(ty) = self.ty {
            v = map_scalars(v, &mut |s| convert(ty, s)).map_err(|e| {
                self.fail(FieldProblem::NotConvertible {
                    from: from.into(),
                    found: show(&e.found),
                    ty,
                    detail: e.detail,
                })
            })?;
        }
        Ok(Some(v))
    }

    /// [`Field::eval`] of a field that only reads a path (with a type, or not): `found` is
    /// what it read, null taken as missing.
    fn read<'a>(
        &'a self,
        a: &Access,
        found: Option<&'a Value>,
    ) -> Result<Option<Cow<'a, Value>>, Fail> {
        let Some(v) = found else {
            return match &self.default {
                Some(d) => Ok(Some(Cow::Borrowed(d))),
                None if self.required => Err(self.fail(FieldProblem::Missing {
                    from: a.path().as_str().into(),
                })),
                None => Ok(None),
            };
        };
        let Some(ty) = self.ty else {
            return Ok(Some(Cow::Borrowed(v)));
        };
        map_scalars(Cow::Borrowed(v), &mut |s| convert(ty, s))
            .map(Some)
            .map_err(|e| {
                self.fail(FieldProblem::NotConvertible {
                    from: a.path().as_str().into(),
                    found: show(&e.found),
                    ty,
                    detail: e.detail,
                })
            })
    }

    /// A lookup hit, else the default (already of the field's type), else an error.
    fn look_up<'a>(
        &'a self,
        lookup: &'a Lookup,
        from: &str,
        v: Cow<'a, Value>,
    ) -> Result<Cow<'a, Value>, Fail> {
        let Some(key) = key_text(&v) else {
            return Err(self.fail(FieldProblem::BadLookupKey {
                from: from.into(),
                found: show(&v),
                lookup: lookup.name.clone(),
            }));
        };
        if let Some(hit) = lookup.table.get(key) {
            return Ok(Cow::Borrowed(hit));
        }
        match &self.default {
            Some(d) => Ok(Cow::Borrowed(d)),
            None => Err(self.fail(FieldProblem::NotInLookup {
                from: from.into(),
                found: show(&v),
                lookup: lookup.name.clone(),
            })),
        }
    }

    /// `each`: one sub-mapping per element, with the element as `$`, into `slot`, reusing the
    /// objects of the array it holds; false when the field is omitted. A non-singular path
    /// iterates its matches; a singular one must point at an array (or be missing).
    fn each_into(
        &self,
        path: &Access,
        fields: &[Node],
        rules: &Rules,
        root: &Value,
        slot: &mut Value,
        budget: &mut Budget,
    ) -> Result<bool, Fail> {
        let from = || path.path().as_str().to_string();
        if path.is_many() {
            let items = path
                .get_all(root, budget)
                .map_err(self.over(path.path().as_str()))?;
            return self.each_of_into(items.into_iter(), fields, rules, slot, budget);
        }
        match path.get_one(root) {
            None | Some(Value::Null) if self.required => {
                Err(self.fail(FieldProblem::Missing { from: from() }))
            }
            None | Some(Value::Null) => Ok(false),
            Some(Value::Array(items)) => {
                self.each_of_into(items.iter(), fields, rules, slot, budget)
            }
            Some(other) => Err(self.fail(FieldProblem::NotAnArray {
                from: from(),
                found: show(other),
            })),
        }
    }

    fn each_of_into<'v>(
        &self,
        items: impl ExactSizeIterator<Item = &'v Value>,
        fields: &[Node],
        rules: &Rules,
        slot: &mut Value,
        budget: &mut Budget,
    ) -> Result<bool, Fail> {
        if !slot.is_array() {
            *slot = Value::Array(Vec::with_capacity(items.len()));
        }
        let Value::Array(out) = slot else {
            return Ok(true);
        };
        out.truncate(items.len());
        for (i, item) in items.enumerate() {
            let at = |f: Fail| Fail {
                field: format!("{}[{i}].{}", self.target, f.field),
                problem: f.problem,
            };
            match out.get_mut(i) {
                Some(Value::Object(object)) => {
                    build_into(fields, rules, item, object, budget).map_err(at)?
                }
                Some(other) => {
                    *other = Value::Object(build(fields, rules, item, budget).map_err(at)?)
                }
                None => out.push(Value::Object(
                    build(fields, rules, item, budget).map_err(at)?,
                )),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mapping::{compile, test_rules, MappingFile};

    /// A BigCommerce v2 order, trimmed: ids beyond 2^53, money as decimal strings.
    const ORDER: &str = r#"{
        "id": 820982911946154508,
        "big": 123456789012345678901234567890,
        "status": "Shipped",
        "status_id": 2,
        "total_inc_tax": "225.0000",
        "currency_code": "EUR",
        "date_created": "Tue, 20 Nov 2012 00:00:00 +0000",
        "customer_message": "  Please Ring Twice  ",
        "is_deleted": "false",
        "price": 12.50,
        "billing_address": {"email": "Jane@Example.com", "first_name": "Jane"},
        "note": null,
        "products": [
            {"sku": "A-1", "quantity": 2, "price_inc_tax": "10.5000"},
            {"sku": "B-2", "quantity": "3", "price_inc_tax": "7.0000"}
        ]
    }"#;

    fn mapping(fields: &str) -> Mapping {
        let text = format!(
            r#"{{"mapping": "bigcommerce-order", "fields": {fields}, "lookups": {{
                "order-status": {{"Awaiting Payment": "Draft", "Shipped": "Activated"}},
                "status-id": {{"1": "Pending", "2": "Shipped"}}
            }}}}"#
        );
        let file: MappingFile = serde_json::from_str(&text).unwrap();
        compile(&file, &test_rules()).unwrap_or_else(|e| panic!("{fields}: {e:?}"))
    }

    fn run(fields: &str, input: &str) -> Result<String, String> {
        let input: Value = serde_json::from_str(input).unwrap();
        mapping(fields)
            .apply(&test_rules(), &input)
            .map(|v| serde_json::to_string(&v).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn maps_fields() {
        let cases: &[(&str, &str)] = &[
            (r#"{"Id": "$.id"}"#, r#"{"Id":820982911946154508}"#),
            (
                r#"{"Id": {"from": "$.id", "type": "string"}}"#,
                r#"{"Id":"820982911946154508"}"#,
            ),
            (
                r#"{"Big": {"from": "$.big", "type": "integer"}}"#,
                r#"{"Big":123456789012345678901234567890}"#,
            ),
            (
                r#"{"Big": {"from": "$.big", "type": "string"}}"#,
                r#"{"Big":"123456789012345678901234567890"}"#,
            ),
            (
                r#"{"T": {"from": "$.total_inc_tax", "type": "decimal"}}"#,
                r#"{"T":225.0000}"#,
            ),
            (
                r#"{"P": {"from": "$.price", "type": "decimal"}}"#,
                r#"{"P":12.50}"#,
            ),
            (
                r#"{"D": {"from": "$.date_created", "type": "date"}}"#,
                r#"{"D":"2012-11-20"}"#,
            ),
            (
                r#"{"D": {"from": "$.date_created", "type": "datetime"}}"#,
                r#"{"D":"2012-11-20T00:00:00+00:00"}"#,
            ),
            (
                r#"{"B": {"from": "$.is_deleted", "type": "boolean"}}"#,
                r#"{"B":false}"#,
            ),
            // Missing and null: omitted, or the default (converted to the type).
            (r#"{"X": "$.nope", "N": "$.note"}"#, "{}"),
            (
                r#"{"C": {"from": "$.nope", "default": "USD"}}"#,
                r#"{"C":"USD"}"#,
            ),
            (
                r#"{"C": {"from": "$.note", "type": "decimal", "default": "0.00"}}"#,
                r#"{"C":0.00}"#,
            ),
            (r#"{"C": {"default": "Order"}}"#, r#"{"C":"Order"}"#),
            // Transforms, in order; strings only.
            (
                r#"{"M": {"from": "$.customer_message", "transform": "trim"}}"#,
                r#"{"M":"Please Ring Twice"}"#,
            ),
            (
                r#"{"M": {"from": "$.customer_message", "transform": ["trim", "upper"]}}"#,
                r#"{"M":"PLEASE RING TWICE"}"#,
            ),
            (
                r#"{"E": {"from": "$.billing_address.email", "transform": "lower"}}"#,
                r#"{"E":"jane@example.com"}"#,
            ),
            (
                r#"{"I": {"from": "$.id", "transform": "lower"}}"#,
                r#"{"I":820982911946154508}"#,
            ),
            // Lookups: by text, numbers as written; a miss takes the default.
            (
                r#"{"S": {"from": "$.status", "lookup": "order-status"}}"#,
                r#"{"S":"Activated"}"#,
            ),
            (
                r#"{"S": {"from": "$.status_id", "lookup": "status-id"}}"#,
                r#"{"S":"Shipped"}"#,
            ),
            (
                r#"{"S": {"from": "$.currency_code", "lookup": "order-status", "default": "Draft"}}"#,
                r#"{"S":"Draft"}"#,
            ),
            (
                r#"{"S": {"from": "$.nope", "lookup": "order-status", "default": "Draft"}}"#,
                r#"{"S":"Draft"}"#,
            ),
            // Templates.
            (
                r#"{"Name": {"template": "BC order {{ $.id }}"}}"#,
                r#"{"Name":"BC order 820982911946154508"}"#,
            ),
            (
                r#"{"Name": {"template": "{{ $.billing_address.first_name }}/{{ $.nope }}", "transform": "upper"}}"#,
                r#"{"Name":"JANE/"}"#,
            ),
            // Non-singular paths: the array of matches, converted match by match.
            (
                r#"{"Skus": "$.products[*].sku"}"#,
                r#"{"Skus":["A-1","B-2"]}"#,
            ),
            (
                r#"{"Q": {"from": "$.products[*].quantity", "type": "integer"}}"#,
                r#"{"Q":[2,3]}"#,
            ),
            (r#"{"None": "$.nope[*]"}"#, r#"{"None":[]}"#),
            // Inline Rhai `expr`.
            (
                r#"{"V": {"from": "$.status", "expr": "value", "lookup": "order-status"}}"#,
                r#"{"V":"Activated"}"#,
            ),
            (r#"{"V": {"expr": "\"fixed\""}}"#, r#"{"V":"fixed"}"#),
            (
                r#"{"V": {"from": "$.nope", "expr": "value", "default": 1}}"#,
                r#"{"V":1}"#,
            ),
            // Dotted targets: nested objects, placed where first declared; empty ones omitted.
            (
                r#"{"price.value": "$.price", "Id": "$.id", "price.currency": "$.currency_code"}"#,
                r#"{"Id":820982911946154508,"price":{"currency":"EUR","value":12.50}}"#,
            ),
            (
                r#"{"a.b.c": "$.status", "a.x": "$.nope"}"#,
                r#"{"a":{"b":{"c":"Shipped"}}}"#,
            ),
            (
                r#"{"a.b": "$.nope", "k": "$.status"}"#,
                r#"{"k":"Shipped"}"#,
            ),
            (r#"{"a\\.b": "$.status"}"#, r#"{"a.b":"Shipped"}"#),
            // Output objects are ordered by key (serde_json maps), whatever the declared order.
            (
                r#"{"Z": "$.status", "A": "$.currency_code"}"#,
                r#"{"A":"EUR","Z":"Shipped"}"#,
            ),
            // Each: `$` is the element.
            (
                r#"{"OrderItems": {"each": "$.products[*]", "fields": {
                    "Sku": "$.sku",
                    "Quantity": {"from": "$.quantity", "type": "integer"},
                    "UnitPrice": {"from": "$.price_inc_tax", "type": "decimal"},
                    "Line.Name": {"template": "{{ $.sku }} x{{ $.quantity }}"}
                }}}"#,
                r#"{"OrderItems":[{"Line":{"Name":"A-1 x2"},"Quantity":2,"Sku":"A-1","UnitPrice":10.5000},{"Line":{"Name":"B-2 x3"},"Quantity":3,"Sku":"B-2","UnitPrice":7.0000}]}"#,
            ),
            (
                r#"{"Items": {"each": "$.products", "fields": {"S": "$.sku"}}}"#,
                r#"{"Items":[{"S":"A-1"},{"S":"B-2"}]}"#,
            ),
            (
                r#"{"Items": {"each": "$.nope", "fields": {"S": "$.sku"}}}"#,
                "{}",
            ),
            (
                r#"{"Items": {"each": "$.nope[*]", "fields": {"S": "$.sku"}}}"#,
                r#"{"Items":[]}"#,
            ),
        ];
        for (fields, want) in cases {
            assert_eq!(run(fields, ORDER).as_deref(), Ok(*want), "{fields}");
        }
    }

    #[test]
    fn reports_failures() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"TotalAmount": {"from": "$.total_inc_tax", "type": "decimal"}}"#,
                r#"{"total_inc_tax": "12,50 EUR"}"#,
                r#"mapping bigcommerce-order: field TotalAmount: $.total_inc_tax = "12,50 EUR" is not a decimal"#,
            ),
            (
                r#"{"T": {"from": "$.t", "type": "decimal"}}"#,
                r#"{"t": 1e400}"#,
                "mapping bigcommerce-order: field T: $.t = 1e+400 is not a decimal (out of range)",
            ),
            (
                r#"{"ExternalId__c": {"from": "$.id", "type": "string", "required": true}}"#,
                r#"{"id": null}"#,
                "mapping bigcommerce-order: field ExternalId__c: $.id is missing and the field is required",
            ),
            (
                r#"{"S": {"from": "$.status", "lookup": "order-status"}}"#,
                r#"{"status": "Lost"}"#,
                r#"mapping bigcommerce-order: field S: $.status = "Lost" is not in lookup order-status and there is no default"#,
            ),
            (
                r#"{"S": {"from": "$.status", "lookup": "order-status"}}"#,
                r#"{"status": {"a": 1}}"#,
                r#"mapping bigcommerce-order: field S: $.status = {"a":1} cannot be a key of lookup order-status: keys are strings, numbers or booleans"#,
            ),
            (
                r#"{"price.value": {"from": "$.p", "type": "integer"}}"#,
                r#"{"p": "12.5"}"#,
                r#"mapping bigcommerce-order: field price.value: $.p = "12.5" is not an integer (has a fraction)"#,
            ),
            (
                r#"{"OrderItems": {"each": "$.products[*]", "fields": {"Quantity": {"from": "$.quantity", "type": "integer"}}}}"#,
                r#"{"products": [{"quantity": 1}, {"quantity": 2}, {"quantity": "two"}]}"#,
                r#"mapping bigcommerce-order: field OrderItems[2].Quantity: $.quantity = "two" is not an integer"#,
            ),
            (
                r#"{"O": {"each": "$.a", "fields": {"I": {"each": "$.b", "fields": {"Q": {"from": "$.q", "required": true}}}}}}"#,
                r#"{"a": [{"b": [{"q": 1}]}, {"b": [{"q": 1}, {}]}]}"#,
                "mapping bigcommerce-order: field O[1].I[1].Q: $.q is missing and the field is required",
            ),
            (
                r#"{"Items": {"each": "$.products", "fields": {"S": "$.sku"}}}"#,
                r#"{"products": "none"}"#,
                r#"mapping bigcommerce-order: field Items: each $.products = "none" is not an array"#,
            ),
            (
                r#"{"Items": {"each": "$.products", "required": true, "fields": {"S": "$.sku"}}}"#,
                "{}",
                "mapping bigcommerce-order: field Items: $.products is missing and the field is required",
            ),
            (
                r#"{"V": {"from": "$.a", "expr": "decimal(\"12,50 EUR\")"}}"#,
                r#"{"a": 1}"#,
                r#"mapping bigcommerce-order: field V: expr failed: decimal(): cannot convert "12,50 EUR" to a decimal"#,
            ),
            (
                r#"{"V": {"from": "$.a", "expr": "value", "required": true}}"#,
                "{}",
                "mapping bigcommerce-order: field V: expr is missing and the field is required",
            ),
            (
                r#"{"Q": {"from": "$.q[*]", "type": "integer"}}"#,
                r#"{"q": [1, "x"]}"#,
                r#"mapping bigcommerce-order: field Q: $.q[*] = "x" is not an integer"#,
            ),
        ];
        for (fields, input, want) in cases {
            assert_eq!(
                run(fields, input).as_deref().map_err(String::as_str),
                Err(*want),
                "{fields}"
            );
        }
    }

    #[test]
    fn huge_values_are_cut_in_messages() {
        let input = format!(r#"{{"t": "{}"}}"#, "9,".repeat(500));
        let err = run(r#"{"T": {"from": "$.t", "type": "decimal"}}"#, &input).unwrap_err();
        assert!(err.len() < 200 && err.contains('…'), "{err}");
    }

    #[test]
    fn reads_lists_paths_including_those_inside_each() {
        let m = mapping(
            r#"{"A": "$.a", "B": {"template": "{{ $.b }}-{{ $.c }}"}, "I": {"each": "$.items[*]", "fields": {"X": "$.x"}}}"#,
        );
        let reads_of = |m: &Mapping| -> Vec<String> {
            m.reads()
                .unwrap()
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        };
        assert_eq!(reads_of(&m), ["$.a", "$.b", "$.c", "$.items[*].x"]);
        assert!(mapping(r#"{"A": {"expr": "record"}}"#).reads().is_none());
        // An element read by an expression is read whole.
        let m = mapping(r#"{"I": {"each": "$.items[*]", "fields": {"X": {"expr": "record.x"}}}}"#);
        assert_eq!(reads_of(&m), ["$.items[*]"]);
    }

    #[test]
    fn building_into_any_earlier_output_gives_what_building_afresh_gives() {
        let m = mapping(
            r#"{"id": {"from": "$.id", "type": "string", "required": true},
                "email": {"from": "$.billing_address.email", "transform": "lower"},
                "who.first": "$.billing_address.first_name",
                "who.tag": {"template": "BC-{{ $.id }}"},
                "who.status": {"from": "$.status", "lookup": "order-status", "default": "Draft"},
                "note": {"from": "$.note", "default": "none"},
                "deep.er.message": "$.customer_message",
                "lines": {"each": "$.products[*]", "fields": {
                    "sku": {"from": "$.sku", "required": true},
                    "qty": {"from": "$.quantity", "type": "integer"},
                    "price.value": {"from": "$.price_inc_tax", "type": "decimal"}}}}"#,
        );
        let rules = test_rules();
        let inputs: Vec<Value> = [
            ORDER,
            r#"{"id": 1, "status": "Shipped", "products": []}"#,
            r#"{"id": 2, "billing_address": {"email": "A@B.C"}, "customer_message": "hi",
                "products": [{"sku": "X"}, {"sku": "Y", "quantity": 4, "price_inc_tax": "1.5"},
                {"sku": "Z", "quantity": "7"}]}"#,
            r#"{"id": 3, "note": "kept", "status": "Awaiting Payment",
                "products": [{"sku": "Q", "price_inc_tax": "2"}]}"#,
            r#"{"id": 4, "products": [{"quantity": 1}]}"#,
            r#"{"products": []}"#,
        ]
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
        let mut earlier: Vec<Value> = vec![
            Value::Null,
            Value::String("x".into()),
            serde_json::json!([1, 2]),
            serde_json::json!({"foreign": 1, "who": {"first": 7, "extra": true}, "lines": "no",
                "deep": {"er": []}, "email": {"not": "a string"}}),
        ];
        earlier.extend(inputs.iter().filter_map(|i| m.apply(&rules, i).ok()));
        let mut compared = 0;
        for input in &inputs {
            let fresh = m.apply(&rules, input);
            for start in &earlier {
                let mut out = start.clone();
                let into = m.apply_into(&rules, input, &mut out);
                match &fresh {
                    Ok(want) => {
                        assert!(into.is_ok(), "{input} into {start}: {into:?}");
                        assert_eq!(&out, want, "{input} into {start}");
                        compared += 1;
                    }
                    Err(e) => assert_eq!(into.unwrap_err().to_string(), e.to_string()),
                }
                // Whatever a failure left, the next build into it is right.
                let mut again = out;
                m.apply_into(&rules, &inputs[0], &mut again).unwrap();
                assert_eq!(again, m.apply(&rules, &inputs[0]).unwrap());
            }
        }
        assert!(compared >= 30, "{compared}");
    }

    /// `{"sku": {"sku": … {"sku": "end"} …}}`, `depth` deep, each level padded with `pad`
    /// bytes of data: `$..sku` selects every level, each holding all those below.
    fn nested_skus(depth: usize, pad: usize) -> Value {
        let mut v = serde_json::json!("end");
        for i in 0..depth {
            v = serde_json::json!({"sku": v, "data": format!("{i}{}", "x".repeat(pad))});
        }
        v
    }

    fn apply_within(fields: &str, input: &Value, limits: Limits) -> Result<Value, String> {
        mapping(fields)
            .with_limits(limits)
            .apply(&test_rules(), input)
            .map_err(|e| e.to_string())
    }

    /// The error of a mapping that must fail, without printing a huge output if it does not.
    fn error_of(fields: &str, input: &Value, limits: Limits) -> String {
        match apply_within(fields, input, limits) {
            Ok(v) => panic!("{fields} mapped, to {} bytes", v.to_string().len()),
            Err(e) => e,
        }
    }

    #[test]
    fn output_is_bounded_counting_every_copy() {
        // 120 levels of 4 KB: `$..sku` would copy about 120 * 60 * 4 KB = 29 MB.
        let body = nested_skus(120, 4000);
        let err = error_of(r#"{"Skus": "$..sku"}"#, &body, Limits::default());
        assert_eq!(
            err,
            "mapping bigcommerce-order: field Skus: $..sku: over the output budget: more than 16777216 bytes of output"
        );
        // The same field on a body of the same shape but smaller maps.
        let small = nested_skus(20, 100);
        let out = apply_within(r#"{"Skus": "$..sku"}"#, &small, Limits::default()).unwrap();
        assert_eq!(out["Skus"].as_array().map(Vec::len), Some(20));
        // Copies made by `each` count too: the element itself, once per element.
        let err = error_of(
            r#"{"All": {"each": "$..sku", "fields": {"Whole": "$"}}}"#,
            &body,
            Limits::default(),
        );
        assert!(
            err.starts_with("mapping bigcommerce-order: field All[")
                && err.ends_with(
                    ".Whole: $: over the output budget: more than 16777216 bytes of output"
                ),
            "{err}"
        );
        // And so does a value copied into several fields: each copy is output.
        let limits = Limits {
            output_bytes: 100_000,
            ..Limits::default()
        };
        let body = serde_json::json!({"blob": "b".repeat(40_000)});
        let three = r#"{"A": "$.blob", "B": "$.blob", "C": "$.blob"}"#;
        let err = error_of(three, &body, limits.clone());
        assert!(
            err.ends_with(
                "field C: $.blob: over the output budget: more than 100000 bytes of output"
            ),
            "{err}"
        );
        let two = r#"{"A": "$.blob", "B": "$.blob"}"#;
        assert!(apply_within(two, &body, limits).is_ok());
    }

    #[test]
    fn queries_are_bounded_in_nodes_visited() {
        // 1.4 KB: `$..*..*..*` selects each node once per pair of its ancestors (4.6 million).
        let body = crate::jsonpath::tests::deep_list();
        let err = error_of(r#"{"X": "$..*..*..*"}"#, &body, Limits::default());
        assert_eq!(
            err,
            "mapping bigcommerce-order: field X: $..*..*..*: over the node budget: queries visited more than 4000000 JSON nodes"
        );
        // Under the same budget a shallower body maps.
        // (The nodes it selects hold the arrays below them: copying them all is over the
        // output budget, so this one is lifted.)
        let out = apply_within(
            r#"{"X": "$..*..*"}"#,
            &body,
            Limits {
                output_bytes: u64::MAX,
                ..Limits::default()
            },
        )
        .unwrap();
        assert!(out["X"].as_array().is_some_and(|a| a.len() > 70_000));
        // Filters count their candidates and the queries inside them.
        let limits = Limits {
            nodes: 1000,
            ..Limits::default()
        };
        let items: Vec<Value> = (0..600).map(|i| serde_json::json!({"n": i})).collect();
        let body = serde_json::json!({ "items": items });
        let err = error_of(r#"{"X": "$.items[?@.n > 1].n"}"#, &body, limits);
        assert!(err.ends_with("more than 1000 JSON nodes"), "{err}");
    }

    #[test]
    fn time_is_bounded() {
        let limits = Limits {
            time: std::time::Duration::ZERO,
            ..Limits::default()
        };
        let body = crate::jsonpath::tests::deep_list();
        let err = error_of(r#"{"X": "$..*..*"}"#, &body, limits);
        assert_eq!(
            err,
            "mapping bigcommerce-order: field X: $..*..*: over the time budget: more than 0 ms"
        );
    }

    #[test]
    fn patterns_from_the_data_are_compiled_once_and_bounded() {
        let items: Vec<Value> = (0..20_000)
            .map(|i| serde_json::json!({"name": format!("item-{i}"), "re": format!("item-{i}")}))
            .collect();
        let body = serde_json::json!({"pattern": "item-[0-9]*7$", "items": items});
        // Compiled once, not 20,000 times: a limit of one compiled pattern is enough.
        let once = Limits {
            regexes: 1,
            ..Limits::default()
        };
        let out = apply_within(
            r#"{"Hits": "$.items[?search(@.name, $.pattern)].name"}"#,
            &body,
            once,
        )
        .unwrap();
        assert_eq!(out["Hits"].as_array().map(Vec::len), Some(2000));
        // A pattern per element: refused after the limit of compiled patterns.
        let err = error_of(
            r#"{"Hits": "$.items[?match(@.name, @.re)].name"}"#,
            &body,
            Limits::default(),
        );
        assert!(
            err.ends_with("over the regex budget: more than 256 patterns from the data compiled"),
            "{err}"
        );
        // A pattern that compiles to a huge program is refused, not compiled.
        let body = serde_json::json!({"pattern": r"\w{50}{50}", "items": [{"name": "a"}]});
        let err = error_of(
            r#"{"Hits": "$.items[?search(@.name, $.pattern)]"}"#,
            &body,
            Limits::default(),
        );
        assert!(err.contains("compiles to more than 1048576 bytes"), "{err}");
    }

    #[test]
    fn a_big_real_order_maps_within_the_defaults() {
        // About 4 MB: 4,000 lines with options, custom fields and addresses.
        let lines: Vec<Value> = (0..4000)
            .map(|i| {
                serde_json::json!({
                    "id": i, "sku": format!("SKU-{i:05}"), "name": format!("Product {i} {}", "n".repeat(400)),
                    "quantity": i % 7 + 1, "price_inc_tax": format!("{}.50", i % 300),
                    "options": [{"display_name": "Size", "value": "L"}, {"display_name": "Colour", "value": "Red"}],
                    "custom": {"gift": i % 2 == 0, "note": "m".repeat(200)},
                    "address": {"street": "1 Long Street", "city": "Springfield", "zip": format!("{i:05}")}
                })
            })
            .collect();
        let order = serde_json::json!({"id": 1, "pattern": "^SKU-0+1", "products": lines});
        assert!(
            order.to_string().len() > 3_500_000,
            "{}",
            order.to_string().len()
        );
        let out = apply_within(
            r#"{"Id": "$.id",
                "Skus": "$..sku",
                "Gifts": "$.products[?@.custom.gift == true].sku",
                "Matched": "$.products[?search(@.sku, $.pattern)].sku",
                "Sizes": "$.products[*].options[?@.display_name == 'Size'].value",
                "Lines": {"each": "$.products[*]", "fields": {
                    "Sku": "$.sku", "Name": "$.name",
                    "Qty": {"from": "$.quantity", "type": "integer"},
                    "Price": {"from": "$.price_inc_tax", "type": "decimal"},
                    "Size": "$.options[?@.display_name == 'Size'].value",
                    "Custom": "$.custom", "Address": "$.address"}},
                "Copy": "$.products"}"#,
            &order,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(out["Skus"].as_array().map(Vec::len), Some(4000));
        assert_eq!(out["Gifts"].as_array().map(Vec::len), Some(2000));
        assert_eq!(out["Lines"].as_array().map(Vec::len), Some(4000));
    }

    #[test]
    fn a_mapping_is_shareable() {
        fn check<T: Send + Sync>() {}
        check::<Mapping>();
    }
}
