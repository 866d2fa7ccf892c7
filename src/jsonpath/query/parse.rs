//! Reading a query's text, already accepted by the engine, into the tree of `query`: segments,
//! selectors, filters and function calls, literal patterns compiled within the default regex
//! limits. It must not evaluate, nor refuse what the engine accepts.

use serde_json::{Number, Value};

use super::{Basic, Func, Op, Operand, Or, ParseProblem, Pattern, Query, Segment, Selector};
use crate::jsonpath::budget::{compile_regex, Limits};
use crate::jsonpath::reader::Reader;

fn unknown<T>(r: &Reader<'_>) -> Result<T, ParseProblem> {
    Err(ParseProblem::Unknown(r.i))
}

pub(super) fn parse_query(r: &mut Reader<'_>) -> Result<Query, ParseProblem> {
    let relative = match r.peek() {
        Some(b'$') => false,
        Some(b'@') => true,
        _ => return unknown(r),
    };
    r.i += 1;
    let mut segments = Vec::new();
    loop {
        // Blanks may precede a segment, but inside a filter they may also precede an operator:
        // only take them if a segment follows.
        let save = r.i;
        r.blanks();
        match r.peek() {
            Some(b'.') if r.s.get(r.i + 1) == Some(&b'.') => {
                r.i += 2;
                let selectors = match r.peek() {
                    Some(b'[') => bracket(r)?,
                    Some(b'*') => {
                        r.i += 1;
                        vec![Selector::Wildcard]
                    }
                    _ => match r.shorthand_name() {
                        Some(name) => vec![Selector::Name(name)],
                        None => return unknown(r),
                    },
                };
                segments.push(Segment {
                    descendant: true,
                    selectors,
                });
            }
            Some(b'.') => {
                r.i += 1;
                let selector = if r.eat(b'*') {
                    Selector::Wildcard
                } else {
                    match r.shorthand_name() {
                        Some(name) => Selector::Name(name),
                        None => return unknown(r),
                    }
                };
                segments.push(Segment {
                    descendant: false,
                    selectors: vec![selector],
                });
            }
            Some(b'[') => {
                let selectors = bracket(r)?;
                segments.push(Segment {
                    descendant: false,
                    selectors,
                });
            }
            _ => {
                r.i = save;
                return Ok(Query { relative, segments });
            }
        }
    }
}

/// `[ selector *( , selector ) ]`, at the `[`.
fn bracket(r: &mut Reader<'_>) -> Result<Vec<Selector>, ParseProblem> {
    if !r.eat(b'[') {
        return unknown(r);
    }
    let mut selectors = Vec::new();
    loop {
        r.blanks();
        selectors.push(selector(r)?);
        r.blanks();
        if r.eat(b']') {
            return Ok(selectors);
        }
        if !r.eat(b',') {
            return unknown(r);
        }
    }
}

fn selector(r: &mut Reader<'_>) -> Result<Selector, ParseProblem> {
    match r.peek() {
        Some(b'*') => {
            r.i += 1;
            Ok(Selector::Wildcard)
        }
        Some(q @ (b'\'' | b'"')) => {
            r.i += 1;
            match r.string(q) {
                Some(name) => Ok(Selector::Name(name)),
                None => unknown(r),
            }
        }
        Some(b'?') => {
            r.i += 1;
            r.blanks();
            Ok(Selector::Filter(Box::new(or(r)?)))
        }
        Some(b'-' | b'0'..=b'9' | b':') => {
            let start = opt_int(r)?;
            r.blanks();
            if !r.eat(b':') {
                return match start {
                    Some(i) => Ok(Selector::Index(i)),
                    None => unknown(r),
                };
            }
            r.blanks();
            let end = opt_int(r)?;
            r.blanks();
            let step = if r.eat(b':') {
                r.blanks();
                opt_int(r)?
            } else {
                None
            };
            Ok(Selector::Slice { start, end, step })
        }
        _ => unknown(r),
    }
}

fn opt_int(r: &mut Reader<'_>) -> Result<Option<i64>, ParseProblem> {
    if matches!(r.peek(), Some(b'-' | b'0'..=b'9')) {
        match r.int() {
            Some(i) => Ok(Some(i)),
            None => unknown(r),
        }
    } else {
        Ok(None)
    }
}

fn or(r: &mut Reader<'_>) -> Result<Or, ParseProblem> {
    let mut any = vec![and(r)?];
    loop {
        r.blanks();
        if r.src.get(r.i..).is_some_and(|s| s.starts_with("||")) {
            r.i += 2;
            r.blanks();
            any.push(and(r)?);
        } else {
            return Ok(any);
        }
    }
}

fn and(r: &mut Reader<'_>) -> Result<Vec<Basic>, ParseProblem> {
    let mut all = vec![basic(r)?];
    loop {
        r.blanks();
        if r.src.get(r.i..).is_some_and(|s| s.starts_with("&&")) {
            r.i += 2;
            r.blanks();
            all.push(basic(r)?);
        } else {
            return Ok(all);
        }
    }
}

fn basic(r: &mut Reader<'_>) -> Result<Basic, ParseProblem> {
    let not = r.eat(b'!');
    if not {
        r.blanks();
    }
    if r.eat(b'(') {
        r.blanks();
        let expr = or(r)?;
        r.blanks();
        if !r.eat(b')') {
            return unknown(r);
        }
        return Ok(Basic::Paren { not, expr });
    }
    let left = operand(r)?;
    let save = r.i;
    r.blanks();
    let rest = r.src.get(r.i..).unwrap_or("");
    let op = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find(|(text, _)| rest.starts_with(text));
    if let (Some((text, op)), false) = (op, not) {
        r.i += text.len();
        r.blanks();
        let right = operand(r)?;
        return Ok(Basic::Compare { left, op, right });
    }
    r.i = save;
    match left {
        Operand::Query(query) => Ok(Basic::Exists { not, query }),
        Operand::Func(func) => Ok(Basic::Test { not, func }),
        Operand::Literal(_) => unknown(r),
    }
}

fn operand(r: &mut Reader<'_>) -> Result<Operand, ParseProblem> {
    match r.peek() {
        Some(b'$' | b'@') => Ok(Operand::Query(parse_query(r)?)),
        Some(q @ (b'\'' | b'"')) => {
            r.i += 1;
            match r.string(q) {
                Some(s) => Ok(Operand::Literal(Value::String(s))),
                None => unknown(r),
            }
        }
        Some(b'-' | b'0'..=b'9') => number(r),
        Some(b'a'..=b'z') => {
            let start = r.i;
            while matches!(r.peek(), Some(b'a'..=b'z' | b'0'..=b'9' | b'_')) {
                r.i += 1;
            }
            let word = r.src.get(start..r.i).unwrap_or("");
            match word {
                "true" => Ok(Operand::Literal(Value::Bool(true))),
                "false" => Ok(Operand::Literal(Value::Bool(false))),
                "null" => Ok(Operand::Literal(Value::Null)),
                _ => Ok(Operand::Func(func(r, word, start)?)),
            }
        }
        _ => unknown(r),
    }
}

fn number(r: &mut Reader<'_>) -> Result<Operand, ParseProblem> {
    let start = r.i;
    r.eat(b'-');
    while matches!(
        r.peek(),
        Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
    ) {
        r.i += 1;
    }
    let text = r.src.get(start..r.i).unwrap_or("");
    // `-0` is a valid JSONPath literal that serde_json reads as a number too.
    match serde_json::from_str::<Number>(text) {
        Ok(n) => Ok(Operand::Literal(Value::Number(n))),
        Err(_) => Err(ParseProblem::Unknown(start)),
    }
}

fn func(r: &mut Reader<'_>, name: &str, start: usize) -> Result<Func, ParseProblem> {
    if !r.eat(b'(') {
        return Err(ParseProblem::Unknown(start));
    }
    let mut args = Vec::new();
    loop {
        r.blanks();
        if r.eat(b')') {
            break;
        }
        args.push(operand(r)?);
        r.blanks();
        if r.eat(b')') {
            break;
        }
        if !r.eat(b',') {
            return unknown(r);
        }
    }
    let mut args = args.into_iter();
    let (a, b) = (args.next(), args.next());
    let query = |o: Option<Operand>| match o {
        Some(Operand::Query(q)) => Ok(q),
        _ => Err(ParseProblem::Unknown(start)),
    };
    let boxed = |o: Option<Operand>| o.map(Box::new).ok_or(ParseProblem::Unknown(start));
    Ok(match name {
        "length" => Func::Length(boxed(a)?),
        "count" => Func::Count(query(a)?),
        "value" => Func::Value(query(a)?),
        "match" | "search" => {
            let whole = name == "match";
            let pattern = match b {
                Some(Operand::Literal(Value::String(p))) => Pattern::Compiled(
                    compile_regex(&p, whole, &Limits::default()).map_err(ParseProblem::Regex)?,
                ),
                other => Pattern::Data(boxed(other)?),
            };
            Func::Regex {
                whole,
                value: boxed(a)?,
                pattern,
            }
        }
        _ => return Err(ParseProblem::Unknown(start)),
    })
}
