//! From a parsed [`MappingFile`] to an immutable [`Mapping`], reporting every problem at once.
//!
//! Owns the meaning checks of the mapping language: paths parse, names (types, transforms,
//! lookups) exist, options do not contradict each other, defaults convert, dotted targets do
//! not collide. Each problem becomes a [`MappingIssue`] that points at the YAML node, so the
//! config loader can turn it into `file:line:col`. Compilation keeps going after a problem so
//! that one `check` shows them all.

use std::collections::HashMap;
use std::sync::Arc;

use super::access::Access;
use super::convert::{convert, map_scalars, FieldType, Transform};
use super::error::{show, MappingIssue};
use super::plan::{CompiledExpr, Field, Lookup, Mapping, Node, NodeKind, Source};
use super::spec::{FieldDef, FieldSpec, Fields, MappingFile};
use super::template::Template;
use crate::config::span::PathSeg;
use crate::jsonpath::JsonPath;
use crate::jsonpath::Limits;
use crate::rules::Rules;

/// Compiles a mapping file. `rules` compiles inline `expr`s.
pub fn compile(file: &MappingFile, rules: &Rules) -> Result<Mapping, Vec<MappingIssue>> {
    let mut cx = Cx {
        rules,
        issues: Vec::new(),
        lookups: HashMap::new(),
    };
    if file.mapping.trim().is_empty() {
        cx.issue(vec![key("mapping")], "the mapping name is empty");
    }
    for (name, table) in &file.lookups.0 {
        let path = vec![key("lookups"), key(name)];
        if cx.lookups.contains_key(name) {
            cx.issue(path, format!("duplicate lookup `{name}`"));
            continue;
        }
        let mut map = HashMap::with_capacity(table.0.len());
        for (k, v) in &table.0 {
            if map.insert(k.clone(), v.clone()).is_some() {
                cx.issue(
                    child(&path, k),
                    format!("duplicate key `{k}` in lookup `{name}`"),
                );
            }
        }
        cx.lookups.insert(
            name.clone(),
            Arc::new(Lookup {
                name: name.clone(),
                table: map,
            }),
        );
    }
    let nodes = cx.fields(&file.fields, vec![key("fields")]);
    if cx.issues.is_empty() {
        Ok(Mapping {
            name: file.mapping.clone(),
            nodes,
            limits: Limits::default(),
        })
    } else {
        Err(cx.issues)
    }
}

struct Cx<'r> {
    rules: &'r Rules,
    issues: Vec<MappingIssue>,
    lookups: HashMap<String, Arc<Lookup>>,
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn child(path: &[PathSeg], k: &str) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(key(k));
    p
}

/// The options that make no sense next to `each` (its elements are mapped by `fields`).
const NOT_WITH_EACH: [&str; 7] = [
    "from",
    "template",
    "expr",
    "lookup",
    "type",
    "transform",
    "default",
];

impl Cx<'_> {
    fn issue(&mut self, path: Vec<PathSeg>, message: impl Into<String>) {
        self.issues.push(MappingIssue::new(path, message));
    }

    /// A map of targets (the file's `fields`, or those under an `each`) into an output tree.
    fn fields(&mut self, fields: &Fields, path: Vec<PathSeg>) -> Vec<Node> {
        if fields.0.is_empty() {
            self.issue(
                path.clone(),
                "no fields: a mapping needs at least one target field",
            );
        }
        let mut nodes = Vec::with_capacity(fields.0.len());
        for (target, spec) in &fields.0 {
            let at = child(&path, target);
            let field = self.field(target, spec, &at);
            match split_target(target) {
                Ok(keys) => self.place(&mut nodes, &keys, field, &at),
                Err(message) => self.issue(at, message),
            }
        }
        nodes
    }

    /// Puts a field at its dotted place in the tree, reporting a collision between a value
    /// and an object at the same key (`a` and `a.b`), or a duplicate target.
    fn place(&mut self, nodes: &mut Vec<Node>, keys: &[String], field: Field, at: &[PathSeg]) {
        let Some((first, rest)) = keys.split_first() else {
            return;
        };
        let existing = nodes.iter_mut().find(|n| &n.key == first);
        match (existing, rest.is_empty()) {
            (None, true) => nodes.push(Node {
                key: first.clone(),
                kind: NodeKind::Field(Box::new(field)),
            }),
            (None, false) => {
                let mut children = Vec::new();
                let origin = field.target.clone();
                self.place(&mut children, rest, field, at);
                nodes.push(Node {
                    key: first.clone(),
                    kind: NodeKind::Object { origin, children },
                });
            }
            (
                Some(Node {
                    kind: NodeKind::Object { children, .. },
                    ..
                }),
                false,
            ) => {
                self.place(children, rest, field, at);
            }
            (
                Some(Node {
                    kind: NodeKind::Field(other),
                    ..
                }),
                _,
            ) if other.target == field.target => {
                self.issue(at.to_vec(), format!("duplicate target `{}`", field.target));
            }
            (
                Some(Node {
                    kind: NodeKind::Field(other),
                    ..
                }),
                _,
            ) => {
                let message = format!(
                    "target `{}` collides with `{}`: `{first}` cannot be both a value and an object",
                    field.target, other.target
                );
                self.issue(at.to_vec(), message);
            }
            (
                Some(Node {
                    kind: NodeKind::Object { origin, .. },
                    ..
                }),
                true,
            ) => {
                let message = format!(
                    "target `{}` collides with `{origin}`: `{first}` cannot be both a value and an object",
                    field.target
                );
                self.issue(at.to_vec(), message);
            }
        }
    }

    fn path(&mut self, src: &str, at: &[PathSeg], what: &str) -> Option<Access> {
        match JsonPath::parse(src) {
            Ok(p) => Some(Access::new(p)),
            Err(e) => {
                let issue =
                    MappingIssue::new(at.to_vec(), format!("{what}: {}", e.message)).at(e.offset);
                self.issues.push(issue);
                None
            }
        }
    }

    /// One field. Always returns a `Field` (with empty parts where there were problems) so
    /// that target collisions are still checked; the plan is discarded if any issue was found.
    fn field(&mut self, target: &str, spec: &FieldSpec, at: &[PathSeg]) -> Field {
        let mut field = Field {
            target: target.to_string(),
            source: Source::Nothing,
            transforms: Vec::new(),
            lookup: None,
            expr: None,
            ty: None,
            default: None,
            required: false,
        };
        let def = match spec {
            FieldSpec::Path(src) => {
                if let Some(a) = self.path(src, at, "bad JSONPath") {
                    field.source = Source::Path(a);
                }
                return field;
            }
            FieldSpec::Full(def) => def,
        };
        field.required = def.required.unwrap_or(false);
        if let Some(each) = &def.each {
            self.each(&mut field, def, each, at);
            return field;
        }
        if def.fields.is_some() {
            self.issue(
                child(at, "fields"),
                "`fields` maps the elements of an array: it needs `each`",
            );
        }
        match (&def.from, &def.template) {
            (Some(_), Some(_)) => self.issue(
                child(at, "template"),
                "`template` and `from` cannot be used together: a template reads its own paths",
            ),
            (Some(src), None) => {
                if let Some(a) = self.path(src, &child(at, "from"), "bad JSONPath") {
                    field.source = Source::Path(a);
                }
            }
            (None, Some(src)) => match Template::parse(src) {
                Ok(t) => field.source = Source::Template(t),
                Err(problems) => {
                    for p in problems {
                        let issue =
                            MappingIssue::new(child(at, "template"), p.message).at(p.offset);
                        self.issues.push(issue);
                    }
                }
            },
            (None, None) => {
                if def.expr.is_none() && def.default.as_ref().is_none_or(|d| d.is_null()) {
                    self.issue(
                        at.to_vec(),
                        "no source: give `from`, `template`, `expr`, `each` or `default`",
                    );
                }
            }
        }
        if field.required && def.default.as_ref().is_some_and(|d| !d.is_null()) {
            self.issue(
                child(at, "required"),
                "`required: true` never fails when there is a `default`; remove one of them",
            );
        }
        if let Some(name) = &def.ty {
            field.ty = FieldType::parse(name);
            if field.ty.is_none() {
                let message = unknown("type", name, &FieldType::NAMES);
                self.issue(child(at, "type"), message);
            }
        }
        if let Some(t) = &def.transform {
            for (index, name) in t.names() {
                match Transform::parse(name) {
                    Some(t) => field.transforms.push(t),
                    None => {
                        let mut path = child(at, "transform");
                        path.extend(index.map(PathSeg::Index));
                        self.issue(path, unknown("transform", name, &Transform::NAMES));
                    }
                }
            }
        }
        if let Some(name) = &def.lookup {
            field.lookup = self.lookups.get(name).cloned();
            if field.lookup.is_none() {
                let mut known: Vec<&str> = self.lookups.keys().map(String::as_str).collect();
                known.sort_unstable();
                let message = if known.is_empty() {
                    format!("unknown lookup `{name}`: this file defines no `lookups`")
                } else {
                    unknown("lookup", name, &known)
                };
                self.issue(child(at, "lookup"), message);
            }
        }
        if let Some(src) = &def.expr {
            match self.rules.compile_field_expr(src) {
                Ok(expr) => {
                    field.expr = Some(CompiledExpr {
                        src: src.clone(),
                        expr: Arc::new(expr),
                    })
                }
                Err(e) => {
                    let mut issue = MappingIssue::new(child(at, "expr"), e.message);
                    issue.offset = line_col_offset(src, e.line, e.col);
                    self.issues.push(issue);
                }
            }
        }
        field.default = self.default(def, field.ty, at);
        field
    }

    /// The default, converted to the field's type now so that a bad default is a load error
    /// and the hot path only clones it. `default: null` is no default.
    fn default(
        &mut self,
        def: &FieldDef,
        ty: Option<FieldType>,
        at: &[PathSeg],
    ) -> Option<serde_json::Value> {
        let d = def.default.as_ref().filter(|d| !d.is_null())?;
        let Some(ty) = ty else {
            return Some(d.clone());
        };
        match map_scalars(std::borrow::Cow::Borrowed(d), &mut |v| convert(ty, v)) {
            Ok(v) => Some(v.into_owned()),
            Err(e) => {
                let message = format!("default {} is not {ty}", show(&e.found));
                self.issue(child(at, "default"), message);
                None
            }
        }
    }

    fn each(&mut self, field: &mut Field, def: &FieldDef, each: &str, at: &[PathSeg]) {
        let given = [
            def.from.is_some(),
            def.template.is_some(),
            def.expr.is_some(),
            def.lookup.is_some(),
            def.ty.is_some(),
            def.transform.is_some(),
            def.default.is_some(),
        ];
        for (name, _) in NOT_WITH_EACH.iter().zip(given).filter(|(_, g)| *g) {
            self.issue(
                child(at, name),
                format!("`{name}` cannot be used with `each`: map the elements under `fields`"),
            );
        }
        let path = self.path(
            each,
            &child(at, "each"),
            "`each` needs a JSONPath to an array",
        );
        let fields = match &def.fields {
            Some(fields) => self.fields(fields, child(at, "fields")),
            None => {
                self.issue(
                    at.to_vec(),
                    "`each` needs `fields`: the mapping applied to every element",
                );
                Vec::new()
            }
        };
        if let Some(path) = path {
            field.source = Source::Each { path, fields };
        }
    }
}

/// "unknown type `strng`, expected one of …", with a suggestion when one name is close.
fn unknown(what: &str, name: &str, known: &[&str]) -> String {
    let mut message = format!(
        "unknown {what} `{name}`, expected one of {}",
        known.join(", ")
    );
    let close = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, k)) = close {
        message.push_str(&format!(" (did you mean `{k}`?)"));
    }
    message
}

/// Splits a target at its dots: `price.value` -> [price, value]. `\.` is a literal dot and
/// `\\` a literal backslash, so `a\.b` is the single key `a.b`.
fn split_target(target: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut cur = String::new();
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('.') | Some('\\')) => {
                cur.extend(chars.next());
            }
            '.' => keys.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    keys.push(cur);
    if keys.iter().any(String::is_empty) {
        return Err(format!(
            "target `{target}` has an empty part: dots separate nested keys (write `\\.` for a literal dot)"
        ));
    }
    Ok(keys)
}

/// A byte offset from a 1-based line and character column (Rhai's positions).
fn line_col_offset(src: &str, line: Option<usize>, col: Option<usize>) -> Option<usize> {
    let line = line?;
    let mut start = 0;
    for (n, text) in src.split('\n').enumerate() {
        if n + 1 == line {
            let col = col.unwrap_or(1).saturating_sub(1);
            let within = text.char_indices().nth(col).map_or(text.len(), |(b, _)| b);
            return Some(start + within);
        }
        start += text.len() + 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::span::display_path;

    fn issues(text: &str) -> Vec<(String, String, Option<usize>)> {
        let file: MappingFile = serde_json::from_str(text).unwrap();
        match compile(&file, &crate::mapping::test_rules()) {
            Ok(_) => Vec::new(),
            Err(issues) => issues
                .into_iter()
                .map(|i| (display_path(&i.path), i.message, i.offset))
                .collect(),
        }
    }

    #[test]
    fn collects_every_issue_in_one_pass() {
        let got = issues(
            r#"{"mapping": "bad", "fields": {
                "Short": "$.x[",
                "TotalAmount": {"from": "$.total[?", "type": "decimel"},
                "Status": {"from": "$.status", "lookup": "order-stauts", "transform": ["trim", "title"]},
                "Name": {"template": "BC {{ $.id }} {{ $.x[ }}"},
                "Both": {"from": "$.a", "template": "x"},
                "Calc": {"expr": "value + (1"},
                "Items": {"each": "products", "fields": {"Q": {"from": "$.q", "type": "int"}}},
                "Loose": {"fields": {"A": "$.a"}},
                "Nothing": {"required": true},
                "Req": {"from": "$.a", "required": true, "default": 1},
                "Qty": {"from": "$.q", "type": "integer", "default": "many"},
                "a": "$.a",
                "a.b": "$.b",
                "c..d": "$.c",
                "EachFrom": {"each": "$.p[*]", "from": "$.x", "fields": {"A": "$.a"}},
                "NoFields": {"each": "$.p[*]"}
            }, "lookups": {"order-status": {"1": "Draft"}}}"#,
        );
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "fields.Short",
                "fields.TotalAmount.from",
                "fields.TotalAmount.type",
                "fields.Status.transform[1]",
                "fields.Status.lookup",
                "fields.Name.template",
                "fields.Both.template",
                "fields.Calc.expr",
                "fields.Items.each",
                "fields.Items.fields.Q.type",
                "fields.Loose.fields",
                "fields.Loose",
                "fields.Nothing",
                "fields.Req.required",
                "fields.Qty.default",
                "fields.a.b",
                "fields.c..d",
                "fields.EachFrom.from",
                "fields.NoFields",
            ],
            "{got:#?}"
        );
        let message = |p: &str| {
            got.iter()
                .find(|(path, _, _)| path == p)
                .map(|(_, m, o)| (m.as_str(), *o))
                .unwrap()
        };
        assert!(message("fields.Short").1.is_some());
        assert!(message("fields.TotalAmount.type")
            .0
            .contains("(did you mean `decimal`?)"));
        assert!(message("fields.Status.lookup")
            .0
            .contains("did you mean `order-status`"));
        assert!(message("fields.Status.transform[1]")
            .0
            .starts_with("unknown transform `title`"));
        let (m, offset) = message("fields.Name.template");
        assert!(m.starts_with("bad JSONPath in placeholder"), "{m}");
        assert!(offset.unwrap() >= "BC {{ $.id }} {{ ".len());
        // Rhai reports an unclosed parenthesis where the input ends.
        assert_eq!(message("fields.Calc.expr").1, Some("value + (1".len()));
        assert!(message("fields.a.b").0.contains("collides with `a`"));
        assert_eq!(
            message("fields.Qty.default").0,
            r#"default "many" is not an integer"#
        );
    }

    #[test]
    fn collisions_and_escaped_dots() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"a.b": "$.x", "a": "$.y"}"#, &["fields.a"]),
            (r#"{"a.b": "$.x", "a.b.c": "$.y"}"#, &["fields.a.b.c"]),
            (r#"{"a.b": "$.x", "a\\.b": "$.y", "a.c": "$.z"}"#, &[]),
            (r#"{"x": "$.x", "y": "$.x"}"#, &[]),
            (
                r#"{".x": "$.x", "y.": "$.x", "": "$"}"#,
                &["fields..x", "fields.y.", "fields."],
            ),
        ];
        for (fields, want) in cases {
            let got = issues(&format!(r#"{{"mapping": "m", "fields": {fields}}}"#));
            let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
            assert_eq!(&paths, want, "{fields}: {got:?}");
        }
        assert_eq!(split_target(r"a\.b.c\\").unwrap(), ["a.b", r"c\"]);
        assert_eq!(split_target(r"a\b").unwrap(), [r"a\b"]);
    }

    #[test]
    fn file_level_issues() {
        let got = issues(r#"{"mapping": " ", "fields": {}, "lookups": {"l": {}}}"#);
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, ["mapping", "fields"]);
        let got = issues(r#"{"mapping": "m", "fields": {"A": {"from": "$.a", "lookup": "l"}}}"#);
        assert!(got[0].1.contains("defines no `lookups`"), "{got:?}");
    }

    #[test]
    fn line_and_column_become_offsets() {
        let src = "let x = 1;\nvalue + (é";
        assert_eq!(
            line_col_offset(src, Some(2), Some(9)),
            Some(src.find('(').unwrap())
        );
        assert_eq!(line_col_offset(src, Some(1), None), Some(0));
        assert_eq!(line_col_offset(src, Some(3), Some(1)), None);
        assert_eq!(line_col_offset(src, None, Some(1)), None);
    }
}
