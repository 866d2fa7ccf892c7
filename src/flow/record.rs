//! Dotted field paths into the record (`crm.Amount`), used by `map … into` and `set`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    parts: Vec<String>,
}

impl FieldPath {
    /// Parses `a.b.c`. Empty segments (`a..b`, a leading dot) are refused.
    pub fn parse(text: &str) -> Result<FieldPath, NotAFieldPath> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if text.trim().is_empty() || parts.iter().any(|p| p.is_empty()) {
            return Err(NotAFieldPath(text.to_owned()));
        }
        Ok(FieldPath { parts })
    }

    /// A path of one name, taken as it is (dots and all): a fetch parameter's name.
    pub fn single(name: &str) -> FieldPath {
        FieldPath {
            parts: vec![name.to_string()],
        }
    }

    /// Writes `value` at this path, creating objects on the way. Fails when a value that is
    /// not an object is in the way, rather than overwrite it silently.
    pub fn set(&self, target: &mut Value, value: Value) -> Result<(), CannotSet> {
        let mut at = target;
        let (last, parents) = match self.parts.split_last() {
            Some(split) => split,
            None => return Ok(()),
        };
        for (i, part) in parents.iter().enumerate() {
            let obj = as_object(at, &self.parts[..i])?;
            at = obj
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        as_object(at, parents)?.insert(last.clone(), value);
        Ok(())
    }
}

/// Text that is no [`FieldPath`], as [`FieldPath::parse`] refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a field path; write names joined by dots, like `crm.Amount`")]
pub struct NotAFieldPath(pub String);

/// A value that is not an object stands where [`FieldPath::set`] would write inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot set a field inside {at}: it is {kind}, not an object")]
pub struct CannotSet {
    /// `the record`, or the path in backquotes.
    at: String,
    kind: &'static str,
}

fn as_object<'a>(
    v: &'a mut Value,
    path: &[String],
) -> Result<&'a mut Map<String, Value>, CannotSet> {
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    let kind = kind_of(v);
    v.as_object_mut().ok_or_else(|| CannotSet {
        at: if path.is_empty() {
            "the record".to_string()
        } else {
            format!("`{}`", path.join("."))
        },
        kind,
    })
}

/// What a JSON value is, for messages (one wording for the whole crate).
pub(crate) use crate::connectors::kind_of;

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_nested_fields_creating_objects() {
        let mut v = json!({"a": 1});
        FieldPath::parse("crm.Amount")
            .unwrap()
            .set(&mut v, json!(5))
            .unwrap();
        FieldPath::parse("crm.Name")
            .unwrap()
            .set(&mut v, json!("x"))
            .unwrap();
        assert_eq!(v, json!({"a": 1, "crm": {"Amount": 5, "Name": "x"}}));
    }

    #[test]
    fn refuses_to_overwrite_a_scalar_on_the_way() {
        let mut v = json!({"a": 1});
        let err = FieldPath::parse("a.b")
            .unwrap()
            .set(&mut v, json!(5))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set a field inside `a`: it is a number, not an object"
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in ["", "a..b", ".a", "a."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }
}
