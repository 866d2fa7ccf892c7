//! Which fields of `record` a compiled script surely sets, and to what kind of value, from its
//! AST: what `check` compares with a target's schema.
//!
//! Only what is certain counts, so a field reported here is one the script sets on every run:
//! assignments among the script's top-level statements (not inside an `if`, a loop or a
//! function), of the shapes `record.a = #{ Name: "x", Amount: 1 }` (every key of the map
//! literal) and `record.a.Name = "x"`. A later top-level assignment to a field that is not one
//! of these shapes (`record.a = make()`) forgets what was known below it; `let record` forgets
//! everything. Whatever else a script does is not reported, never guessed.

use rhai::{Expr, Stmt, AST};

/// The value a script puts in a field, as far as its source shows.
#[derive(Debug, Clone, PartialEq)]
pub enum WrittenValue {
    /// A constant: a string, an integer, a boolean, a decimal or `()` (null).
    Constant(serde_json::Value),
    /// An interpolated string (`` `Cart ${id}` ``).
    Text,
    /// Anything else.
    Unknown,
}

/// One field a script sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Field names from `record` down (`["task", "Subject"]`).
    pub path: Vec<String>,
    pub value: WrittenValue,
    /// Where the field's name is in the script (1-based).
    pub line: usize,
    pub col: usize,
}

/// `src` is the script's text, to find the keys of a constant map literal, which the
/// optimiser folds into one value without their positions.
pub(super) fn of(ast: &AST, src: &str) -> Vec<Written> {
    let mut out: Vec<Written> = Vec::new();
    for stmt in ast.statements() {
        match stmt {
            Stmt::Assignment(x) if !x.0.is_op_assignment() => {
                let mut path = Vec::new();
                let mut name_pos = x.1.lhs.position();
                if !record_path(&x.1.lhs, &mut path, &mut name_pos) {
                    continue;
                }
                // What was known at or below this field is replaced.
                out.retain(|w| !w.path.starts_with(&path));
                match &x.1.rhs {
                    Expr::Map(m, _) if !path.is_empty() => {
                        for (name, value) in &m.0 {
                            let mut field = path.clone();
                            field.push(name.name.to_string());
                            push(&mut out, field, value, line_col(name.pos));
                        }
                    }
                    Expr::DynamicConstant(d, pos) if !path.is_empty() && d.is_map() => {
                        let map = d.read_lock::<rhai::Map>();
                        for (name, value) in map.iter().flat_map(|m| m.iter()) {
                            let mut field = path.clone();
                            field.push(name.to_string());
                            let at = key_position(src, *pos, name);
                            let value = Expr::DynamicConstant(Box::new(value.clone()), *pos);
                            push(&mut out, field, &value, at);
                        }
                    }
                    value if !path.is_empty() => {
                        push(&mut out, path, value, line_col(name_pos));
                    }
                    _ => out.clear(),
                }
            }
            Stmt::Var(x, ..) if x.0.name == "record" => out.clear(),
            _ => {}
        }
    }
    out
}

/// Where `name:` is written after `from` (the `#{` of a map literal), or `from`.
fn key_position(src: &str, from: rhai::Position, name: &str) -> (usize, usize) {
    let (line, col) = line_col(from);
    let lines: Vec<&str> = src.lines().collect();
    let mut l = line.saturating_sub(1);
    let mut start = col.saturating_sub(1);
    while let Some(text) = lines.get(l) {
        let mut search = text.get(start..).unwrap_or("");
        let mut offset = start;
        while let Some(i) = search.find(name) {
            let before = text[..offset + i].chars().next_back();
            let after = text[offset + i + name.len()..].trim_start();
            let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if word_start && after.starts_with(':') {
                return (l + 1, offset + i + 1);
            }
            offset += i + name.len();
            search = &text[offset..];
        }
        l += 1;
        start = 0;
        // A map literal's keys are near its start; do not wander through the script.
        if l > line + 200 {
            break;
        }
    }
    (line, col)
}

fn line_col(pos: rhai::Position) -> (usize, usize) {
    (pos.line().unwrap_or(1), pos.position().unwrap_or(1))
}

fn push(out: &mut Vec<Written>, path: Vec<String>, value: &Expr, (line, col): (usize, usize)) {
    out.push(Written {
        path,
        value: value_of(value),
        line,
        col,
    });
}

/// The names after `record` in `record.a.b` (empty for `record` itself), and in `pos` where
/// the last one is written; `false` for any other target.
fn record_path(lhs: &Expr, path: &mut Vec<String>, pos: &mut rhai::Position) -> bool {
    match lhs {
        Expr::Variable(v, ..) => v.1 == "record",
        Expr::Dot(x, ..) => {
            let Expr::Variable(v, ..) = &x.lhs else {
                return false;
            };
            v.1 == "record" && names(&x.rhs, path, pos)
        }
        _ => false,
    }
}

fn names(rhs: &Expr, path: &mut Vec<String>, pos: &mut rhai::Position) -> bool {
    match rhs {
        Expr::Property(p, at) => {
            path.push(p.2.to_string());
            *pos = *at;
            true
        }
        Expr::Dot(x, ..) => match &x.lhs {
            Expr::Property(p, ..) => {
                path.push(p.2.to_string());
                names(&x.rhs, path, pos)
            }
            _ => false,
        },
        _ => false,
    }
}

fn value_of(e: &Expr) -> WrittenValue {
    use serde_json::Value;
    match e {
        Expr::StringConstant(s, ..) => WrittenValue::Constant(Value::String(s.to_string())),
        Expr::IntegerConstant(n, ..) => WrittenValue::Constant(Value::from(*n)),
        Expr::BoolConstant(b, ..) => WrittenValue::Constant(Value::Bool(*b)),
        Expr::Unit(..) => WrittenValue::Constant(Value::Null),
        Expr::DynamicConstant(d, ..) => match super::convert::dynamic_to_json(d) {
            Ok(v @ (Value::Number(_) | Value::String(_) | Value::Bool(_))) => {
                WrittenValue::Constant(v)
            }
            _ => WrittenValue::Unknown,
        },
        Expr::InterpolatedString(..) => WrittenValue::Text,
        _ => WrittenValue::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;
    use serde_json::json;

    fn writes(src: &str) -> Vec<(String, WrittenValue)> {
        Rules::default()
            .compile_script("t", src)
            .unwrap()
            .writes()
            .iter()
            .map(|w| (w.path.join("."), w.value.clone()))
            .collect()
    }

    #[test]
    fn top_level_map_literals_and_fields_are_known() {
        let w = writes(
            "let n = 3;\nrecord.task = #{ Subject: `Call ${n}`, Priority: \"High\", Count: 2 };\n\
             record.task.Done = true;\nrecord.other = n;",
        );
        assert_eq!(
            w,
            vec![
                ("task.Subject".into(), WrittenValue::Text),
                (
                    "task.Priority".into(),
                    WrittenValue::Constant(json!("High"))
                ),
                ("task.Count".into(), WrittenValue::Constant(json!(2))),
                ("task.Done".into(), WrittenValue::Constant(json!(true))),
                ("other".into(), WrittenValue::Unknown),
            ]
        );
    }

    #[test]
    fn what_runs_only_sometimes_or_is_replaced_is_not_reported() {
        let w = writes(
            "if record.x > 1 { record.crm = #{ Name: \"a\" }; } else { record.crm = #{ LastName: \"b\" }; }\n\
             record.task = #{ Subject: \"s\" };\nrecord.task = make();\n\
             fn make() { #{} }",
        );
        assert_eq!(w, vec![("task".into(), WrittenValue::Unknown)]);
        assert!(writes("record.a = #{ B: 1 };\nlet record = #{};").is_empty());
    }

    #[test]
    fn positions_are_the_names_in_the_script() {
        let script = Rules::default()
            .compile_script(
                "t",
                "// c\nrecord.task = #{\n    Subject: \"s\" };\nrecord.task.Due = 1;",
            )
            .unwrap();
        let at: Vec<_> = script.writes().iter().map(|w| (w.line, w.col)).collect();
        assert_eq!(at, [(3, 5), (4, 13)]);
    }
}
