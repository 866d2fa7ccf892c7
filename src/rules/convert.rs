//! JSON <-> Rhai `Dynamic`, by hand and exact.
//!
//! Rhai's own serde bridge cannot be used: with serde_json's `arbitrary_precision` a number
//! serialises as a map holding its text, and ids beyond 2^53 or prices like `225.0000` would not
//! survive. So this module owns the mapping:
//!
//! | JSON                                         | Dynamic                          |
//! |----------------------------------------------|----------------------------------|
//! | null                                         | `()`                             |
//! | true / false                                 | bool                             |
//! | integer that fits i64                        | INT                              |
//! | other number, exactly representable          | Decimal (scale kept: `225.0000`) |
//! | other number (too many digits, huge exponent)| string holding the number's text |
//! | string                                       | string                           |
//! | array / object                               | array / object map               |
//!
//! Back to JSON, a Decimal becomes a number with exactly its digits (`0.1 + 0.2` is `0.3`),
//! chars become strings and BLOBs arrays of bytes. Maps come out ordered by key (as both Rhai
//! and serde_json keep them). Functions, timestamps and state handles have no JSON form and are errors.
//! Both directions refuse nesting deeper than [`MAX_DEPTH`] instead of overflowing the stack:
//! JSON arrives at most 128 deep (serde_json's limit) but a script can nest values further.

use std::borrow::Cow;
use std::str::FromStr;

use rhai::{Array, Dynamic, ImmutableString, Map};
use rust_decimal::Decimal;
use serde_json::{Number, Value};

/// Deepest nesting converted in either direction; matches serde_json's parse limit so that
/// whatever is produced can be read back.
pub const MAX_DEPTH: usize = 128;

/// A value that has no form on the other side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("value is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a value of type `{0}` cannot be converted to JSON")]
    Unsupported(String),
}

/// A JSON value as a Rhai value.
pub fn json_to_dynamic(v: &Value) -> Result<Dynamic, ConvertError> {
    to_dynamic(v, 0)
}

/// `json_to_dynamic(&need.project(v))` without building the projected copy first.
pub fn json_to_dynamic_projected(
    v: &Value,
    need: &crate::projection::Need,
) -> Result<Dynamic, ConvertError> {
    projected(v, need, 0)
}

fn projected(
    v: &Value,
    need: &crate::projection::Need,
    depth: usize,
) -> Result<Dynamic, ConvertError> {
    use crate::projection::Need;
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    match (need, v) {
        (Need::All, v) => to_dynamic(v, depth),
        (Need::Present, _) => Ok(Dynamic::UNIT),
        (Need::Items(_), Value::Object(_)) => to_dynamic(v, depth),
        (Need::Fields(fields) | Need::Items(fields), v) => projected_fields(fields, v, depth),
    }
}

/// [`projected`] by named fields: of an object those, of an array those of every element.
fn projected_fields(
    fields: &std::collections::BTreeMap<String, crate::projection::Need>,
    v: &Value,
    depth: usize,
) -> Result<Dynamic, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    match v {
        Value::Object(obj) => {
            let mut map = Map::new();
            for (k, need) in fields {
                if let Some(item) = obj.get(k) {
                    map.insert(k.as_str().into(), projected(item, need, depth + 1)?);
                }
            }
            Ok(Dynamic::from_map(map))
        }
        Value::Array(items) => {
            let mut arr = Array::with_capacity(items.len());
            for item in items {
                arr.push(projected_fields(fields, item, depth + 1)?);
            }
            Ok(Dynamic::from_array(arr))
        }
        v => to_dynamic(v, depth),
    }
}

fn to_dynamic(v: &Value, depth: usize) -> Result<Dynamic, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    Ok(match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => number_to_dynamic(n),
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(items) => {
            let mut arr = Array::with_capacity(items.len());
            for item in items {
                arr.push(to_dynamic(item, depth + 1)?);
            }
            Dynamic::from_array(arr)
        }
        Value::Object(obj) => {
            let mut map = Map::new();
            for (k, item) in obj {
                map.insert(k.as_str().into(), to_dynamic(item, depth + 1)?);
            }
            Dynamic::from_map(map)
        }
    })
}

/// A JSON number as INT, else Decimal if exact, else its text.
pub fn number_to_dynamic(n: &Number) -> Dynamic {
    if let Some(i) = n.as_i64() {
        return Dynamic::from_int(i);
    }
    let text = n.to_string();
    match exact_decimal(&text) {
        Some(d) => Dynamic::from_decimal(d),
        None => Dynamic::from(ImmutableString::from(text)),
    }
}

/// Parse a JSON number's text as a Decimal only if no digit is lost.
pub fn exact_decimal(text: &str) -> Option<Decimal> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    // from_str_exact refuses rather than rounds when digits do not fit; it also takes `_`
    // separators, which a JSON number never has.
    if mantissa.contains('_') {
        return None;
    }
    let mut d = Decimal::from_str_exact(mantissa).ok()?;
    let Some(exp) = exponent else {
        return Some(d);
    };
    let exp: i64 = exp.parse().ok()?;
    if d.is_zero() {
        return Some(Decimal::ZERO);
    }
    let scale = i64::from(d.scale());
    if exp <= scale {
        // 1.5e1 = 15 (scale 0), 1.5e-3 = 0.0015 (scale 4): only the scale moves.
        let new_scale = u32::try_from(scale - exp).ok()?;
        d.set_scale(new_scale).ok()?;
        Some(d)
    } else {
        d.set_scale(0).ok()?;
        let mut remaining = exp - scale;
        while remaining > 0 {
            d = d.checked_mul(Decimal::TEN)?;
            remaining -= 1;
        }
        Some(d)
    }
}

/// A Decimal as a JSON number with exactly its digits.
pub fn decimal_to_json(d: Decimal) -> Value {
    let text = d.to_string();
    // With arbitrary_precision the number keeps this text verbatim. Decimal's Display always
    // produces a valid JSON number, the string fallback only keeps this total.
    match Number::from_str(&text) {
        Ok(n) => Value::Number(n),
        Err(_) => Value::String(text),
    }
}

/// A variable captured by a closure is shared: its value, read through the share.
fn read_through(d: &Dynamic) -> Cow<'_, Dynamic> {
    if d.is_shared() {
        Cow::Owned(d.flatten_clone())
    } else {
        Cow::Borrowed(d)
    }
}

/// A Rhai value as JSON.
pub fn dynamic_to_json(d: &Dynamic) -> Result<Value, ConvertError> {
    to_json(d, 0)
}

fn to_json(d: &Dynamic, depth: usize) -> Result<Value, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    let d = read_through(d);
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(x) = d.as_decimal() {
        return Ok(decimal_to_json(x));
    }
    if let Ok(s) = d.as_immutable_string_ref() {
        return Ok(Value::String(s.as_str().to_string()));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Ok(arr) = d.as_array_ref() {
        let mut out = Vec::with_capacity(arr.len());
        for item in arr.iter() {
            out.push(to_json(item, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(map) = d.as_map_ref() {
        let mut out = serde_json::Map::new();
        for (k, item) in map.iter() {
            out.insert(k.to_string(), to_json(item, depth + 1)?);
        }
        return Ok(Value::Object(out));
    }
    if let Ok(blob) = d.as_blob_ref() {
        return Ok(Value::Array(blob.iter().map(|b| Value::from(*b)).collect()));
    }
    if let Some(h) = d.read_lock::<super::handles::Headers>() {
        return Ok(h.to_json());
    }
    Err(ConvertError::Unsupported(d.type_name().to_string()))
}

/// `need.write_back(target, dynamic_to_json(from)?)`, converting only what changed: a script
/// reads more fields of a record than it changes, and converting each back, to replace an
/// equal value, was most of what running it cost besides Rhai itself.
pub fn write_back_dynamic(
    need: &crate::projection::Need,
    target: &mut Value,
    from: &Dynamic,
) -> Result<(), ConvertError> {
    write_back(need, target, from, 0)
}

fn write_back(
    need: &crate::projection::Need,
    target: &mut Value,
    from: &Dynamic,
    depth: usize,
) -> Result<(), ConvertError> {
    use crate::projection::Need;
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    let from = read_through(from);
    match (need, &*target) {
        (Need::Present, _) => Ok(()),
        (Need::Fields(fields), _) | (Need::Items(fields), Value::Array(_)) => {
            write_back_as_fields(fields, target, &from, depth)
        }
        _ => replace_unless_same(target, &from, depth),
    }
}

/// [`write_back`] with [`Need::Fields`](crate::projection::Need::Fields) of `fields`.
fn write_back_as_fields(
    fields: &std::collections::BTreeMap<String, crate::projection::Need>,
    target: &mut Value,
    from: &Dynamic,
    depth: usize,
) -> Result<(), ConvertError> {
    if write_back_fields(fields, target, from, depth)? {
        return Ok(());
    }
    replace_unless_same(target, from, depth)
}

/// Replaces `target` with the script's value, unless it is a string, boolean or null that did
/// not change (comparing is cheaper than converting).
fn replace_unless_same(
    target: &mut Value,
    from: &Dynamic,
    depth: usize,
) -> Result<(), ConvertError> {
    match &*target {
        // Unchanged: nothing to convert.
        Value::String(t)
            if from
                .as_immutable_string_ref()
                .is_ok_and(|s| s.as_str() == t) =>
        {
            return Ok(())
        }
        Value::Bool(t) if from.as_bool() == Ok(*t) => return Ok(()),
        Value::Null if from.is_unit() => return Ok(()),
        _ => {}
    }
    *target = to_json(from, depth)?;
    Ok(())
}

/// [`write_back`] by named fields, where the target and the script's value are both objects or
/// both arrays of the same length; false (nothing done) otherwise.
fn write_back_fields(
    fields: &std::collections::BTreeMap<String, crate::projection::Need>,
    target: &mut Value,
    from: &Dynamic,
    depth: usize,
) -> Result<bool, ConvertError> {
    use crate::projection::Need;
    match target {
        Value::Object(t) if from.is_map() => {
            let Ok(f) = from.as_map_ref() else {
                return Ok(true);
            };
            for (k, need) in fields {
                match f.get(k.as_str()) {
                    Some(v) => match t.get_mut(k) {
                        Some(slot) => write_back(need, slot, v, depth + 1)?,
                        None => {
                            t.insert(k.clone(), to_json(v, depth + 1)?);
                        }
                    },
                    None if *need != Need::Present => {
                        t.remove(k);
                    }
                    None => {}
                }
            }
            // Keys the code added where it could only have added them by name.
            for (k, v) in f.iter() {
                if !fields.contains_key(k.as_str()) {
                    t.insert(k.to_string(), to_json(v, depth + 1)?);
                }
            }
            Ok(true)
        }
        Value::Array(t) if from.is_array() => {
            let Ok(f) = from.as_array_ref() else {
                return Ok(true);
            };
            if t.len() != f.len() {
                return Ok(false);
            }
            for (slot, v) in t.iter_mut().zip(f.iter()) {
                if depth + 1 > MAX_DEPTH {
                    return Err(ConvertError::TooDeep);
                }
                write_back_as_fields(fields, slot, &read_through(v), depth + 1)?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn writing_back_converts_only_what_changed_with_the_same_result() {
        use crate::projection::Need;
        let target = parse(
            r#"{"id": 1, "name": "Ann", "flag": true, "none": null, "n": 12.50, "kept": "x",
                "a": {"b": "c", "d": [1, 2], "e": {"f": "g"}}, "items": [{"s": "A"}, {"s": "B"}]}"#,
        );
        let mut need = Need::default();
        for path in [
            "$.id",
            "$.name",
            "$.flag",
            "$.none",
            "$.n",
            "$.a.b",
            "$.a.d",
            "$.a.e",
            "$.items[*].s",
        ] {
            need.add_jsonpath(path);
        }
        let mut presence = need.clone();
        presence.add_reads(crate::rules::record_reads_of(r#""kept" in record"#).as_deref());
        // What a script may leave: unchanged, changed in kind or value, fields gone or added,
        // arrays of another length.
        let results = [
            r#"{"id": 1, "name": "Ann", "flag": true, "none": null, "n": 12.50, "a": {"b": "c", "d": [1, 2], "e": {"f": "g"}}, "items": [{"s": "A"}, {"s": "B"}]}"#,
            r#"{"id": "1", "name": "Bob", "flag": false, "none": 0, "n": 12.5, "a": {"b": ["c"], "d": [1], "e": "f"}, "items": [{"s": "A"}]}"#,
            r#"{"name": "Ann", "a": {"b": "c"}, "added": {"x": 1}, "items": [{"s": "B", "t": 1}, {"s": "A"}]}"#,
            r#"{"id": null, "name": "", "a": null, "items": "none"}"#,
            r#"{}"#,
        ];
        for need in [&need, &presence, &Need::All] {
            for result in results {
                let from = json_to_dynamic(&parse(result)).unwrap();
                let mut expected = target.clone();
                need.write_back(&mut expected, dynamic_to_json(&from).unwrap());
                let mut got = target.clone();
                write_back_dynamic(need, &mut got, &from).unwrap();
                assert_eq!(
                    got.to_string(),
                    expected.to_string(),
                    "{result} with {need:?}"
                );
            }
        }
    }

    #[test]
    fn projected_conversion_is_conversion_of_the_projection() {
        let record = parse(
            r#"{"id": 7, "a": {"b": "x", "c": [1, 2]}, "items": [{"sku": "S", "qty": 2, "n": null},
                {"sku": "T"}, 3], "s": "str", "gone": null}"#,
        );
        for script in [
            "record.id",
            "record.a.b + record.missing",
            r#""a" in record && record.items[0].sku"#,
            "record.items",
            "record.s.len() + record.a.c.len()",
            "record",
        ] {
            let mut need = crate::projection::Need::default();
            need.add_reads(crate::rules::record_reads_of(script).as_deref());
            let direct = json_to_dynamic_projected(&record, &need).unwrap();
            let via_copy = json_to_dynamic(&need.project(&record)).unwrap();
            assert_eq!(
                dynamic_to_json(&direct).unwrap(),
                dynamic_to_json(&via_copy).unwrap(),
                "{script}: {need:?}"
            );
        }
    }

    fn round_trip(text: &str) -> String {
        let v = parse(text);
        let d = json_to_dynamic(&v).unwrap();
        serde_json::to_string(&dynamic_to_json(&d).unwrap()).unwrap()
    }

    #[test]
    fn numbers_keep_every_digit() {
        for text in [
            "820982911946154508",
            "-9223372036854775808",
            "12345678901234567890",
            "12345678901234567890123",
            "225.0000",
            "19.99",
            "0.1",
            "-0.000001",
            "79228162514264337593543950335",
        ] {
            assert_eq!(round_trip(text), text, "{text}");
        }
        // Exactly representable: an INT or a Decimal.
        let d = json_to_dynamic(&parse("820982911946154508")).unwrap();
        assert_eq!(d.as_int().unwrap(), 820982911946154508);
        let d = json_to_dynamic(&parse("12345678901234567890123")).unwrap();
        assert_eq!(
            d.as_decimal().unwrap().to_string(),
            "12345678901234567890123"
        );
        let d = json_to_dynamic(&parse("225.0000")).unwrap();
        assert_eq!(d.as_decimal().unwrap().scale(), 4);
        // Exponents are exact too.
        let d = json_to_dynamic(&parse("1.5e3")).unwrap();
        assert_eq!(d.as_decimal().unwrap().to_string(), "1500");
        let d = json_to_dynamic(&parse("15E-4")).unwrap();
        assert_eq!(d.as_decimal().unwrap().to_string(), "0.0015");
        // Beyond Decimal: the text, as a string, digit for digit.
        // (serde_json spells exponents as `e+`.)
        for text in [
            "79228162514264337593543950336",
            "1e+400",
            "0.00000000000000000000000000001",
            "1.2345678901234567890123456789012",
        ] {
            let d = json_to_dynamic(&parse(text)).unwrap();
            assert_eq!(d.into_string().unwrap(), text);
        }
    }

    #[test]
    fn structure_round_trips() {
        let text = r#"{"a":{"b":[true,"s",{"c":2.50,"k":"v"}],"y":null},"m":"x","z":1}"#;
        assert_eq!(round_trip(text), text);
        // Keys come out ordered by key.
        let d = json_to_dynamic(&parse(r#"{"z":1,"a":2}"#)).unwrap();
        assert_eq!(
            serde_json::to_string(&dynamic_to_json(&d).unwrap()).unwrap(),
            r#"{"a":2,"z":1}"#
        );
    }

    #[test]
    fn other_rhai_values() {
        assert_eq!(
            dynamic_to_json(&Dynamic::from_char('x')).unwrap(),
            Value::from("x")
        );
        let blob = Dynamic::from_blob(vec![1, 255]);
        assert_eq!(dynamic_to_json(&blob).unwrap(), parse("[1,255]"));
        let f = Dynamic::from(rhai::FnPtr::new("f").unwrap());
        assert!(matches!(
            dynamic_to_json(&f),
            Err(ConvertError::Unsupported(_))
        ));
        let shared = Dynamic::from_int(7).into_shared();
        assert_eq!(dynamic_to_json(&shared).unwrap(), Value::from(7));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut d = Dynamic::UNIT;
        // Deep enough to exceed the limit, shallow enough for Rhai's own recursive drop.
        for _ in 0..300 {
            d = Dynamic::from_array(vec![d]);
        }
        assert_eq!(dynamic_to_json(&d), Err(ConvertError::TooDeep));
        let mut v = Value::Null;
        for _ in 0..200 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(json_to_dynamic(&v).map(|_| ()), Err(ConvertError::TooDeep));
        // Up to the limit is fine.
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Value::Array(vec![v]);
        }
        let d = json_to_dynamic(&v).unwrap();
        assert_eq!(dynamic_to_json(&d).unwrap(), v);
    }
}
