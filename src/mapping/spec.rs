//! The serde model of a mapping file (`mappings/<name>.yaml`), exactly as written.
//!
//! Owns the shape of the file and nothing else: every struct denies unknown keys, so a typo
//! such as `tyep:` is reported by serde with the list of keys it expected. Values are kept as
//! the user wrote them (strings for paths, types and transforms); deciding whether they make
//! sense is `compile`'s job, which reports every problem at once instead of stopping at the
//! first. Field order is kept, so fields are evaluated (and fail) in the order written.
//!
//! This module does not name a YAML library: any serde deserializer (the config loader's,
//! or `serde_json` in tests) can produce these types.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// A whole mapping file.
#[derive(Clone, Debug, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// The name pipelines use in `map:`; the file name should match.
    pub mapping: String,
    /// Free text for people; ignored by the engine.
    #[serde(default)]
    pub description: Option<String>,
    /// Target field -> how to compute it, in declared order.
    pub fields: Fields,
    /// Named tables: lookup name -> (key -> value), in declared order.
    #[serde(default)]
    pub lookups: Lookups,
}

/// Target field -> spec, in the order of the file. A `Vec`, not a map, because the output
/// keeps this order and because a duplicate target must reach `compile` to be reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(pub Vec<(String, FieldSpec)>);

/// How one target field is computed.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldSpec {
    /// `Target: $.some.path`: copy the value at the path.
    Path(String),
    /// `Target: { from: …, type: …, … }`.
    Full(Box<FieldDef>),
}

/// The long form of a field. Every key is optional here; which combinations make sense is
/// checked by `compile`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// JSONPath into the record (or into the element, inside `each`).
    #[serde(default)]
    pub from: Option<String>,
    /// string | integer | decimal | boolean | date | datetime.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub required: Option<bool>,
    /// Used when the value is missing or null, or a lookup has no entry. `default: null`
    /// is the same as no default.
    #[serde(default)]
    pub default: Option<Value>,
    /// Name of a table under `lookups:`.
    #[serde(default)]
    pub lookup: Option<String>,
    /// Text with `{{ $.path }}` placeholders.
    #[serde(default)]
    pub template: Option<String>,
    /// trim | lower | upper, or a list of them applied in order.
    #[serde(default)]
    pub transform: Option<Transforms>,
    /// Inline Rhai expression; sees `value` and `record`.
    #[serde(default)]
    pub expr: Option<String>,
    /// JSONPath to an array: the field becomes an array of sub-mappings, one per element.
    #[serde(default)]
    pub each: Option<String>,
    /// The sub-mapping applied to each element of `each`.
    #[serde(default)]
    pub fields: Option<Fields>,
}

/// `transform: trim` or `transform: [trim, lower]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Transforms {
    One(String),
    Many(Vec<String>),
}

impl Transforms {
    /// The names with their index in the list (`None` for the single form), so issues can
    /// point at `transform[1]`.
    pub fn names(&self) -> Vec<(Option<usize>, &str)> {
        match self {
            Transforms::One(s) => vec![(None, s.as_str())],
            Transforms::Many(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (Some(i), s.as_str()))
                .collect(),
        }
    }
}

/// Lookup name -> table, in declared order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lookups(pub Vec<(String, LookupTable)>);

/// Key -> value. Keys are compared as text; YAML keys written as numbers or booleans
/// (`{ 1: Pending, 2: Shipped }`, common for status ids) are read as their text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LookupTable(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSONPath string or a map with from, type, required, default, lookup, template, transform, expr, each, fields")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Path(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Path(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                // Deserialising the struct through the map keeps serde's own
                // "unknown field `tyep`, expected one of …" message, which an untagged enum
                // would replace with a vague "did not match any variant".
                FieldDef::deserialize(MapAccessDeserializer::new(map))
                    .map(|d| FieldSpec::Full(Box::new(d)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of target field -> source")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<TextKey, FieldSpec>()? {
                    out.push((k.0, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Lookups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lookups;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of lookup name -> table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lookups, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<TextKey, LookupTable>()? {
                    out.push((k.0, v));
                }
                Ok(Lookups(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for LookupTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LookupTable;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of key -> value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LookupTable, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<TextKey, Value>()? {
                    out.push((k.0, v));
                }
                Ok(LookupTable(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Transforms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Transforms;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a transform name or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Transforms, E> {
                Ok(Transforms::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Transforms, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Transforms::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

// Schemas of the types read by the hand-written `Deserialize` impls above, saying what those
// accept (`crossdock schema mapping`).

impl schemars::JsonSchema for Fields {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fields".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Target field -> a JSONPath, or the long form.",
            "type": "object",
            "additionalProperties": g.subschema_for::<FieldSpec>(),
        })
    }
}

impl schemars::JsonSchema for FieldSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldSpec".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "string", "description": "JSONPath of the value to copy." },
                g.subschema_for::<FieldDef>(),
            ],
        })
    }
}

impl schemars::JsonSchema for Transforms {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Transforms".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } },
            ],
        })
    }
}

impl schemars::JsonSchema for Lookups {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Lookups".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": g.subschema_for::<LookupTable>(),
        })
    }
}

impl schemars::JsonSchema for LookupTable {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LookupTable".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "object" })
    }
}

/// A map key read as text whether YAML typed it as a string, a number or a boolean.
struct TextKey(String);

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TextKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextKey, E> {
                Ok(TextKey(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<TextKey, E> {
                Ok(TextKey(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TextKey, E> {
                Ok(TextKey(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TextKey, E> {
                Ok(TextKey(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TextKey, E> {
                Ok(TextKey(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MappingFile, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_shorthand_full_form_and_keeps_order() {
        let file = parse(
            r#"{"mapping": "m", "fields": {
                "Z": "$.z",
                "A": {"from": "$.a", "type": "decimal", "required": true, "transform": ["trim", "upper"]},
                "M": {"template": "x {{ $.id }}", "transform": "lower", "default": 0}
            }, "lookups": {"status": {"1": "Pending", "b": true}}}"#,
        )
        .unwrap();
        let names: Vec<&str> = file.fields.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["Z", "A", "M"]);
        assert_eq!(file.fields.0[0].1, FieldSpec::Path("$.z".into()));
        let FieldSpec::Full(a) = &file.fields.0[1].1 else {
            panic!("full form")
        };
        assert_eq!(a.ty.as_deref(), Some("decimal"));
        assert_eq!(
            a.transform,
            Some(Transforms::Many(vec!["trim".into(), "upper".into()]))
        );
        let FieldSpec::Full(m) = &file.fields.0[2].1 else {
            panic!("full form")
        };
        assert_eq!(m.transform, Some(Transforms::One("lower".into())));
        assert_eq!(
            file.lookups.0[0].1 .0[1],
            ("b".to_string(), Value::Bool(true))
        );
    }

    #[test]
    fn typos_get_serde_messages() {
        let cases = [
            (
                r#"{"mapping": "m", "fields": {"A": {"tyep": "string"}}}"#,
                "unknown field `tyep`, expected one of",
            ),
            (
                r#"{"mapping": "m", "fieldz": {}}"#,
                "unknown field `fieldz`",
            ),
            (
                r#"{"mapping": "m", "fields": {"A": 12}}"#,
                "expected a JSONPath string or a map",
            ),
            (
                r#"{"mapping": "m", "fields": {"A": {"transform": 3}}}"#,
                "a transform name or a list",
            ),
            (r#"{"fields": {}}"#, "missing field `mapping`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn lookup_keys_may_be_numbers_or_booleans() {
        let table: LookupTable = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(table.0.is_empty());
        // JSON keys are always strings; check the visitor directly with a non-string key.
        let key: TextKey = serde_json::from_value(serde_json::json!(11)).unwrap();
        assert_eq!(key.0, "11");
        let key: TextKey = serde_json::from_value(serde_json::json!(false)).unwrap();
        assert_eq!(key.0, "false");
    }
}
