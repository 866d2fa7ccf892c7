//! What compiled Rhai reads of `record` and whether it reads the body through `event`, from
//! the AST the engine made of it (so comments, strings and names that merely contain `record`
//! cannot mislead it).
//!
//! Only shapes whose meaning is certain narrow the answer: a chain of property names after
//! `record` (`record.a.b`, `record?.a`, `record["a b"].c`) reads the value at its end (a
//! method call or an index by anything but a string constant ends the chain there, reading
//! the whole value before it), and `"key" in record.a` reads only whether the key is there.
//! Any other use of `record` (passed to a function, iterated, assigned whole, declared with
//! `let`, captured by a closure, put in a string) needs all of it. This module must not know
//! about flows or bodies: it answers for one AST.

use rhai::{ASTNode, Expr, FnCallExpr, Stmt, AST};

use crate::projection::{Need, PathStep, Read};

/// What Rhai's parser makes of `x in y`: a call `contains(y, x)`.
const CONTAINS: &str = "contains";

/// What one compiled script or expression reads.
#[derive(Debug, Clone)]
pub(super) struct Reads {
    /// The uses of `record`, or `None` when one of them needs it all.
    pub(super) record: Option<Vec<Read>>,
    /// The same as a [`Need`]: what of a record is converted for the code and written back.
    pub(super) need: Need,
    pub(super) event_body: bool,
}

/// Fields of `event` that are not its body: reading them does not need the body converted.
const EVENT_FIELDS: [&str; 6] = [
    "id",
    "pipeline",
    "headers",
    "params",
    "tenant",
    "received_at",
];

impl Reads {
    pub(super) fn of(ast: &AST) -> Reads {
        let mut record = Some(Vec::new());
        let mut event_body = false;
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Expr(var @ Expr::Variable(v, ..))) => match v.1.as_str() {
                    "record" => {
                        if let Some(reads) = record.as_mut() {
                            match record_read(path, var) {
                                Some(read) => reads.push(read),
                                None => record = None,
                            }
                        }
                    }
                    "event" => event_body |= !reads_only_meta(path, var),
                    _ => {}
                },
                // `let record = …` shadows it: what the script leaves in `record` is new.
                Some(ASTNode::Stmt(Stmt::Var(x, ..))) if x.0.name == "record" => record = None,
                _ => {}
            }
            true
        });
        let mut need = Need::default();
        need.add_reads(record.as_deref());
        Reads {
            record,
            need,
            event_body,
        }
    }
}

/// What the use of `record` at the end of `path` reads, or `None` for a use that needs it all.
fn record_read(path: &[ASTNode], var: &Expr) -> Option<Read> {
    let above = parent(path, 1);
    let (steps, chain, names_only) = match above {
        Some(chain @ (Expr::Dot(x, ..) | Expr::Index(x, ..))) if std::ptr::eq(&x.lhs, var) => {
            let mut steps = Vec::new();
            let names_only = if matches!(chain, Expr::Index(..)) {
                index_steps(&x.rhs, &mut steps)
            } else {
                chain_steps(&x.rhs, &mut steps)
            };
            (steps, Some(chain), names_only)
        }
        _ => (Vec::new(), None, true),
    };
    // `"k" in record` / `"k" in record.a.b`: the chain (or the variable) is the first
    // argument of `contains`, and a string constant the second.
    let tested = chain.unwrap_or(var);
    let call = call_at(path, if chain.is_some() { 2 } else { 1 });
    if names_only {
        if let Some(f) = call {
            if f.name == CONTAINS && f.args.len() == 2 && std::ptr::eq(&f.args[0], tested) {
                if let Expr::StringConstant(key, ..) = &f.args[1] {
                    let mut steps = steps;
                    steps.push(PathStep::Name(key.to_string()));
                    return Some(Read::Presence(steps));
                }
            }
        }
    }
    (!steps.is_empty()).then_some(Read::Path(steps))
}

/// The `n`th node above the end of `path`, when it is an expression.
fn parent<'a>(path: &'a [ASTNode<'a>], n: usize) -> Option<&'a Expr> {
    match node_at(path, n) {
        Some(ASTNode::Expr(e)) => Some(e),
        _ => None,
    }
}

/// The `n`th node above the end of `path`, when it is a function call (an expression, or a
/// statement of its own: `"k" in record;`).
fn call_at<'a>(path: &'a [ASTNode<'a>], n: usize) -> Option<&'a FnCallExpr> {
    match node_at(path, n) {
        Some(ASTNode::Expr(Expr::FnCall(f, ..))) | Some(ASTNode::Stmt(Stmt::FnCall(f, ..))) => {
            Some(f)
        }
        _ => None,
    }
}

fn node_at<'a>(path: &'a [ASTNode<'a>], n: usize) -> Option<&'a ASTNode<'a>> {
    path.len().checked_sub(n + 1).and_then(|i| path.get(i))
}

/// Follows the right side of a `.` after `record`; pushes the names it reads. `true` when the
/// chain is names only, to its end (so a `contains` around it tests the last one).
pub(super) fn chain_steps(rhs: &Expr, steps: &mut Vec<PathStep>) -> bool {
    match rhs {
        Expr::Property(p, ..) => {
            steps.push(PathStep::Name(p.2.to_string()));
            true
        }
        Expr::Dot(x, ..) => match &x.lhs {
            Expr::Property(p, ..) => {
                steps.push(PathStep::Name(p.2.to_string()));
                chain_steps(&x.rhs, steps)
            }
            // `record.f().x` calls a method on `record` whole.
            _ => false,
        },
        // `record.a[...]`: `a` whole.
        Expr::Index(x, ..) => {
            if let Expr::Property(p, ..) = &x.lhs {
                steps.push(PathStep::Name(p.2.to_string()));
            }
            false
        }
        // `record.len()`: whole.
        _ => false,
    }
}

/// Follows the right side of a `[...]` after `record`: a string constant is a field name.
pub(super) fn index_steps(rhs: &Expr, steps: &mut Vec<PathStep>) -> bool {
    match rhs {
        Expr::StringConstant(s, ..) => {
            steps.push(PathStep::Name(s.to_string()));
            true
        }
        Expr::Dot(x, ..) | Expr::Index(x, ..) => {
            let Expr::StringConstant(s, ..) = &x.lhs else {
                return false;
            };
            steps.push(PathStep::Name(s.to_string()));
            if matches!(rhs, Expr::Dot(..)) {
                chain_steps(&x.rhs, steps)
            } else {
                index_steps(&x.rhs, steps)
            }
        }
        _ => false,
    }
}

/// Whether the use of `event` at the end of `path` reads only a field that is not the body.
fn reads_only_meta(path: &[ASTNode], var: &Expr) -> bool {
    let Some(Expr::Dot(x, ..)) = parent(path, 1) else {
        return false;
    };
    if !std::ptr::eq(&x.lhs, var) {
        return false;
    }
    let first = match &x.rhs {
        Expr::Dot(y, ..) | Expr::Index(y, ..) => &y.lhs,
        other => other,
    };
    matches!(first, Expr::Property(p, ..) if EVENT_FIELDS.contains(&p.2.as_str()))
}

#[cfg(test)]
mod tests {
    use super::super::{record_reads_of, Rules};
    use crate::projection::{PathStep, Read};

    fn path(p: &[&str]) -> Read {
        Read::Path(p.iter().map(|n| PathStep::Name(n.to_string())).collect())
    }

    fn presence(p: &[&str]) -> Read {
        Read::Presence(p.iter().map(|n| PathStep::Name(n.to_string())).collect())
    }

    #[test]
    fn chains_of_names_after_record_are_read_and_nothing_else_narrows() {
        for (src, reads) in [
            (r#"record.scope == "x""#, Some(vec![path(&["scope"])])),
            (
                "record.a.b > 1 && record?.c.len() > 0",
                Some(vec![path(&["a", "b"]), path(&["c"])]),
            ),
            ("event.body.x == 1", Some(vec![])),
            ("let my_record = 1; my_record + 1", Some(vec![])),
            ("record.a[0].b", Some(vec![path(&["a"])])),
            (r#"record["a b"].c"#, Some(vec![path(&["a b", "c"])])),
            (
                r#""id" in record && "products" in record.order"#,
                Some(vec![presence(&["id"]), presence(&["order", "products"])]),
            ),
            (
                r#""id" !in record.order"#,
                Some(vec![presence(&["order", "id"])]),
            ),
            // Comments and strings are not code: only the assignment reads.
            (
                "// the record as a whole\nlet s = \"record\"; /* record */ record.a = 1;",
                Some(vec![path(&["a"])]),
            ),
            // Text of a backtick string is not code either; its `${…}` part is.
            ("let s = `record ${record.n}`; s", Some(vec![path(&["n"])])),
            ("record.items.push(1)", Some(vec![path(&["items"])])),
            // Uses that need all of it.
            ("f(record)", None),
            ("record.len()", None),
            ("let k = \"x\"; record[k]", None),
            ("let x = \"a\" + \"b\"; x in record", None),
            ("let s = `${record}`; s", None),
            ("for k in record.keys() { }", None),
            ("record = #{a: 1}", None),
            ("let record = #{a: 1}; record.a", None),
            ("let f = |x| record.a + x; f.call(1)", None),
        ] {
            let got = record_reads_of(&format!("fn f(x) {{ x }}\n{src}"));
            assert_eq!(got, reads, "{src}");
        }
    }

    #[test]
    fn the_body_is_read_through_event_unless_only_its_other_fields_are() {
        let rules = Rules::default();
        for (src, reads) in [
            ("event.body.x", true),
            ("f(event)", true),
            ("event.received_at + event.id", false),
            ("event.headers[\"x\"]", false),
            ("event.headers.len()", false),
            ("event.params.shop + event.tenant", false),
            ("let prevent = #{body: 1}; prevent.body", false),
            ("// the event body is not read\nevent.id", false),
            ("event[\"body\"]", true),
        ] {
            let script = rules
                .compile_script("t", &format!("fn f(x) {{ x }}\n{src}"))
                .unwrap();
            assert_eq!(script.reads_event_body(), reads, "{src}");
            if !src.contains("let") && !src.contains("//") {
                let expr = rules.compile_expr(src).unwrap();
                assert_eq!(expr.reads_event_body(), reads, "{src}");
            }
        }
    }
}
