//! Simple conditions answered without Rhai.
//!
//! Most triggers and filters compare one field with a text or ask whether a key is there:
//! `record.scope == "store/order/created"`, `"id" in record && "products" in record`. Through
//! Rhai each costs a scope, a conversion of the fields it reads and an evaluation, a few
//! microseconds per event, about a tenth of a whole flow. Conditions made only of these forms
//! are also compiled here, once, into a [`Condition`] that reads the JSON record directly:
//!
//! ```text
//! cond    := and ('||' and)*
//! and     := unary ('&&' unary)*
//! unary   := '!' unary | '(' cond ')' | compare
//! compare := path ('==' | '!=') text | text ('==' | '!=') path | text 'in' path
//! path    := 'record' ('.' name)*
//! text    := '"' characters other than '"' and '\' '"'
//! ```
//!
//! Rhai stays the reference. A condition answers only where Rhai's answer is certain: a path
//! through something that is not an object, a compared value that is neither text nor missing,
//! or an `in` on anything but an object make [`Condition::eval`] return `None`, and the caller
//! asks Rhai. A differential test runs both over many records.

use serde_json::Value;

/// A compiled simple condition; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Equals {
        path: Vec<String>,
        text: String,
        negated: bool,
    },
    HasKey {
        path: Vec<String>,
        key: String,
    },
}

impl Condition {
    /// The condition `src` as a [`Condition`], or `None` when it uses anything beyond the
    /// simple forms (Rhai then evaluates it every time).
    pub fn compile(src: &str) -> Option<Condition> {
        let tokens = tokenize(src)?;
        let mut parser = Parser { tokens, at: 0 };
        let node = parser.or()?;
        (parser.at == parser.tokens.len()).then_some(Condition(node))
    }

    /// The condition's value for `record`, or `None` when only Rhai can say.
    pub fn eval(&self, record: &Value) -> Option<bool> {
        eval(&self.0, record)
    }
}

fn eval(node: &Node, record: &Value) -> Option<bool> {
    match node {
        Node::Or(items) => {
            for item in items {
                if eval(item, record)? {
                    return Some(true);
                }
            }
            Some(false)
        }
        Node::And(items) => {
            for item in items {
                if !eval(item, record)? {
                    return Some(false);
                }
            }
            Some(true)
        }
        Node::Not(inner) => eval(inner, record).map(|b| !b),
        Node::Equals {
            path,
            text,
            negated,
        } => {
            let equal = match resolve(record, path)? {
                // A missing field is `()` in Rhai, and `()` equals no text.
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => s == text,
                Some(_) => return None,
            };
            Some(equal != *negated)
        }
        Node::HasKey { path, key } => match resolve(record, path)? {
            Some(Value::Object(m)) => Some(m.contains_key(key)),
            _ => None,
        },
    }
}

/// Follows `path` from `record`: `Some(None)` when the last key is missing from an object,
/// `None` when the way passes through something that is not an object (Rhai's business).
fn resolve<'a>(record: &'a Value, path: &[String]) -> Option<Option<&'a Value>> {
    let mut at = record;
    for (i, key) in path.iter().enumerate() {
        let Value::Object(m) = at else { return None };
        match m.get(key) {
            Some(v) => at = v,
            None if i + 1 == path.len() => return Some(None),
            None => return None,
        }
    }
    Some(Some(at))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Path(Vec<String>),
    Text(String),
    Eq,
    Ne,
    In,
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokenize(src: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut rest = src.trim_start();
    while !rest.is_empty() {
        let (token, tail) = if let Some(t) = rest.strip_prefix("==") {
            (Token::Eq, t)
        } else if let Some(t) = rest.strip_prefix("!=") {
            (Token::Ne, t)
        } else if let Some(t) = rest.strip_prefix("&&") {
            (Token::And, t)
        } else if let Some(t) = rest.strip_prefix("||") {
            (Token::Or, t)
        } else if let Some(t) = rest.strip_prefix('!') {
            (Token::Not, t)
        } else if let Some(t) = rest.strip_prefix('(') {
            (Token::Open, t)
        } else if let Some(t) = rest.strip_prefix(')') {
            (Token::Close, t)
        } else if let Some(t) = rest.strip_prefix('"') {
            let end = t.find(['"', '\\'])?;
            if t.as_bytes()[end] != b'"' {
                return None; // an escape: leave it to Rhai
            }
            (Token::Text(t[..end].to_string()), &t[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            let token = match word {
                "in" => Token::In,
                _ => Token::Path(path(word)?),
            };
            (token, &rest[end..])
        };
        out.push(token);
        rest = tail.trim_start();
    }
    Some(out)
}

/// `record` or `record.a.b` as the names after `record`.
fn path(word: &str) -> Option<Vec<String>> {
    let mut parts = word.split('.');
    if parts.next()? != "record" {
        return None;
    }
    parts
        .map(|p| {
            let first = p.chars().next()?;
            (first.is_ascii_alphabetic() || first == '_').then(|| p.to_string())
        })
        .collect()
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Option<Node> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            items.push(self.and()?);
        }
        Some(if items.len() == 1 {
            items.pop()?
        } else {
            Node::Or(items)
        })
    }

    fn and(&mut self) -> Option<Node> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            items.push(self.unary()?);
        }
        Some(if items.len() == 1 {
            items.pop()?
        } else {
            Node::And(items)
        })
    }

    fn unary(&mut self) -> Option<Node> {
        match self.next()? {
            Token::Not => Some(Node::Not(Box::new(self.unary()?))),
            Token::Open => {
                let inner = self.or()?;
                (self.next()? == Token::Close).then_some(inner)
            }
            Token::Path(path) => {
                let negated = self.comparison()?;
                match self.next()? {
                    Token::Text(text) => Some(Node::Equals {
                        path,
                        text,
                        negated,
                    }),
                    _ => None,
                }
            }
            Token::Text(text) => match self.next()? {
                Token::In => match self.next()? {
                    Token::Path(path) => Some(Node::HasKey { path, key: text }),
                    _ => None,
                },
                Token::Eq | Token::Ne => {
                    self.at -= 1;
                    let negated = self.comparison()?;
                    match self.next()? {
                        Token::Path(path) => Some(Node::Equals {
                            path,
                            text,
                            negated,
                        }),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// `==` (false) or `!=` (true).
    fn comparison(&mut self) -> Option<bool> {
        match self.next()? {
            Token::Eq => Some(false),
            Token::Ne => Some(true),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::Rules;
    use serde_json::json;

    #[test]
    fn only_the_simple_forms_compile() {
        for simple in [
            r#"record.scope == "store/order/created""#,
            r#""id" in record && "products" in record"#,
            r#"!("x" in record.a) || record.a.b != "y""#,
            r#""y" == record.a.b"#,
        ] {
            assert!(Condition::compile(simple).is_some(), "{simple}");
        }
        for other in [
            r#"record.total > 100"#,
            r#"record.a == record.b"#,
            r#"record["a-b"] == "x""#,
            r#"record.a == "x\"y""#,
            r#"event.headers.x == "y""#,
            r#"record.a.len() == 2"#,
            r#"record.a == "x" &&"#,
            r#"(record.a == "x""#,
            r#"record.2a == "x""#,
            r#"records.a == "x""#,
            "",
        ] {
            assert_eq!(Condition::compile(other), None, "{other}");
        }
    }

    /// Wherever the condition answers, Rhai gives the same answer.
    #[test]
    fn answers_as_rhai_does() {
        let rules = Rules::new(crate::rules::Limits::default());
        let conditions = [
            r#"record.scope == "store/order/created""#,
            r#"record.scope != "store/order/created""#,
            r#""store/order/created" == record.scope"#,
            r#""id" in record && "products" in record"#,
            r#""id" in record || record.a.b == "x""#,
            r#"!("b" in record.a) && record.a.b != "x""#,
            r#"!(record.a.b == "x" || "c" in record.a)"#,
            r#""b" in record.a"#,
            r#"record.missing.deeper == "x""#,
        ];
        let records = [
            json!({}),
            json!({"scope": "store/order/created", "id": 1, "products": []}),
            json!({"scope": "store/order/updated", "id": 1}),
            json!({"scope": 5, "a": {"b": "x", "c": null}}),
            json!({"scope": null, "a": {"b": "y"}, "products": null}),
            json!({"a": "text with b", "id": null}),
            json!({"a": [1, 2], "scope": ["store/order/created"]}),
            json!({"a": {"b": 1}}),
            json!({"a": {"b": null}, "missing": {"deeper": "x"}}),
        ];
        let ctx_event = crate::flow::event::event_info("p", None, 1, "test");
        let state: std::sync::Arc<dyn crate::state::StateStore> =
            std::sync::Arc::new(crate::state::MemoryStore::default());
        let ctx = crate::rules::Ctx {
            event: &ctx_event,
            state: &state,
        };
        let mut answered = 0;
        for src in conditions {
            let fast = Condition::compile(src).unwrap();
            let expr = rules.compile_expr(src).unwrap();
            for record in &records {
                let Some(ours) = fast.eval(record) else {
                    continue;
                };
                answered += 1;
                let theirs = expr.eval_bool_with_rhai(&rules, record, &ctx);
                assert_eq!(
                    Ok(ours),
                    theirs.map_err(|e| e.to_string()),
                    "{src} on {record}"
                );
            }
        }
        // Most pairs are answered here, so the comparison covers something.
        assert!(answered > 40, "{answered}");
    }
}
