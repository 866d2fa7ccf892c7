//! The compiled mapping and its execution: the hot path.
//!
//! A [`Mapping`] is immutable and shared between events. Applying it walks a tree prepared at
//! load (dotted targets already split into nested nodes, paths already compiled, lookups
//! already hashed) and builds the output object directly. The input is only
//! borrowed; a value is cloned once, when it is emitted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::access::Access;
use super::convert::{convert, key_text, map_scalars, transform, FieldType, Transform};
use super::error::{show, FieldProblem, MappingError};
use super::jsonpath::JsonPath;
use super::template::Template;
use crate::rules::{Expr, Rules};

/// A compiled mapping: build with [`compile`](super::compile), run with [`Mapping::apply`].
#[derive(Clone, Debug)]
pub struct Mapping {
    pub(crate) name: String,
    pub(crate) nodes: Vec<Node>,
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

    /// Maps one record. Evaluates fields in declared order; stops at the first
    /// field that fails.
    pub fn apply(&self, rules: &Rules, input: &Value) -> Result<Value, MappingError> {
        build(&self.nodes, rules, input)
            .map(Value::Object)
            .map_err(|f| MappingError {
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

fn build(nodes: &[Node], rules: &Rules, root: &Value) -> Result<Map<String, Value>, Fail> {
    let mut out = Map::with_capacity(nodes.len());
    for node in nodes {
        match &node.kind {
            NodeKind::Field(field) => {
                if let Some(v) = field.eval(rules, root)? {
                    out.insert(node.key.clone(), v);
                }
            }
            NodeKind::Object { children, .. } => {
                let inner = build(children, rules, root)?;
                // An object whose fields were all omitted is omitted too, rather than `{}`.
                if !inner.is_empty() {
                    out.insert(node.key.clone(), Value::Object(inner));
                }
            }
        }
    }
    Ok(out)
}

impl Field {
    fn fail(&self, problem: FieldProblem) -> Fail {
        Fail {
            field: self.target.clone(),
            problem: Box::new(problem),
        }
    }

    /// The field's value, or `None` when it is omitted. Stages, in order: read (`from` or
    /// `template`), transforms, lookup, `expr`, then default/required for a missing value,
    /// then `type`.
    fn eval<'a>(&'a self, rules: &Rules, root: &'a Value) -> Result<Option<Value>, Fail> {
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
            Source::Path(a) => (a.path().as_str(), a.get(root)),
            Source::Template(t) => ("template", Some(Cow::Owned(Value::String(t.render(root))))),
            Source::Each { path, fields } => return self.each(path, fields, rules, root),
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
                Some(d) => Ok(Some(d.clone())),
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
        Ok(Some(v.into_owned()))
    }

    /// [`Field::eval`] of a field that only reads a path (with a type, or not): `found` is
    /// what it read, null taken as missing.
    fn read(&self, a: &Access, found: Option<&Value>) -> Result<Option<Value>, Fail> {
        let Some(v) = found else {
            return match &self.default {
                Some(d) => Ok(Some(d.clone())),
                None if self.required => Err(self.fail(FieldProblem::Missing {
                    from: a.path().as_str().into(),
                })),
                None => Ok(None),
            };
        };
        let Some(ty) = self.ty else {
            return Ok(Some(v.clone()));
        };
        map_scalars(Cow::Borrowed(v), &mut |s| convert(ty, s))
            .map(|v| Some(v.into_owned()))
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

    /// `each`: one sub-mapping per element, with the element as `$`. A non-singular path
    /// iterates its matches; a singular one must point at an array (or be missing).
    fn each(
        &self,
        path: &Access,
        fields: &[Node],
        rules: &Rules,
        root: &Value,
    ) -> Result<Option<Value>, Fail> {
        let from = || path.path().as_str().to_string();
        if path.is_many() {
            return self
                .each_of(path.get_all(root).into_iter(), fields, rules)
                .map(Some);
        }
        match path.get_one(root) {
            None | Some(Value::Null) if self.required => {
                Err(self.fail(FieldProblem::Missing { from: from() }))
            }
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => self.each_of(items.iter(), fields, rules).map(Some),
            Some(other) => Err(self.fail(FieldProblem::NotAnArray {
                from: from(),
                found: show(other),
            })),
        }
    }

    fn each_of<'v>(
        &self,
        items: impl ExactSizeIterator<Item = &'v Value>,
        fields: &[Node],
        rules: &Rules,
    ) -> Result<Value, Fail> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.enumerate() {
            let object = build(fields, rules, item).map_err(|f| Fail {
                field: format!("{}[{i}].{}", self.target, f.field),
                problem: f.problem,
            })?;
            out.push(Value::Object(object));
        }
        Ok(Value::Array(out))
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
    fn a_mapping_is_shareable() {
        fn check<T: Send + Sync>() {}
        check::<Mapping>();
    }
}
