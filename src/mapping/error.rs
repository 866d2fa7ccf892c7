//! The two kinds of mapping errors: problems in a mapping file found at load
//! ([`MappingIssue`], many at once, located in the YAML) and a record that does not map
//! ([`MappingError`], at run time, naming the mapping, the field, the path and the value).

use std::fmt;

use serde_json::Value;

use super::convert::FieldType;
use crate::config::span::{display_path, PathSeg};
use crate::jsonpath::Exceeded;

/// One problem in a mapping file, found by `compile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingIssue {
    /// The YAML node at fault, from the document root:
    /// `[Key("fields"), Key("TotalAmount"), Key("from")]`.
    pub path: Vec<PathSeg>,
    pub message: String,
    /// Byte offset into the scalar at `path`, when the problem is at a known place inside
    /// it (a JSONPath parse error, a template placeholder, a Rhai line and column).
    pub offset: Option<usize>,
}

impl MappingIssue {
    pub(crate) fn new(path: Vec<PathSeg>, message: impl Into<String>) -> Self {
        MappingIssue {
            path,
            message: message.into(),
            offset: None,
        }
    }

    pub(crate) fn at(mut self, offset: usize) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for MappingIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_path(&self.path), self.message)
    }
}

/// A record that the mapping cannot turn into output. Rendered as
/// `mapping bigcommerce-order: field TotalAmount: $.total_inc_tax = "12,50 EUR" is not a decimal`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("mapping {mapping}: field {field}: {problem}")]
pub struct MappingError {
    pub mapping: String,
    /// The full dotted target, with element indexes inside `each`: `OrderItems[2].Quantity`.
    pub field: String,
    /// Boxed to keep `Result<Value, MappingError>` small on the hot path.
    pub problem: Box<FieldProblem>,
}

/// What went wrong with one field. `from` names where the value came from: the JSONPath as
/// written, or `template`, `expr`, `default`. `found` is the value as JSON text, cut to about
/// 80 characters.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FieldProblem {
    #[error("{from} is missing and the field is required")]
    Missing { from: String },
    #[error("{from} = {found} is not {ty}{}", paren(detail))]
    NotConvertible {
        from: String,
        found: String,
        ty: FieldType,
        detail: Option<&'static str>,
    },
    #[error("{from} = {found} is not in lookup {lookup} and there is no default")]
    NotInLookup {
        from: String,
        found: String,
        lookup: String,
    },
    #[error("{from} = {found} cannot be a key of lookup {lookup}: keys are strings, numbers or booleans")]
    BadLookupKey {
        from: String,
        found: String,
        lookup: String,
    },
    #[error("each {from} = {found} is not an array")]
    NotAnArray { from: String, found: String },
    #[error("expr failed: {message}")]
    Expr { message: String },
    /// A limit of the mapping ran out while the field read `from` or emitted its value.
    #[error("{from}: {exceeded}")]
    Budget { from: String, exceeded: Exceeded },
}

fn paren(detail: &Option<&'static str>) -> String {
    detail.map(|d| format!(" ({d})")).unwrap_or_default()
}

/// The longest value text an error message shows.
const SHOW_MAX: usize = 80;

/// A value as JSON text for an error message, cut on a character boundary so that a whole
/// order pasted into a log line stays readable.
pub(crate) fn show(v: &Value) -> String {
    let mut text = v.to_string();
    if text.len() > SHOW_MAX {
        let mut end = SHOW_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages() {
        let cases = [
            (
                FieldProblem::NotConvertible {
                    from: "$.total_inc_tax".into(),
                    found: show(&json!("12,50 EUR")),
                    ty: FieldType::Decimal,
                    detail: None,
                },
                r#"mapping m: field F: $.total_inc_tax = "12,50 EUR" is not a decimal"#,
            ),
            (
                FieldProblem::NotConvertible {
                    from: "$.q".into(),
                    found: "1.5".into(),
                    ty: FieldType::Integer,
                    detail: Some("has a fraction"),
                },
                "mapping m: field F: $.q = 1.5 is not an integer (has a fraction)",
            ),
            (
                FieldProblem::Missing {
                    from: "$.id".into(),
                },
                "mapping m: field F: $.id is missing and the field is required",
            ),
        ];
        for (problem, want) in cases {
            let e = MappingError {
                mapping: "m".into(),
                field: "F".into(),
                problem: Box::new(problem),
            };
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn long_values_are_cut() {
        let long = json!("é".repeat(100));
        let s = show(&long);
        assert!(
            s.ends_with('…') && s.len() <= SHOW_MAX + '…'.len_utf8(),
            "{s}"
        );
        assert_eq!(show(&json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn issues_display_their_path() {
        let issue = MappingIssue::new(
            vec![
                PathSeg::Key("fields".into()),
                PathSeg::Key("A".into()),
                PathSeg::Key("from".into()),
            ],
            "bad JSONPath",
        );
        assert_eq!(issue.to_string(), "fields.A.from: bad JSONPath");
    }
}
