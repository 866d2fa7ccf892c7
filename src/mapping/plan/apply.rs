//! Applying a compiled mapping: building the output object from the node tree, reusing what
//! an earlier output holds, and evaluating one field (its source, `each`, lookup, `expr`,
//! transforms, type and default) within the [`Budget`]. It must not compile or change the plan
//! (that is `compile`), nor attach the mapping's name to a failure before the top.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{Field, Lookup, Node, NodeKind, Source};
use crate::jsonpath::{Budget, Exceeded};
use crate::mapping::access::Access;
use crate::mapping::convert::{convert, key_text, map_scalars, transform};
use crate::mapping::error::{show, FieldProblem};
use crate::rules::Rules;

/// A field failure before the mapping name is attached (which costs an allocation, so it
/// happens once, at the top).
pub(super) struct Fail {
    pub(super) field: String,
    pub(super) problem: Box<FieldProblem>,
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
pub(super) fn build_into(
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
