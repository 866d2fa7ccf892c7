//! Evaluating a query tree against a document within a [`Budget`]: every node selected or
//! passed over is counted, patterns from the data compiled within its regex limits; comparisons
//! follow the engine's (numbers as `f64`). It must not read query text.

use serde_json::{Number, Value};

use super::{Basic, Func, Op, Operand, Or, Pattern, Query, Selector};
use crate::jsonpath::budget::{Budget, Exceeded};

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
pub(super) struct Cx<'a, 'b> {
    pub(super) root: &'a Value,
    pub(super) budget: &'b mut Budget,
}

impl<'a> Cx<'a, '_> {
    pub(super) fn query(
        &mut self,
        q: &Query,
        current: &'a Value,
    ) -> Result<Vec<&'a Value>, Exceeded> {
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
