//! Value conversions of the mapping language: target types, transforms and lookup keys.
//!
//! Owns what `type:` and `transform:` mean for each kind of JSON value. Numbers are handled
//! as text (the crate enables serde_json's `arbitrary_precision`), never through `f64`, so ids
//! beyond 2^53 and decimals such as `225.0000` keep every digit. Conversions borrow when the
//! input is already in the target form and allocate only when they produce something new.
//! Nothing here knows about paths, fields or error messages; callers add that context.//!
//! Numbers are `number.rs`, dates and times `moment.rs`; the types, transforms and keys are here.

mod moment;
mod number;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use moment::to_moment;
use number::{to_decimal, to_integer};

/// The target types of `type:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
    Decimal,
    Boolean,
    Date,
    DateTime,
}

impl FieldType {
    pub const NAMES: [&'static str; 6] = [
        "string", "integer", "decimal", "boolean", "date", "datetime",
    ];

    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "string" => FieldType::String,
            "integer" => FieldType::Integer,
            "decimal" => FieldType::Decimal,
            "boolean" => FieldType::Boolean,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
        }
    }
}

impl fmt::Display for FieldType {
    /// With its article, as in "is not an integer".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let article = if matches!(self, FieldType::Integer) {
            "an"
        } else {
            "a"
        };
        write!(f, "{article} {}", self.name())
    }
}

/// The named transforms of `transform:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Trim,
    Lower,
    Upper,
}

impl Transform {
    pub const NAMES: [&'static str; 3] = ["trim", "lower", "upper"];

    pub fn parse(name: &str) -> Option<Transform> {
        Some(match name {
            "trim" => Transform::Trim,
            "lower" => Transform::Lower,
            "upper" => Transform::Upper,
            _ => return None,
        })
    }
}

/// Why a value did not convert: the value itself (an element, when converting an array) and
/// an optional detail for the message.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertFailure {
    pub found: Value,
    pub detail: Option<&'static str>,
}

fn fail<T>(found: &Value, detail: Option<&'static str>) -> Result<T, ConvertFailure> {
    Err(ConvertFailure {
        found: found.clone(),
        detail,
    })
}

/// Applies `f` to a value, or to each element when it is an array, so that a non-singular
/// path (which yields an array of matches) converts match by match. Nulls stay null.
/// Borrows the input when nothing changed.
pub fn map_scalars<'a, E>(
    v: Cow<'a, Value>,
    f: &mut impl FnMut(Cow<'a, Value>) -> Result<Cow<'a, Value>, E>,
) -> Result<Cow<'a, Value>, E> {
    match v {
        Cow::Borrowed(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(map_scalars(Cow::Borrowed(item), f)?.into_owned());
            }
            Ok(Cow::Owned(Value::Array(out)))
        }
        Cow::Owned(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(map_scalars(Cow::Owned(item), f)?.into_owned());
            }
            Ok(Cow::Owned(Value::Array(out)))
        }
        v if v.is_null() => Ok(v),
        v => f(v),
    }
}

/// Converts one non-array, non-null value to `ty`.
pub fn convert<'a>(ty: FieldType, v: Cow<'a, Value>) -> Result<Cow<'a, Value>, ConvertFailure> {
    match ty {
        FieldType::String => to_string(v),
        FieldType::Integer => to_integer(v),
        FieldType::Decimal => to_decimal(v),
        FieldType::Boolean => to_boolean(&v).map(|b| Cow::Owned(Value::Bool(b))),
        FieldType::Date => to_moment(&v).map(|m| Cow::Owned(Value::String(m.date()))),
        FieldType::DateTime => to_moment(&v).map(|m| Cow::Owned(Value::String(m.datetime()))),
    }
}

fn to_string(v: Cow<'_, Value>) -> Result<Cow<'_, Value>, ConvertFailure> {
    let text = match &*v {
        Value::String(_) => return Ok(v),
        // `as_str` is the number exactly as it was written in the input.
        Value::Number(n) => n.as_str().to_string(),
        Value::Bool(b) => b.to_string(),
        other => return fail(other, None),
    };
    Ok(Cow::Owned(Value::String(text)))
}

fn to_boolean(v: &Value) -> Result<bool, ConvertFailure> {
    let text = match v {
        Value::Bool(b) => return Ok(*b),
        Value::Number(n) => n.as_str(),
        Value::String(s) => s.as_str(),
        other => return fail(other, None),
    };
    if text == "1" || text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text == "0" || text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        fail(v, None)
    }
}

/// Applies one transform to a string; other values pass through unchanged.
pub fn transform<'a>(t: Transform, v: Cow<'a, Value>) -> Cow<'a, Value> {
    let Value::String(s) = &*v else {
        return v;
    };
    let out = match t {
        Transform::Trim => {
            let trimmed = s.trim();
            if trimmed.len() == s.len() {
                return v;
            }
            trimmed.to_string()
        }
        Transform::Lower => {
            if !s.chars().any(char::is_uppercase) {
                return v;
            }
            s.to_lowercase()
        }
        Transform::Upper => {
            if !s.chars().any(char::is_lowercase) {
                return v;
            }
            s.to_uppercase()
        }
    };
    Cow::Owned(Value::String(out))
}

/// The text a value is looked up by: strings as they are, numbers as written, booleans as
/// `true`/`false`. Null, arrays and objects have no key.
pub fn key_text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.as_str()),
        Value::Bool(true) => Some("true"),
        Value::Bool(false) => Some("false"),
        _ => None,
    }
}

/// The text a template placeholder renders: strings without quotes, numbers as written,
/// null and missing as nothing, arrays and objects as JSON.
pub fn render_into(out: &mut String, v: Option<&Value>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Number(n)) => out.push_str(n.as_str()),
        Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(other) => out.push_str(&other.to_string()),
    }
}
