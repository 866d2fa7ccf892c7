//! Value conversions of the mapping language: target types, transforms and lookup keys.
//!
//! Owns what `type:` and `transform:` mean for each kind of JSON value. Numbers are handled
//! as text (the crate enables serde_json's `arbitrary_precision`), never through `f64`, so ids
//! beyond 2^53 and decimals such as `225.0000` keep every digit. Conversions borrow when the
//! input is already in the target form and allocate only when they produce something new.
//! Nothing here knows about paths, fields or error messages; callers add that context.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Number, Value};

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

/// The text of a number or numeric string, and whether it came from a JSON number.
fn numeric_text(v: &Value) -> Option<(&str, bool)> {
    match v {
        Value::Number(n) => Some((n.as_str(), true)),
        Value::String(s) => Some((s.as_str(), false)),
        _ => None,
    }
}

/// A number in JSON syntax, split into its parts. Only ASCII digits; no `+`, no spaces, no
/// thousands separators, no `NaN`/`Infinity`: anything else is not a number.
struct NumParts<'s> {
    neg: bool,
    int: &'s str,
    frac: Option<&'s str>,
    exp: bool,
}

fn split_number(s: &str) -> Option<NumParts<'_>> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(body);
    if n == 0 {
        return None;
    }
    let (int, mut rest) = body.split_at(n);
    let mut frac = None;
    if let Some(after) = rest.strip_prefix('.') {
        let f = digits(after);
        if f == 0 {
            return None;
        }
        frac = Some(&after[..f]);
        rest = &after[f..];
    }
    let mut exp = false;
    if let Some(after) = rest.strip_prefix(['e', 'E']) {
        let after = after.strip_prefix(['+', '-']).unwrap_or(after);
        let e = digits(after);
        if e == 0 || e != after.len() {
            return None;
        }
        exp = true;
        rest = "";
    }
    rest.is_empty().then_some(NumParts {
        neg,
        int,
        frac,
        exp,
    })
}

/// `007` -> `7`, `000` -> `0`: JSON numbers may not have leading zeros.
fn strip_zeros(int: &str) -> &str {
    let t = int.trim_start_matches('0');
    if t.is_empty() {
        "0"
    } else {
        t
    }
}

fn number(text: &str) -> Result<Cow<'static, Value>, ()> {
    Number::from_str(text)
        .map(|n| Cow::Owned(Value::Number(n)))
        .map_err(|_| ())
}

/// Exponent notation is resolved with `rust_decimal` (28 significant digits): `1.5e3` is
/// `1500`, while `1e400` does not fit and is an error rather than an infinity.
fn scientific(text: &str, found: &Value) -> Result<Decimal, ConvertFailure> {
    Decimal::from_scientific(text).or_else(|_| fail(found, Some("out of range")))
}

fn to_integer(v: Cow<'_, Value>) -> Result<Cow<'_, Value>, ConvertFailure> {
    let Some((text, is_number)) = numeric_text(&v) else {
        return fail(&v, None);
    };
    let Some(parts) = split_number(text) else {
        return fail(&v, None);
    };
    if parts.exp {
        let d = scientific(text, &v)?;
        if !d.fract().is_zero() {
            return fail(&v, Some("has a fraction"));
        }
        return number(&d.trunc().normalize().to_string()).or_else(|()| fail(&v, None));
    }
    if parts.frac.is_some_and(|f| f.bytes().any(|b| b != b'0')) {
        return fail(&v, Some("has a fraction"));
    }
    let int = strip_zeros(parts.int);
    let neg = parts.neg && int != "0";
    // Already an integer in canonical form: keep the input value, no allocation.
    if is_number && parts.frac.is_none() && int.len() == parts.int.len() && neg == parts.neg {
        return Ok(v);
    }
    let canon = if neg {
        format!("-{int}")
    } else {
        int.to_string()
    };
    number(&canon).or_else(|()| fail(&v, None))
}

fn to_decimal(v: Cow<'_, Value>) -> Result<Cow<'_, Value>, ConvertFailure> {
    let Some((text, is_number)) = numeric_text(&v) else {
        return fail(&v, None);
    };
    let Some(parts) = split_number(text) else {
        return fail(&v, None);
    };
    if parts.exp {
        let d = scientific(text, &v)?;
        return number(&d.to_string()).or_else(|()| fail(&v, None));
    }
    let int = strip_zeros(parts.int);
    if is_number && int.len() == parts.int.len() {
        return Ok(v);
    }
    // Trailing zeros are kept on purpose: "225.0000" stays 225.0000.
    let mut canon = String::with_capacity(text.len());
    if parts.neg {
        canon.push('-');
    }
    canon.push_str(int);
    if let Some(frac) = parts.frac {
        canon.push('.');
        canon.push_str(frac);
    }
    number(&canon).or_else(|()| fail(&v, None))
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

/// A point in time as read from the input: a date alone, or a date and time with the offset
/// it was written with (UTC when none was written).
enum Moment {
    Date(NaiveDate),
    At(DateTime<FixedOffset>),
}

impl Moment {
    /// The calendar date as written: no conversion to another time zone.
    fn date(&self) -> String {
        let d = match self {
            Moment::Date(d) => *d,
            Moment::At(t) => t.date_naive(),
        };
        // Not `format("%Y-%m-%d")`: that parses the format string on every call.
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    }

    fn datetime(&self) -> String {
        let t = match self {
            Moment::Date(d) => d.and_time(chrono::NaiveTime::MIN).and_utc().fixed_offset(),
            Moment::At(t) => *t,
        };
        t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }
}

fn to_moment(v: &Value) -> Result<Moment, ConvertFailure> {
    match v {
        Value::String(s) => parse_moment(s).map_or_else(|| fail(v, None), Ok),
        // Whole numbers are Unix seconds (Stripe's `created`, Shopify's exports).
        Value::Number(n) => n
            .as_i64()
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
            .map(|t| Moment::At(t.fixed_offset()))
            .map_or_else(|| fail(v, Some("not Unix seconds")), Ok),
        other => fail(other, None),
    }
}

fn parse_moment(s: &str) -> Option<Moment> {
    if let Some(t) = super::rfc2822::exact(s) {
        return Some(Moment::At(t));
    }
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(Moment::Date(d));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(Moment::At(t));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(Moment::At(t));
    }
    // ISO 8601 forms that RFC 3339 does not allow: a `+0000` offset, or no offset at all.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(Moment::At(t));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Moment::At(t.and_utc().fixed_offset()));
        }
    }
    None
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// Ok(output JSON text) or Err(detail).
    type Want = Result<&'static str, Option<&'static str>>;

    /// (type, input JSON, wanted).
    const CASES: &[(FieldType, &str, Want)] = &[
        (FieldType::String, r#""abc""#, Ok(r#""abc""#)),
        (
            FieldType::String,
            "820982911946154508",
            Ok(r#""820982911946154508""#),
        ),
        (
            FieldType::String,
            "123456789012345678901234567890",
            Ok(r#""123456789012345678901234567890""#),
        ),
        (FieldType::String, "225.0000", Ok(r#""225.0000""#)),
        // serde_json writes the exponent sign when it reads a number: 1e400 is kept as 1e+400.
        (FieldType::String, "1e400", Ok(r#""1e+400""#)),
        (FieldType::String, "true", Ok(r#""true""#)),
        (FieldType::String, r#"{"a":1}"#, Err(None)),
        (FieldType::Integer, "12", Ok("12")),
        (FieldType::Integer, "-12", Ok("-12")),
        (FieldType::Integer, r#""12""#, Ok("12")),
        (FieldType::Integer, r#""007""#, Ok("7")),
        (FieldType::Integer, r#""-0""#, Ok("0")),
        (FieldType::Integer, "12.000", Ok("12")),
        (FieldType::Integer, r#""12.0""#, Ok("12")),
        (FieldType::Integer, "1.5e3", Ok("1500")),
        (
            FieldType::Integer,
            "820982911946154508",
            Ok("820982911946154508"),
        ),
        (
            FieldType::Integer,
            "123456789012345678901234567890",
            Ok("123456789012345678901234567890"),
        ),
        (
            FieldType::Integer,
            r#""123456789012345678901234567890""#,
            Ok("123456789012345678901234567890"),
        ),
        (FieldType::Integer, "12.5", Err(Some("has a fraction"))),
        (FieldType::Integer, "1.25e1", Err(Some("has a fraction"))),
        (FieldType::Integer, "1e400", Err(Some("out of range"))),
        (FieldType::Integer, r#""12 pcs""#, Err(None)),
        (FieldType::Integer, r#""""#, Err(None)),
        (FieldType::Integer, "true", Err(None)),
        (FieldType::Decimal, "225.0000", Ok("225.0000")),
        (FieldType::Decimal, r#""225.0000""#, Ok("225.0000")),
        (FieldType::Decimal, r#""-0012.50""#, Ok("-12.50")),
        (FieldType::Decimal, "12", Ok("12")),
        (
            FieldType::Decimal,
            "123456789012345678901234567890.123456789",
            Ok("123456789012345678901234567890.123456789"),
        ),
        (FieldType::Decimal, "1.5e3", Ok("1500")),
        (FieldType::Decimal, "25E-2", Ok("0.25")),
        (FieldType::Decimal, "1e400", Err(Some("out of range"))),
        (FieldType::Decimal, r#""12,50 EUR""#, Err(None)),
        (FieldType::Decimal, r#""12,50""#, Err(None)),
        (FieldType::Decimal, r#"" 12.5""#, Err(None)),
        (FieldType::Decimal, r#""+12.5""#, Err(None)),
        (FieldType::Decimal, r#"".5""#, Err(None)),
        (FieldType::Decimal, r#""5.""#, Err(None)),
        (FieldType::Decimal, r#""NaN""#, Err(None)),
        (FieldType::Decimal, r#""Infinity""#, Err(None)),
        (FieldType::Decimal, "false", Err(None)),
        (FieldType::Boolean, "true", Ok("true")),
        (FieldType::Boolean, "false", Ok("false")),
        (FieldType::Boolean, r#""true""#, Ok("true")),
        (FieldType::Boolean, r#""FALSE""#, Ok("false")),
        (FieldType::Boolean, r#""1""#, Ok("true")),
        (FieldType::Boolean, r#""0""#, Ok("false")),
        (FieldType::Boolean, "1", Ok("true")),
        (FieldType::Boolean, "0", Ok("false")),
        (FieldType::Boolean, "2", Err(None)),
        (FieldType::Boolean, "1.0", Err(None)),
        (FieldType::Boolean, r#""yes""#, Err(None)),
        (
            FieldType::Date,
            r#""Tue, 20 Nov 2012 00:00:00 +0000""#,
            Ok(r#""2012-11-20""#),
        ),
        (
            FieldType::Date,
            r#""2012-11-20T23:30:00-05:00""#,
            Ok(r#""2012-11-20""#),
        ),
        (FieldType::Date, r#""2012-11-20""#, Ok(r#""2012-11-20""#)),
        (
            FieldType::Date,
            r#""2012-11-20 10:00:00""#,
            Ok(r#""2012-11-20""#),
        ),
        (FieldType::Date, "1353369600", Ok(r#""2012-11-20""#)),
        (FieldType::Date, r#""2012-02-30""#, Err(None)),
        (FieldType::Date, r#""20/11/2012""#, Err(None)),
        (FieldType::Date, "1.5", Err(Some("not Unix seconds"))),
        (
            FieldType::DateTime,
            r#""Tue, 20 Nov 2012 00:00:00 +0000""#,
            Ok(r#""2012-11-20T00:00:00+00:00""#),
        ),
        (
            FieldType::DateTime,
            r#""Tue, 20 Nov 2012 09:15:00 +0100""#,
            Ok(r#""2012-11-20T09:15:00+01:00""#),
        ),
        (
            FieldType::DateTime,
            r#""2012-11-20T09:15:00.250Z""#,
            Ok(r#""2012-11-20T09:15:00.250+00:00""#),
        ),
        (
            FieldType::DateTime,
            r#""2012-11-20T09:15:00-0500""#,
            Ok(r#""2012-11-20T09:15:00-05:00""#),
        ),
        (
            FieldType::DateTime,
            r#""2012-11-20T09:15:00""#,
            Ok(r#""2012-11-20T09:15:00+00:00""#),
        ),
        (
            FieldType::DateTime,
            r#""2012-11-20""#,
            Ok(r#""2012-11-20T00:00:00+00:00""#),
        ),
        (
            FieldType::DateTime,
            "1353369600",
            Ok(r#""2012-11-20T00:00:00+00:00""#),
        ),
        (
            FieldType::DateTime,
            r#""2012-11-20 09:15:00+01:00""#,
            Ok(r#""2012-11-20T09:15:00+01:00""#),
        ),
        (
            FieldType::DateTime,
            r#""2012-11-20 09:15:00""#,
            Ok(r#""2012-11-20T09:15:00+00:00""#),
        ),
        (FieldType::DateTime, r#""yesterday""#, Err(None)),
        (FieldType::DateTime, "true", Err(None)),
    ];

    #[test]
    fn converts_every_type() {
        for (ty, input, want) in CASES {
            let v = json(input);
            let got = convert(*ty, Cow::Borrowed(&v));
            match (got, want) {
                (Ok(out), Ok(text)) => {
                    // Compare text, not values: the digits must survive exactly.
                    assert_eq!(
                        serde_json::to_string(&*out).unwrap(),
                        *text,
                        "{ty} from {input}"
                    )
                }
                (Err(e), Err(detail)) => {
                    assert_eq!(e.detail, *detail, "{ty} from {input}");
                    assert_eq!(e.found, v);
                }
                (got, want) => panic!("{ty} from {input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn conversions_are_idempotent() {
        for (ty, input, want) in CASES {
            if let Ok(text) = want {
                let once = json(text);
                let twice = convert(*ty, Cow::Borrowed(&once)).unwrap();
                assert_eq!(
                    serde_json::to_string(&*twice).unwrap(),
                    *text,
                    "{ty} of {input}"
                );
            }
        }
    }

    #[test]
    fn keeps_the_input_when_already_converted() {
        let v = json("820982911946154508");
        assert!(matches!(
            convert(FieldType::Integer, Cow::Borrowed(&v)),
            Ok(Cow::Borrowed(_))
        ));
        let v = json("225.0000");
        assert!(matches!(
            convert(FieldType::Decimal, Cow::Borrowed(&v)),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn maps_arrays_element_by_element() {
        let v = json(r#"["1", 2, null, "3.00"]"#);
        let out = map_scalars(Cow::Borrowed(&v), &mut |x| convert(FieldType::Integer, x)).unwrap();
        assert_eq!(serde_json::to_string(&*out).unwrap(), "[1,2,null,3]");
        let v = json(r#"["1", "x"]"#);
        let err =
            map_scalars(Cow::Borrowed(&v), &mut |x| convert(FieldType::Integer, x)).unwrap_err();
        assert_eq!(err.found, json(r#""x""#));
    }

    #[test]
    fn transforms_strings_only() {
        let cases = [
            (Transform::Trim, r#""  a b ""#, r#""a b""#),
            (Transform::Lower, r#""ÀBC""#, r#""àbc""#),
            (Transform::Upper, r#""straße""#, r#""STRASSE""#),
            (Transform::Upper, "12", "12"),
            (Transform::Trim, "true", "true"),
        ];
        for (t, input, want) in cases {
            let v = json(input);
            assert_eq!(
                transform(t, Cow::Borrowed(&v)).into_owned(),
                json(want),
                "{t:?} {input}"
            );
        }
    }

    #[test]
    fn lookup_keys_and_rendering() {
        assert_eq!(
            key_text(&json("820982911946154508")),
            Some("820982911946154508")
        );
        assert_eq!(key_text(&json("true")), Some("true"));
        assert_eq!(key_text(&json("null")), None);
        let mut s = String::new();
        for v in ["1.50", r#""x""#, "null", "[1]", "false"] {
            render_into(&mut s, Some(&json(v)));
        }
        render_into(&mut s, None);
        assert_eq!(s, "1.50x[1]false");
    }
}
