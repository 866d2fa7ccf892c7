//! The evaluator of every JSONPath that is not plain names, indexes and wildcards: descendant
//! segments, filters, slices, several selectors in a bracket.
//!
//! Owns a syntax tree of RFC 9535 queries ([`Query`]), read from text the `serde_json_path`
//! engine has already accepted (so reading needs to be right about valid queries only), and
//! evaluating it against a [`Budget`]: every node selected or passed over is counted, so a
//! query such as `$..*..*..*`, whose node list grows with the cube of a document's depth,
//! fails with [`Exceeded`] instead of allocating gigabytes; patterns of `match()`/`search()`
//! that come from the data are compiled within the budget's regex limits and reused.
//! Semantics follow the engine exactly (the compliance suite and unit tests compare them),
//! including its comparison of numbers as `f64`.

use serde_json::{Number, Value};

use super::budget::{compile_regex, Budget, Exceeded, Limits};
use super::Reader;

/// A query: `$…` from the root or `@…` from the current node of a filter.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    relative: bool,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug)]
struct Segment {
    descendant: bool,
    selectors: Vec<Selector>,
}

#[derive(Clone, Debug)]
enum Selector {
    Name(String),
    Index(i64),
    Wildcard,
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
    Filter(Box<Or>),
}

/// `a || b || …` of `a && b && …`.
type Or = Vec<Vec<Basic>>;

#[derive(Clone, Debug)]
enum Basic {
    Paren {
        not: bool,
        expr: Or,
    },
    Compare {
        left: Operand,
        op: Op,
        right: Operand,
    },
    Exists {
        not: bool,
        query: Query,
    },
    Test {
        not: bool,
        func: Func,
    },
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
enum Operand {
    Literal(Value),
    Query(Query),
    Func(Func),
}

#[derive(Clone, Debug)]
enum Func {
    Length(Box<Operand>),
    Count(Query),
    Value(Query),
    /// `match()` (`whole`) or `search()`; a literal pattern is compiled once, at load.
    Regex {
        whole: bool,
        value: Box<Operand>,
        pattern: Pattern,
    },
}

#[derive(Clone, Debug)]
enum Pattern {
    /// A literal, compiled; `None` if it is not a regular expression (it matches nothing).
    Compiled(Option<regex::Regex>),
    /// Read from the data for each candidate.
    Data(Box<Operand>),
}

/// A value in a filter: a node of the document, a value made by the filter, or nothing.
enum Val<'a> {
    Node(&'a Value),
    Owned(Value),
    Nothing,
}

impl Val<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            Val::Node(v) => Some(v),
            Val::Owned(v) => Some(v),
            Val::Nothing => None,
        }
    }
}

/// Why a valid query could not be read: a literal pattern over the regex limits, or (never,
/// if this reader is right) a form it does not know.
pub(crate) enum ParseProblem {
    Unknown(usize),
    Regex(Exceeded),
}

impl Query {
    /// Reads `src`, which the engine has accepted.
    pub(crate) fn parse(src: &str) -> Result<Query, ParseProblem> {
        let mut r = Reader {
            s: src.as_bytes(),
            src,
            i: 0,
        };
        let q = parse_query(&mut r)?;
        r.blanks();
        if r.peek().is_some() {
            return Err(ParseProblem::Unknown(r.i));
        }
        Ok(q)
    }

    /// Every node selected, in RFC 9535 order, counting each against `budget`.
    pub(crate) fn run<'a>(
        &self,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Vec<&'a Value>, Exceeded> {
        Cx { root, budget }.query(self, root)
    }
}

// ---- reading -------------------------------------------------------------------------------

fn unknown<T>(r: &Reader<'_>) -> Result<T, ParseProblem> {
    Err(ParseProblem::Unknown(r.i))
}

fn parse_query(r: &mut Reader<'_>) -> Result<Query, ParseProblem> {
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

// ---- evaluating ----------------------------------------------------------------------------

struct Cx<'a, 'b> {
    root: &'a Value,
    budget: &'b mut Budget,
}

impl<'a> Cx<'a, '_> {
    fn query(&mut self, q: &Query, current: &'a Value) -> Result<Vec<&'a Value>, Exceeded> {
        let mut nodes = vec![if q.relative { current } else { self.root }];
        let mut next = Vec::new();
        for seg in &q.segments {
            next.clear();
            for &node in &nodes {
                if seg.descendant {
                    self.descend(&seg.selectors, node, &mut next)?;
                } else {
                    self.select(&seg.selectors, node, &mut next)?;
                }
            }
            std::mem::swap(&mut nodes, &mut next);
            if nodes.is_empty() {
                break;
            }
        }
        Ok(nodes)
    }

    /// The selectors applied to `start` and to each of its descendants, in document order
    /// (a node before its children, children in order), without recursion.
    fn descend(
        &mut self,
        selectors: &[Selector],
        start: &'a Value,
        out: &mut Vec<&'a Value>,
    ) -> Result<(), Exceeded> {
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            self.budget.visit(1)?;
            self.select(selectors, node, out)?;
            match node {
                Value::Array(items) => stack.extend(items.iter().rev()),
                Value::Object(members) => stack.extend(members.values().rev()),
                _ => {}
            }
        }
        Ok(())
    }

    fn select(
        &mut self,
        selectors: &[Selector],
        node: &'a Value,
        out: &mut Vec<&'a Value>,
    ) -> Result<(), Exceeded> {
        for sel in selectors {
            let before = out.len();
            match sel {
                Selector::Name(name) => out.extend(node.as_object().and_then(|o| o.get(name))),
                Selector::Index(i) => out.extend(node.as_array().and_then(|a| index(a, *i))),
                Selector::Wildcard => match node {
                    Value::Array(items) => out.extend(items),
                    Value::Object(members) => out.extend(members.values()),
                    _ => {}
                },
                Selector::Slice { start, end, step } => {
                    if let Value::Array(items) = node {
                        slice(items, *start, *end, *step, out);
                    }
                }
                Selector::Filter(expr) => match node {
                    Value::Array(items) => {
                        for c in items {
                            self.keep_if(expr, c, out)?;
                        }
                    }
                    Value::Object(members) => {
                        for c in members.values() {
                            self.keep_if(expr, c, out)?;
                        }
                    }
                    _ => {}
                },
            }
            self.budget.visit((out.len() - before) as u64)?;
        }
        Ok(())
    }

    /// Pushes the filter candidate `c` if it passes.
    fn keep_if(
        &mut self,
        expr: &Or,
        c: &'a Value,
        out: &mut Vec<&'a Value>,
    ) -> Result<(), Exceeded> {
        self.budget.visit(1)?;
        if self.or(expr, c)? {
            out.push(c);
        }
        Ok(())
    }

    fn or(&mut self, expr: &Or, current: &'a Value) -> Result<bool, Exceeded> {
        for all in expr {
            let mut ok = true;
            for b in all {
                if !self.basic(b, current)? {
                    ok = false;
                    break;
                }
            }
            if ok {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn basic(&mut self, b: &Basic, current: &'a Value) -> Result<bool, Exceeded> {
        Ok(match b {
            Basic::Paren { not, expr } => self.or(expr, current)? != *not,
            Basic::Exists { not, query } => self.query(query, current)?.is_empty() == *not,
            Basic::Test { not, func } => {
                let yes = match self.func(func, current)? {
                    Val::Owned(Value::Bool(b)) => b,
                    _ => false,
                };
                yes != *not
            }
            Basic::Compare { left, op, right } => {
                let l = self.operand(left, current)?;
                let r = self.operand(right, current)?;
                let (l, r) = (l.get(), r.get());
                match op {
                    Op::Eq => equal(l, r),
                    Op::Ne => !equal(l, r),
                    Op::Lt => same_type(l, r) && less(l, r),
                    Op::Gt => same_type(l, r) && !less(l, r) && !equal(l, r),
                    Op::Le => same_type(l, r) && (less(l, r) || equal(l, r)),
                    Op::Ge => same_type(l, r) && !less(l, r),
                }
            }
        })
    }

    /// A comparable or a function argument as a value: a singular query's one node.
    fn operand(&mut self, o: &Operand, current: &'a Value) -> Result<Val<'a>, Exceeded> {
        Ok(match o {
            Operand::Literal(v) => Val::Owned(v.clone()),
            Operand::Query(q) => {
                let nodes = self.query(q, current)?;
                match nodes.as_slice() {
                    [one] => Val::Node(one),
                    _ => Val::Nothing,
                }
            }
            Operand::Func(f) => self.func(f, current)?,
        })
    }

    fn func(&mut self, f: &Func, current: &'a Value) -> Result<Val<'a>, Exceeded> {
        Ok(match f {
            Func::Length(arg) => {
                let v = self.operand(arg, current)?;
                let n = match v.get() {
                    Some(Value::String(s)) => Some(s.chars().count()),
                    Some(Value::Array(a)) => Some(a.len()),
                    Some(Value::Object(o)) => Some(o.len()),
                    _ => None,
                };
                n.map_or(Val::Nothing, |n| Val::Owned(Value::from(n)))
            }
            Func::Count(q) => Val::Owned(Value::from(self.query(q, current)?.len())),
            Func::Value(q) => match self.query(q, current)?.as_slice() {
                [one] => Val::Node(one),
                _ => Val::Nothing,
            },
            Func::Regex {
                whole,
                value,
                pattern,
            } => {
                let v = self.operand(value, current)?;
                let Some(Value::String(text)) = v.get() else {
                    return Ok(Val::Owned(Value::Bool(false)));
                };
                // Matching is linear in the text; count it like nodes.
                self.budget.visit(text.len() as u64 / 64)?;
                let yes = match pattern {
                    Pattern::Compiled(re) => re.as_ref().is_some_and(|re| re.is_match(text)),
                    Pattern::Data(p) => {
                        let p = self.operand(p, current)?;
                        match p.get() {
                            Some(Value::String(p)) => self
                                .budget
                                .regex(p, *whole)?
                                .is_some_and(|re| re.is_match(text)),
                            _ => false,
                        }
                    }
                };
                Val::Owned(Value::Bool(yes))
            }
        })
    }
}

fn index(items: &[Value], i: i64) -> Option<&Value> {
    let at = if i < 0 {
        items
            .len()
            .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
    } else {
        usize::try_from(i).ok()?
    };
    items.get(at)
}

/// RFC 9535 §2.3.4.2.2, in `i64` (the engine has checked every bound is within ±2^53).
fn slice<'a>(
    items: &'a [Value],
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    out: &mut Vec<&'a Value>,
) {
    let Ok(len) = i64::try_from(items.len()) else {
        return;
    };
    let step = step.unwrap_or(1);
    let norm = |i: i64| if i >= 0 { i } else { len + i };
    let at = |i: i64| usize::try_from(i).ok().and_then(|i| items.get(i));
    if step > 0 {
        let lower = norm(start.unwrap_or(0)).max(0).min(len);
        let upper = norm(end.unwrap_or(len)).max(0).min(len);
        let mut i = lower;
        while i < upper {
            out.extend(at(i));
            i += step;
        }
    } else if step < 0 {
        let upper = norm(start.unwrap_or(len - 1)).max(-1).min(len - 1);
        let lower = norm(end.unwrap_or(-len - 1)).max(-1).min(len - 1);
        let mut i = upper;
        while lower < i {
            out.extend(at(i));
            i += step;
        }
    }
}

// The engine's comparisons (serde_json_path_core 0.2, `spec/selector/filter.rs`), kept
// identical so the two agree: numbers compare as `f64` when both convert.

fn equal(l: Option<&Value>, r: Option<&Value>) -> bool {
    match (l, r) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => number_equal(a, b),
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    }
}

fn number_equal(a: &Number, b: &Number) -> bool {
    if let (Some(l), Some(r)) = (a.as_f64(), b.as_f64()) {
        l == r
    } else if let (Some(l), Some(r)) = (a.as_i64(), b.as_i64()) {
        l == r
    } else if let (Some(l), Some(r)) = (a.as_u64(), b.as_u64()) {
        l == r
    } else {
        false
    }
}

fn less(l: Option<&Value>, r: Option<&Value>) -> bool {
    match (l, r) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            if let (Some(l), Some(r)) = (a.as_f64(), b.as_f64()) {
                l < r
            } else if let (Some(l), Some(r)) = (a.as_i64(), b.as_i64()) {
                l < r
            } else if let (Some(l), Some(r)) = (a.as_u64(), b.as_u64()) {
                l < r
            } else {
                false
            }
        }
        (Some(Value::String(a)), Some(Value::String(b))) => a < b,
        _ => false,
    }
}

fn same_type(l: Option<&Value>, r: Option<&Value>) -> bool {
    match (l, r) {
        (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => false,
    }
}
