//! `integer` and `decimal`: numbers and numeric strings read as text (plain, with a
//! fraction, or in scientific notation) and written canonically, every digit kept. It must
//! not go through `f64`, nor know other target types.

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Number, Value};

use super::{fail, ConvertFailure};

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

/// A value's number as text, split into its parts, and whether it was a JSON number (not a
/// string): what both conversions start from.
fn read_number(v: &Value) -> Result<(&str, bool, NumParts<'_>), ConvertFailure> {
    let Some((text, is_number)) = numeric_text(v) else {
        return fail(v, None);
    };
    let Some(parts) = split_number(text) else {
        return fail(v, None);
    };
    Ok((text, is_number, parts))
}

pub(super) fn to_integer(v: Cow<'_, Value>) -> Result<Cow<'_, Value>, ConvertFailure> {
    let (text, is_number, parts) = read_number(&v)?;
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

pub(super) fn to_decimal(v: Cow<'_, Value>) -> Result<Cow<'_, Value>, ConvertFailure> {
    let (text, is_number, parts) = read_number(&v)?;
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
