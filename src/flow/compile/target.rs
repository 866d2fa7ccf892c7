//! The fields each `send` writes, checked against the target's stored schema (a Salesforce
//! describe under `schemas/<connector>/`, an `http` operation's `body_schema`).
//!
//! Works out, step by step through a pipeline, which fields of the record are surely written
//! and where: a mapping's output fields, the fields a script's top-level statements set
//! (`rules::Written`), a `set`'s targets. A `send`'s payload path picks those below it, and
//! each is judged by `connectors::target`; a problem is reported at the place that writes the
//! field (the mapping's key, the script's name, the `set` key), once however many sends reach
//! it. Only certain writes count: what an arm of a `switch` writes is not carried past the
//! switch, a step that may replace a part of the record in ways not known here (a `fetch`, an
//! `each` with `into`) forgets what was known of it, and a send inside an `each` is not
//! checked. A missing describe file means no check. Reads files, never the network.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{key, Compiled};
use crate::config::diag::{Code, Diagnostic, Diagnostics};
use crate::config::span::{PathSeg, Pos};
use crate::config::{SourceFile, YamlFile};
use crate::connectors::target::{
    ProblemKind, SchemaFileError, TargetSchema, Typed, ValueKind, Write,
};
use crate::connectors::{ConnectorConfig, SendShape};
use crate::mapping::spec::{FieldSpec, MappingFile};
use crate::rules::{Script, WrittenValue};

/// One field written: the record's names down to it, what is known of the value, and where.
#[derive(Debug, Clone)]
pub(super) struct Entry<'a> {
    path: Vec<String>,
    kind: ValueKind,
    file: &'a SourceFile,
    pos: Pos,
}

/// The fields a mapping's output has, by mapping name.
pub(super) type MappingWrites<'a> = HashMap<String, Vec<Entry<'a>>>;

/// The output fields of a mapping, located at their keys in the file. Fields of an `each`'s
/// elements are not followed: they are a list's insides.
pub(super) fn mapping_writes<'a>(file: &'a YamlFile, spec: &MappingFile) -> Vec<Entry<'a>> {
    spec.fields
        .0
        .iter()
        .map(|(name, field)| Entry {
            path: name.split('.').map(str::to_string).collect(),
            kind: field_kind(field),
            file: &file.file,
            pos: file.doc.spans.key_pos(&[key("fields"), key(name)]),
        })
        .collect()
}

fn field_kind(field: &FieldSpec) -> ValueKind {
    let FieldSpec::Full(d) = field else {
        return ValueKind::Unknown;
    };
    if d.each.is_some() || d.expr.is_some() || d.lookup.is_some() {
        return ValueKind::Unknown;
    }
    if let Some(t) = d.ty.as_deref().and_then(Typed::parse) {
        return ValueKind::Typed(t);
    }
    match (&d.from, &d.template, &d.default) {
        (None, Some(t), _) if t.contains("{{") => ValueKind::Template,
        (None, Some(t), _) => ValueKind::Literal(Value::String(t.clone())),
        (None, None, Some(v)) => ValueKind::Literal(v.clone()),
        _ => ValueKind::Unknown,
    }
}

/// What the pass over one pipeline needs of the project.
pub(super) struct TargetCx<'a, 'd> {
    pub root: &'a Path,
    pub file: &'a YamlFile,
    pub connectors: &'a BTreeMap<String, Option<ConnectorConfig>>,
    pub mappings: &'a MappingWrites<'a>,
    pub scripts: &'a Compiled<Script>,
    pub script_files: &'a HashMap<String, &'a SourceFile>,
    pub schemas: &'d mut HashMap<PathBuf, Option<TargetSchema>>,
    pub reported: &'d mut HashSet<(PathBuf, usize, usize, String)>,
    pub diags: &'d mut Diagnostics,
}

/// Checks every `send` of the pipeline's steps (`raw`, as written) that has a target schema.
pub(super) fn check_sends(cx: &mut TargetCx<'_, '_>, steps: &[Value]) {
    let mut state = Vec::new();
    walk(cx, steps, &[key("steps")], &mut state);
}

fn walk<'a>(
    cx: &mut TargetCx<'a, '_>,
    steps: &[Value],
    base: &[PathSeg],
    state: &mut Vec<Entry<'a>>,
) {
    for (i, step) in steps.iter().enumerate() {
        let path = [base, &[PathSeg::Index(i)]].concat();
        let Some(map) = step.as_object() else {
            continue;
        };
        for (kind, body) in map.iter().filter(|(k, _)| k.as_str() != "undo") {
            let at = [&path[..], &[key(kind)]].concat();
            match kind.as_str() {
                "map" => map_step(cx, body, state),
                "script" => script_step(cx, body, state),
                "set" => set_step(cx, body, &at, state),
                "fetch" => replace(state, body.get("into").and_then(Value::as_str)),
                "each" => {
                    if let Some(into) = body.get("into").and_then(Value::as_str) {
                        replace(state, Some(into));
                    }
                }
                "switch" => {
                    // Sends in an arm see what the arm wrote; after the switch only what
                    // every arm left in place is certain, which is at most what was before.
                    let mut kept: Option<Vec<Entry<'a>>> = None;
                    for (j, arm) in body.as_array().into_iter().flatten().enumerate() {
                        let arm_at = [&at[..], &[PathSeg::Index(j)]].concat();
                        let (name, inner) = match (arm.get("steps"), arm.get("otherwise")) {
                            (Some(s), _) => ("steps", s),
                            (None, Some(s)) => ("otherwise", s),
                            _ => continue,
                        };
                        let mut arm_state = state.clone();
                        if let Some(inner) = inner.as_array() {
                            walk(
                                cx,
                                inner,
                                &[&arm_at[..], &[key(name)]].concat(),
                                &mut arm_state,
                            );
                        }
                        let survived = |e: &Entry<'a>| {
                            arm_state.iter().any(|a| {
                                a.pos == e.pos && a.file.path == e.file.path && a.path == e.path
                            })
                        };
                        kept = Some(match kept {
                            None => state.iter().filter(|e| survived(e)).cloned().collect(),
                            Some(k) => k.into_iter().filter(|e| survived(e)).collect(),
                        });
                    }
                    if let Some(kept) = kept {
                        *state = kept;
                    }
                }
                "send" => send_step(cx, body, &at, state),
                _ => {}
            }
        }
    }
}

/// A write of unknown content at `into` (the whole record when `None`).
fn replace(state: &mut Vec<Entry<'_>>, into: Option<&str>) {
    match into {
        None => state.clear(),
        Some(into) => {
            let into: Vec<String> = into.split('.').map(str::to_string).collect();
            state.retain(|e| !e.path.starts_with(&into));
        }
    }
}

fn map_step<'a>(cx: &TargetCx<'a, '_>, body: &Value, state: &mut Vec<Entry<'a>>) {
    let (name, into) = match body {
        Value::String(name) => (name.as_str(), None),
        other => match other.get("mapping").and_then(Value::as_str) {
            Some(name) => (name, other.get("into").and_then(Value::as_str)),
            None => return,
        },
    };
    replace(state, into);
    let prefix: Vec<String> = into
        .map(|i| i.split('.').map(str::to_string).collect())
        .unwrap_or_default();
    for entry in cx.mappings.get(name).into_iter().flatten() {
        let mut e = entry.clone();
        e.path = [&prefix[..], &e.path[..]].concat();
        add(state, e);
    }
}

fn script_step<'a>(cx: &TargetCx<'a, '_>, body: &Value, state: &mut Vec<Entry<'a>>) {
    let Some(name) = body.as_str() else {
        return;
    };
    let (Some(Some(script)), Some(file)) = (cx.scripts.get(name), cx.script_files.get(name)) else {
        // A script that does not compile is reported as such; what it writes is unknown.
        state.clear();
        return;
    };
    // What the script may change that is not among its certain writes is unknown: the
    // fields it reads (and so may write) are forgotten, then its certain writes added.
    match script.touches() {
        Some(paths) => {
            for p in paths {
                state.retain(|e| !e.path.starts_with(&p) && !p.starts_with(&e.path));
            }
        }
        None => state.clear(),
    }
    for w in script.writes() {
        add(
            state,
            Entry {
                path: w.path.clone(),
                kind: match &w.value {
                    WrittenValue::Constant(v) => ValueKind::Literal(v.clone()),
                    WrittenValue::Text => ValueKind::Template,
                    WrittenValue::Unknown => ValueKind::Unknown,
                },
                file,
                pos: Pos {
                    line: w.line,
                    col: w.col,
                },
            },
        );
    }
}

fn set_step<'a>(cx: &TargetCx<'a, '_>, body: &Value, at: &[PathSeg], state: &mut Vec<Entry<'a>>) {
    for (target, value) in body.as_object().into_iter().flatten() {
        let kind = match value {
            Value::Object(_) => ValueKind::Unknown,
            v => ValueKind::Literal(v.clone()),
        };
        add(
            state,
            Entry {
                path: target.split('.').map(str::to_string).collect(),
                kind,
                file: &cx.file.file,
                pos: cx.file.doc.spans.key_pos(&[at, &[key(target)]].concat()),
            },
        );
    }
}

/// A write replaces what was at or below its field.
fn add<'a>(state: &mut Vec<Entry<'a>>, entry: Entry<'a>) {
    state.retain(|e| !e.path.starts_with(&entry.path));
    state.push(entry);
}

fn send_step(cx: &mut TargetCx<'_, '_>, body: &Value, at: &[PathSeg], state: &[Entry<'_>]) {
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    let (Some(to), Some(op)) = (text("to"), text("op")) else {
        return;
    };
    let Some(Some(connector)) = cx.connectors.get(to) else {
        return;
    };
    let shape = SendShape {
        op,
        object: text("object"),
        key: text("key"),
    };
    let Some(file) = connector.as_kind().schema_file(to, shape) else {
        return;
    };
    // `$` or a plain `$.a.b`; a payload picked by a filter or index is not followed.
    let payload = text("payload").unwrap_or("$");
    let Some(prefix) = plain_path(payload) else {
        return;
    };
    load(cx, &file, at);
    let Some(Some(schema)) = cx.schemas.get(&file.path) else {
        return;
    };
    let write = match op {
        "update" => Write::Update,
        "upsert" | "composite" => Write::Upsert,
        _ => Write::Create,
    };
    let send_pos = cx.file.doc.spans.key_pos(at);
    let sent_by = format!(
        "sent by {}:{send_pos} ({to} {op}{})",
        cx.file.file.path.display(),
        shape.object.map(|o| format!(" {o}")).unwrap_or_default()
    );
    for entry in state {
        if entry.path.len() <= prefix.len() || !entry.path.starts_with(&prefix) {
            continue;
        }
        let field = &entry.path[prefix.len()..];
        let Some(problem) = schema.check(write, field, &entry.kind) else {
            continue;
        };
        let code = match problem.kind {
            ProblemKind::Unknown => Code::UnknownField,
            ProblemKind::NotWritable => Code::ReadOnlyField,
            ProblemKind::Type => Code::FieldType,
        };
        let message = format!("`{}`: {}", entry.path.join("."), problem.message);
        if !cx.reported.insert((
            entry.file.path.clone(),
            entry.pos.line,
            entry.pos.col,
            message.clone(),
        )) {
            continue;
        }
        let help = match problem.help {
            Some(h) => format!("{h} - {sent_by}"),
            None => sent_by.clone(),
        };
        cx.diags.push(
            Diagnostic::error(&entry.file.path, entry.pos, message)
                .with_code(code)
                .with_help(help)
                .with_source(&entry.file.text),
        );
    }
}

/// The names of a payload path made of names only.
fn plain_path(payload: &str) -> Option<Vec<String>> {
    let rest = payload.strip_prefix('$')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('.')?;
    let names: Vec<String> = rest.split('.').map(str::to_string).collect();
    names
        .iter()
        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then_some(names)
}

/// The schema, read once per project load. An optional file's problem is reported at the
/// `send` once; a required one's (`body_schema`) already was, with the connector.
fn load(cx: &mut TargetCx<'_, '_>, file: &crate::connectors::target::SchemaFile, at: &[PathSeg]) {
    if !cx.schemas.contains_key(&file.path) {
        let loaded = match file.load(cx.root) {
            Ok(schema) => schema,
            Err(e) => {
                if !file.required {
                    let code = match e {
                        SchemaFileError::Unreadable { .. } => Code::Unreadable,
                        SchemaFileError::TooLarge { .. } => Code::TooLarge,
                        SchemaFileError::Invalid { .. } => Code::InvalidValue,
                    };
                    let pos = cx
                        .file
                        .doc
                        .spans
                        .value_pos(&[at, &[key("object")]].concat());
                    cx.diags.push(
                        cx.file
                            .error(pos, e.to_string())
                            .with_code(code)
                            .with_help("pull it again with `crossdock schema pull`, or delete it"),
                    );
                }
                None
            }
        };
        cx.schemas.insert(file.path.clone(), loaded);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::flow::{load, CompileOptions};

    const PROJECT: &str =
        "connectors:\n  api:\n    kind: http\n    base_url: http://127.0.0.1:9\n    \
        operations:\n      post: { method: POST, path: /p, body_schema: schemas/api.json }\n      \
        get: { method: GET, path: /g }\n";
    const SCHEMA: &str = r#"{"type": "object", "additionalProperties": false,
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}"#;

    /// The errors of a project with the pipeline `steps` and these mappings, as
    /// `file:line:col: message`.
    fn errors(steps: &str, mappings: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("crossdock.yaml", PROJECT);
        write("schemas/api.json", SCHEMA);
        write(
            "pipelines/p.yaml",
            &format!(
                "pipeline: p\nsource: {{ webhook: {{ path: /h, verify: {{ scheme: shopify, secret: demo }} }} }}\nsteps:\n{steps}"
            ),
        );
        for (name, fields) in mappings {
            write(
                &format!("mappings/{name}.yaml"),
                &format!("mapping: {name}\nfields:\n{fields}"),
            );
        }
        let no_env = |_: &str| None;
        let diags = match load(dir.path(), &no_env, CompileOptions::default()) {
            Ok((_, d)) | Err(d) => d,
        };
        diags
            .errors()
            .map(|d| format!("{}:{}: {}", d.file.display(), d.pos, d.message))
            .collect()
    }

    #[test]
    fn only_what_surely_reaches_a_send_is_judged() {
        // The first line's indent kept: a `\` line end would drop it.
        let steps = "  - switch:
      - when: 'record.x == 1'
        steps:
          - map: arm
          - send: { to: api, op: post, payload: $.out }
      - otherwise:
          - map: other
  - send: { to: api, op: post, payload: $.out }
  - map: before
  - map: { mapping: inner, into: out }
  - send: { to: api, op: post, payload: $.out }
  - fetch: { from: api, op: get, into: out }
  - send: { to: api, op: post, payload: $.out }
";
        let found = errors(
            steps,
            &[
                ("arm", "  out.zz: $.q\n"),
                ("other", "  out.yy: $.q\n"),
                ("before", "  out.gone: $.q\n"),
                (
                    "inner",
                    "  a: { template: x }\n  b: { from: $.n, type: string }\n",
                ),
            ],
        );
        assert_eq!(
            found,
            [
                "mappings/arm.yaml:3:3: `out.zz`: schemas/api.json has no field `zz`",
                "mappings/inner.yaml:4:3: `out.b`: `b` is integer in schemas/api.json, but the \
                 value is converted with `type: string`",
            ]
        );
    }

    #[test]
    fn a_missing_body_schema_is_an_error_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("crossdock.yaml"), PROJECT).unwrap();
        let no_env = |_: &str| None;
        let Err(diags) = load(dir.path(), &no_env, CompileOptions::default()) else {
            panic!("a missing body_schema checked clean");
        };
        let d = diags.errors().next().unwrap();
        assert_eq!((d.pos.line, d.pos.col), (6, 52), "{d}");
        assert!(
            d.message
                .starts_with("body_schema: cannot read schemas/api.json"),
            "{d}"
        );
    }
}
