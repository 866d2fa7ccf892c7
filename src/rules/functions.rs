//! Script functions crossdock adds to Rhai: money and calendar helpers (hashing and encoding
//! are in `digest.rs`).
//!
//! - `decimal(x)`: a string, INT or decimal as a Decimal (`decimal("19.99")`); anything that is
//!   not exactly a decimal number (`"12,50 EUR"`, `()`) is an error, never a silent zero.
//! - `days_between(a, b)`: calendar days from date `a` to date `b` (b - a), INT.
//! - `add_days(d, n)`: the date `n` days after `d`, as `YYYY-MM-DD`.
//! - `date_of(d)`: the date part of a datetime, as `YYYY-MM-DD`.
//!
//! Dates are ISO 8601 dates or datetimes (RFC 2822 also accepted); a datetime counts on the
//! calendar date written in it (see `state::date`). Everything here is pure: no state, no clock.
//! Decimal/INT mixed arithmetic and comparisons are built into Rhai's `decimal` feature.

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Position, INT};
use rust_decimal::Decimal;

use crate::state::date::{format_day, parse_day};

type FnResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error raised by a crossdock function (shown to the script author as is).
pub(crate) fn fail(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), Position::NONE).into()
}

/// A short description of a value for error messages: its type and, for scalars, the value.
pub(crate) fn describe(d: &Dynamic) -> String {
    if d.is_unit() {
        "()".to_string()
    } else if d.is_string() {
        format!("{:?}", d.to_string())
    } else if d.is_array() || d.is_map() {
        d.type_name().to_string()
    } else {
        format!("{} {d}", d.type_name())
    }
}

/// `decimal(x)`: the exact Decimal for a decimal string, an INT or a Decimal.
pub(crate) fn to_decimal(x: &Dynamic) -> Result<Decimal, String> {
    if let Ok(d) = x.as_decimal() {
        return Ok(d);
    }
    if let Ok(i) = x.as_int() {
        return Ok(Decimal::from(i));
    }
    if let Ok(s) = x.as_immutable_string_ref() {
        let t = s.trim();
        // `_` separators are Rust syntax, not something a price ever contains.
        if !t.contains('_') {
            if let Some(d) = super::convert::exact_decimal(t) {
                return Ok(d);
            }
        }
    }
    Err(format!("cannot convert {} to a decimal", describe(x)))
}

fn day(fname: &str, x: &Dynamic) -> FnResult<chrono::NaiveDate> {
    let s = x.as_immutable_string_ref().map_err(|_| {
        fail(format!(
            "{fname}: expected a date string, got {}",
            describe(x)
        ))
    })?;
    parse_day(&s).map_err(|e| fail(format!("{fname}: {e}")))
}

fn days_between(a: Dynamic, b: Dynamic) -> FnResult<INT> {
    let a = day("days_between", &a)?;
    let b = day("days_between", &b)?;
    Ok(b.signed_duration_since(a).num_days())
}

fn add_days(d: Dynamic, n: INT) -> FnResult<String> {
    let day = day("add_days", &d)?;
    let moved = if n >= 0 {
        day.checked_add_days(chrono::Days::new(n.unsigned_abs()))
    } else {
        day.checked_sub_days(chrono::Days::new(n.unsigned_abs()))
    };
    moved
        .map(format_day)
        .ok_or_else(|| fail(format!("add_days: {n} days from {day} is out of range")))
}

fn date_of(d: Dynamic) -> FnResult<String> {
    day("date_of", &d).map(format_day)
}

/// Register the functions above on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn("decimal", |x: Dynamic| -> FnResult<Decimal> {
        to_decimal(&x).map_err(|e| fail(format!("decimal(): {e}")))
    });
    engine.register_fn("days_between", days_between);
    engine.register_fn("add_days", add_days);
    engine.register_fn("date_of", date_of);
    register_mixed_comparisons(engine);
}

/// Rhai answers a comparison of a string with a number quietly (`"5" == 5` is false), so a
/// field that came as text where a number was meant (`"total": "120.00"`) makes `when` and
/// `filter` conditions silently false. These overloads make it an error that names both values.
/// Rhai consults them only on an engine without its fast operators, which answer built-in
/// types with built-in code first (see `Rules::new` for which engine that is).
fn register_mixed_comparisons(engine: &mut Engine) {
    for op in ["==", "!=", "<", "<=", ">", ">="] {
        engine.register_fn(op, move |a: ImmutableString, b: INT| mixed(op, &a, &b));
        engine.register_fn(op, move |a: INT, b: ImmutableString| mixed(op, &a, &b));
        engine.register_fn(op, move |a: ImmutableString, b: Decimal| mixed(op, &a, &b));
        engine.register_fn(op, move |a: Decimal, b: ImmutableString| mixed(op, &a, &b));
    }
}

fn mixed(op: &str, a: &dyn Shown, b: &dyn Shown) -> FnResult<bool> {
    Err(fail(format!(
        "`{} {op} {}` compares a string with a number, which is never what was meant; convert \
         one side first (`parse_int(s)`, `decimal(s)`, `n.to_string()`)",
        a.shown(),
        b.shown()
    )))
}

/// A value as the comparison error shows it: strings quoted, numbers as they are.
trait Shown {
    fn shown(&self) -> String;
}
impl Shown for ImmutableString {
    fn shown(&self) -> String {
        format!("{:?}", self.as_str())
    }
}
impl Shown for INT {
    fn shown(&self) -> String {
        self.to_string()
    }
}
impl Shown for Decimal {
    fn shown(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::{build, Limits};
    use super::*;

    fn eval(src: &str) -> Result<Dynamic, String> {
        build(&Limits::default())
            .eval::<Dynamic>(src)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_string_compared_with_a_number_is_an_error_naming_both() {
        // The overloads are consulted only without Rhai's fast operators (see `Rules::new`).
        let eval = |src: &str| {
            let mut engine = build(&Limits::default());
            engine.set_fast_operators(false);
            engine.eval::<Dynamic>(src).map_err(|e| e.to_string())
        };
        for (src, shown) in [
            (r#"let t = "120.00"; t > 100"#, r#"`"120.00" > 100`"#),
            (r#"let n = 5; n == "5""#, r#"`5 == "5"`"#),
            (r#"let t = "7"; t != decimal("7")"#, r#"`"7" != 7`"#),
        ] {
            let e = eval(src).unwrap_err();
            assert!(
                e.contains(shown) && e.contains("compares a string with a number"),
                "{e}"
            );
        }
        // Same types, and a missing value against anything, still compare as before.
        assert_eq!(eval(r#""a" == "a""#).unwrap().as_bool(), Ok(true));
        assert_eq!(eval("5 < 7").unwrap().as_bool(), Ok(true));
        assert_eq!(eval(r#"() == "a""#).unwrap().as_bool(), Ok(false));
        assert_eq!(eval(r#""x" in ["x", "y"]"#).unwrap().as_bool(), Ok(true));
    }

    #[test]
    fn decimal_function() {
        assert_eq!(
            eval(r#"decimal("19.99")"#)
                .unwrap()
                .as_decimal()
                .unwrap()
                .to_string(),
            "19.99"
        );
        assert_eq!(
            eval(r#"decimal(" 225.0000 ")"#)
                .unwrap()
                .as_decimal()
                .unwrap()
                .to_string(),
            "225.0000"
        );
        assert_eq!(
            eval("decimal(12)")
                .unwrap()
                .as_decimal()
                .unwrap()
                .to_string(),
            "12"
        );
        assert_eq!(
            eval("decimal(1.5)")
                .unwrap()
                .as_decimal()
                .unwrap()
                .to_string(),
            "1.5"
        );
        assert_eq!(
            eval(r#"decimal("0.1") + decimal("0.2") == 0.3"#)
                .unwrap()
                .as_bool(),
            Ok(true)
        );
        for bad in [
            r#"decimal("12,50 EUR")"#,
            "decimal(())",
            r#"decimal("")"#,
            r#"decimal("1_000")"#,
            "decimal(true)",
        ] {
            let err = eval(bad).unwrap_err();
            assert!(err.contains("cannot convert"), "{bad}: {err}");
        }
        assert!(eval(r#"decimal("12,50 EUR")"#)
            .unwrap_err()
            .contains(r#""12,50 EUR""#));
    }

    #[test]
    fn decimal_arithmetic_is_exact_and_mixes_with_int() {
        assert_eq!(eval("0.1 + 0.2 == 0.3").unwrap().as_bool(), Ok(true));
        assert_eq!(eval("(0.1 + 0.2).to_string()").unwrap().to_string(), "0.3");
        assert_eq!(
            eval("let t = decimal(\"100.00\"); t >= 100")
                .unwrap()
                .as_bool(),
            Ok(true)
        );
        assert_eq!(
            eval("let t = decimal(\"99.99\"); t >= 100")
                .unwrap()
                .as_bool(),
            Ok(false)
        );
        assert_eq!(eval("100 <= 100.0").unwrap().as_bool(), Ok(true));
        assert_eq!(eval("5 == 5.0").unwrap().as_bool(), Ok(true));
        assert_eq!(
            eval("(19.99 * 3).to_string()").unwrap().to_string(),
            "59.97"
        );
        assert_eq!(
            eval("(2 * 19.99 + 1).to_string()").unwrap().to_string(),
            "40.98"
        );
        assert_eq!(eval("(10 / 4.0).to_string()").unwrap().to_string(), "2.5");
        assert_eq!(
            eval("(19.999).round(2).to_string()").unwrap().to_string(),
            "20.00"
        );
    }

    #[test]
    fn date_functions() {
        assert_eq!(
            eval(r#"days_between("2026-01-01", "2026-03-01")"#)
                .unwrap()
                .as_int(),
            Ok(59)
        );
        assert_eq!(
            eval(r#"days_between("2026-03-01T10:00:00Z", "2026-01-01")"#)
                .unwrap()
                .as_int(),
            Ok(-59)
        );
        assert_eq!(
            eval(r#"days_between("2026-01-01T23:59:00Z", "2026-01-02T00:01:00Z")"#)
                .unwrap()
                .as_int(),
            Ok(1),
            "calendar days, not 24-hour periods"
        );
        assert_eq!(
            eval(r#"add_days("2026-02-27", 2)"#).unwrap().to_string(),
            "2026-03-01"
        );
        assert_eq!(
            eval(r#"add_days("2026-01-01T10:00:00+02:00", -1)"#)
                .unwrap()
                .to_string(),
            "2025-12-31"
        );
        assert_eq!(
            eval(r#"date_of("2026-01-02T23:30:00-05:00")"#)
                .unwrap()
                .to_string(),
            "2026-01-02"
        );
        assert_eq!(
            eval(r#"date_of("2026-01-02")"#).unwrap().to_string(),
            "2026-01-02"
        );
        let err = eval(r#"date_of("02/01/2026")"#).unwrap_err();
        assert!(
            err.contains("date_of") && err.contains("02/01/2026"),
            "{err}"
        );
        let err = eval("days_between((), \"2026-01-01\")").unwrap_err();
        assert!(err.contains("expected a date string"), "{err}");
        assert!(eval(r#"add_days("2026-01-01", 9223372036854775807)"#).is_err());
    }
}
