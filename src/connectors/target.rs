//! The target's own schema of what a `send` writes: a Salesforce describe answer kept under
//! `schemas/<connector>/<Object>.json`, or the JSON Schema an `http` operation names as its
//! `body_schema`.
//!
//! Owns reading such a file (within a size budget) and judging one written field against it:
//! does the field exist, may this operation write it, and does a value of the kind the
//! mapping or script gives fit its type. The caller (the flow compiler) works out which fields
//! a `send` writes and where they are written; this module knows nothing of mappings or
//! scripts, and never calls the network: the files are what `crossdock schema pull` stored.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::salesforce::describe::Describe;

/// The largest schema file read: a full describe answer of a big standard object is under
/// 1 MiB, a trimmed one a tenth of that.
pub const MAX_SCHEMA_BYTES: u64 = 4 * 1024 * 1024;

/// What is known at load of the value a mapping field or a script puts in a field.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// Converted by a mapping's `type:` (`string`, `integer`, `decimal`, `boolean`, `date`,
    /// `datetime`).
    Typed(Typed),
    /// A fixed value: a mapping field with only a `default:` or a `template:` without
    /// placeholders, a constant in a script's map literal.
    Literal(Value),
    /// Text made by a template with placeholders: what the text looks like is not known.
    Template,
    /// A copied value, a lookup, an expression: nothing is checked but the name.
    Unknown,
}

/// The type a mapping's `type:` gives a value: the mapping's own [`FieldType`].
pub use crate::mapping::FieldType as Typed;

/// Which rule a written field breaks; each has its own diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The target has no such field.
    Unknown,
    /// The field exists but this operation may not write it.
    NotWritable,
    /// The value cannot be of the field's type.
    Type,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub kind: ProblemKind,
    pub message: String,
    pub help: Option<String>,
}

/// How a target's schema file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFormat {
    /// A Salesforce sObject describe answer (whole or as `schema pull` trims it).
    SalesforceDescribe,
    /// A JSON Schema of the request body.
    JsonSchema,
}

/// Where a `send`'s target schema is, relative to the project folder, and whether it must be
/// there: a describe file is optional (no file, no check), a `body_schema` the config names is
/// not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    pub path: PathBuf,
    pub format: SchemaFormat,
    pub required: bool,
}

/// A target's schema, read.
#[derive(Debug, Clone)]
pub enum TargetSchema {
    Salesforce(Describe),
    /// A JSON Schema, with its file's path for messages.
    Json(Value, String),
}

/// Why a schema file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaFileError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is {size} bytes, over the {max} bytes a schema file may have")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("{path} is not a {what}: {reason}")]
    Invalid {
        path: String,
        what: &'static str,
        reason: String,
    },
}

impl SchemaFile {
    /// Reads and parses the file below `root`; `Ok(None)` when an optional file is absent.
    pub fn load(&self, root: &Path) -> Result<Option<TargetSchema>, SchemaFileError> {
        let full = root.join(&self.path);
        let shown = self.path.display().to_string();
        let meta = match std::fs::metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.required => {
                return Ok(None)
            }
            Err(e) => {
                return Err(SchemaFileError::Unreadable {
                    path: shown,
                    reason: e.to_string(),
                })
            }
        };
        if meta.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaFileError::TooLarge {
                path: shown,
                size: meta.len(),
                max: MAX_SCHEMA_BYTES,
            });
        }
        let text = std::fs::read(&full).map_err(|e| SchemaFileError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let invalid = |what, reason: String| SchemaFileError::Invalid {
            path: shown.clone(),
            what,
            reason,
        };
        match self.format {
            SchemaFormat::SalesforceDescribe => serde_json::from_slice::<Describe>(&text)
                .map(|d| Some(TargetSchema::Salesforce(d)))
                .map_err(|e| invalid("Salesforce describe answer", e.to_string())),
            SchemaFormat::JsonSchema => {
                let v: Value = serde_json::from_slice(&text)
                    .map_err(|e| invalid("JSON Schema", e.to_string()))?;
                if !v.is_object() {
                    return Err(invalid("JSON Schema", "not a JSON object".into()));
                }
                Ok(Some(TargetSchema::Json(v, shown)))
            }
        }
    }
}

/// What a `send` does with the fields, as far as writability goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create,
    Update,
    /// Creates or updates: the field must allow both.
    Upsert,
}

impl TargetSchema {
    /// Judges one field the payload carries. `path` is the field's names below the payload
    /// (`["Name"]`, or `["Account", "External_Id__c"]` for a reference by external id).
    pub fn check(&self, write: Write, path: &[String], kind: &ValueKind) -> Option<FieldProblem> {
        match self {
            TargetSchema::Salesforce(d) => d.check(write, path, kind),
            TargetSchema::Json(schema, name) => check_json(schema, name, path, kind),
        }
    }
}

/// The JSON type a value of `kind` has in the body, when it is known.
fn json_type(kind: &ValueKind) -> Option<&'static str> {
    Some(match kind {
        ValueKind::Typed(Typed::String | Typed::Date | Typed::DateTime) | ValueKind::Template => {
            "string"
        }
        ValueKind::Typed(Typed::Integer) => "integer",
        ValueKind::Typed(Typed::Decimal) => "number",
        ValueKind::Typed(Typed::Boolean) => "boolean",
        ValueKind::Literal(v) => match v {
            Value::String(_) => "string",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => "null",
        },
        ValueKind::Unknown => return None,
    })
}

/// A JSON Schema's `properties`, `additionalProperties: false` and `type`, followed down
/// nested objects; `readOnly: true` properties may not be sent. Nothing else of JSON Schema is
/// read (no `$ref`, `allOf`, patterns or formats other than `date` and `date-time`).
fn check_json(
    schema: &Value,
    name: &str,
    path: &[String],
    kind: &ValueKind,
) -> Option<FieldProblem> {
    let mut node = schema;
    for (i, field) in path.iter().enumerate() {
        let props = node.get("properties").and_then(Value::as_object);
        let closed = node.get("additionalProperties") == Some(&Value::Bool(false));
        let Some(prop) = props.and_then(|p| p.get(field)) else {
            if !closed {
                return None;
            }
            let names = props.map(|p| p.keys().map(String::as_str).collect::<Vec<_>>());
            let names = names.unwrap_or_default();
            return Some(unknown_field(
                &path[..=i].join("."),
                name,
                names.iter().copied(),
            ));
        };
        if prop.get("readOnly") == Some(&Value::Bool(true)) {
            return Some(FieldProblem {
                kind: ProblemKind::NotWritable,
                message: format!("`{}` is read-only in {name}", path[..=i].join(".")),
                help: None,
            });
        }
        node = prop;
    }
    let found = json_type(kind)?;
    let allowed: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let fits = |t: &str| t == found || (t == "number" && found == "integer");
    if allowed.iter().any(|t| fits(t)) {
        return date_format_problem(node, name, path, kind);
    }
    Some(FieldProblem {
        kind: ProblemKind::Type,
        message: format!(
            "`{}` is {} in {name}, but the value is {}",
            path.join("."),
            allowed.join(" or "),
            describe_kind(kind)
        ),
        help: None,
    })
}

/// A `format: date`/`date-time` string given text that is not converted to one.
fn date_format_problem(
    node: &Value,
    name: &str,
    path: &[String],
    kind: &ValueKind,
) -> Option<FieldProblem> {
    let format = node.get("format").and_then(Value::as_str)?;
    let want = match format {
        "date" => Typed::Date,
        "date-time" => Typed::DateTime,
        _ => return None,
    };
    match kind {
        ValueKind::Typed(Typed::String) => Some(FieldProblem {
            kind: ProblemKind::Type,
            message: format!(
                "`{}` is a {format} in {name}, but the value is unconverted text",
                path.join(".")
            ),
            help: Some(format!("convert it with `type: {}`", want.name())),
        }),
        _ => None,
    }
}

/// How a value kind reads in a message.
pub fn describe_kind(kind: &ValueKind) -> String {
    match kind {
        ValueKind::Typed(t) => format!("converted with `type: {}`", t.name()),
        ValueKind::Literal(v) => format!("the constant {v}"),
        ValueKind::Template => "text from a template".into(),
        ValueKind::Unknown => "of unknown type".into(),
    }
}

/// The problem of a name the target does not have, with the close one if any.
pub fn unknown_field<'a>(
    name: &str,
    target: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> FieldProblem {
    let names: Vec<&str> = names.into_iter().collect();
    let last = name.rsplit('.').next().unwrap_or(name);
    FieldProblem {
        kind: ProblemKind::Unknown,
        message: format!("{target} has no field `{name}`"),
        help: crate::config::diag::did_you_mean(last, names.iter().copied()).or_else(|| {
            // Salesforce matches names without regard to case: say which one was meant.
            names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(last))
                .map(|n| format!("did you mean `{n}`?"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn a_closed_body_schema_knows_its_names_and_types() {
        let schema = TargetSchema::Json(
            json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "sku": {"type": "string"},
                "quantity": {"type": "integer"},
                "due": {"type": "string", "format": "date"},
                "id": {"type": "string", "readOnly": true},
                "lines": {"type": "array"},
            }
            }),
            "s.json".into(),
        );
        let check = |p: &str, k: ValueKind| schema.check(Write::Create, &path(p), &k);
        assert_eq!(check("sku", ValueKind::Template), None);
        assert_eq!(check("quantity", ValueKind::Typed(Typed::Integer)), None);
        let p = check("qty", ValueKind::Unknown).unwrap();
        assert_eq!(p.kind, ProblemKind::Unknown);
        assert_eq!(p.help.as_deref(), None, "{p:?}");
        let p = check("skuu", ValueKind::Unknown).unwrap();
        assert_eq!(p.help.as_deref(), Some("did you mean `sku`?"));
        let p = check("quantity", ValueKind::Typed(Typed::String)).unwrap();
        assert_eq!(p.kind, ProblemKind::Type);
        assert!(p.message.contains("integer"), "{p:?}");
        let p = check("due", ValueKind::Typed(Typed::String)).unwrap();
        assert_eq!(p.help.as_deref(), Some("convert it with `type: date`"));
        assert_eq!(check("due", ValueKind::Typed(Typed::Date)), None);
        assert_eq!(
            check("id", ValueKind::Unknown).unwrap().kind,
            ProblemKind::NotWritable
        );
        assert_eq!(check("lines", ValueKind::Literal(json!([]))), None);
    }

    #[test]
    fn an_open_body_schema_takes_any_other_name() {
        let schema = TargetSchema::Json(
            json!({"properties": {"a": {"type": "boolean"}}}),
            "s.json".into(),
        );
        assert_eq!(
            schema.check(Write::Create, &path("b"), &ValueKind::Template),
            None
        );
        assert!(schema
            .check(Write::Create, &path("a"), &ValueKind::Template)
            .is_some());
    }
}
