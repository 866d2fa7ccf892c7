//! [`check`]: reading a whole body as a flow that reads all of it would, keeping nothing, so a
//! body can be refused before any flow parses it.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::parse::{utf8, KeySeed, NUMBER_TOKEN};

/// The kind of a JSON value, as [`check`] found it at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    /// As messages name it: "an array".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// Reads all of `bytes` as a flow that reads the whole body would, keeping nothing: UTF-8,
/// syntax, every string and key decoded (a lone surrogate such as `"\ud800"` is refused, as
/// it is when a string is read), numbers, and the parser's nesting limit (serde_json's 128
/// levels, counted by the same deserializer). A body that passes parses under any [`Need`](super::Need);
/// skipping with [`IgnoredAny`] alone checks only the syntax.
pub fn check(bytes: &[u8]) -> serde_json::Result<Kind> {
    let mut de = serde_json::Deserializer::from_str(utf8(bytes)?);
    let kind = de.deserialize_any(Walk)?;
    de.end()?;
    Ok(kind)
}

/// Visits every value as `Value::deserialize` does, without building one.
pub(super) struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Kind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }
    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::String)
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(Kind::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if std::mem::take(&mut first) && key.as_str() == NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(Kind::Number);
            }
            map.next_value_seed(Walk)?;
        }
        Ok(Kind::Object)
    }
}
