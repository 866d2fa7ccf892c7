//! Business dedup keys: text with `{JSONPath}` fields (`"bigcommerce-order:{$.data.id}"`),
//! parsed once and filled from a body by the webhook ingress and by a catch-up poll, so the
//! same object reaching the engine both ways gets the same key.
//!
//! Owns the template's syntax and how a value becomes text. It does not decide which keys an
//! event carries beside this one (the ingress and the poll do) nor how long keys are kept.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jsonpath::JsonPath;

/// Rendered keys longer than this are stored as their SHA-256: a body decides the length of
/// what it fills in, and must not decide the size of the dedup table's keys.
pub const MAX_KEY_BYTES: usize = 256;

/// One template: literal text and fields, in order.
#[derive(Debug)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Field(JsonPath),
}

/// Why a template cannot be used, with the byte offset in its text it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub offset: usize,
    pub message: String,
}

impl KeyTemplate {
    pub fn parse(text: &str) -> Result<KeyTemplate, KeyError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut at = 0;
        let mut fields = 0;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(len) = rest[open..].find('}') else {
                return Err(KeyError {
                    offset: at + open,
                    message: "`{` opens a field that no `}` closes".into(),
                });
            };
            let inner = &rest[open + 1..open + len];
            if !inner.starts_with('$') {
                return Err(KeyError {
                    offset: at + open,
                    message: format!(
                        "`{{{inner}}}` is not a field: write a JSONPath, e.g. `{{$.data.id}}`"
                    ),
                });
            }
            let path = JsonPath::parse(inner).map_err(|e| KeyError {
                offset: at + open + 1 + e.offset,
                message: format!("JSONPath `{inner}`: {}", e.message),
            })?;
            parts.push(Part::Field(path));
            fields += 1;
            at += open + len + 1;
            rest = &rest[open + len + 1..];
        }
        if rest.contains('}') {
            return Err(KeyError {
                offset: at + rest.find('}').unwrap_or(0),
                message: "`}` closes no field".into(),
            });
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if fields == 0 {
            return Err(KeyError {
                offset: 0,
                message: "a key needs at least one `{JSONPath}` field of the body, or every \
                          event would have the same key"
                    .into(),
            });
        }
        Ok(KeyTemplate { parts })
    }

    /// The key for `body`, or None when a field is missing, null, an object or a list.
    pub fn render(&self, body: &Value) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => match path.first(body)? {
                    Value::String(s) if !s.is_empty() => out.push_str(s),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    _ => return None,
                },
            }
        }
        if out.len() > MAX_KEY_BYTES {
            let hash = Sha256::digest(out.as_bytes());
            return Some(format!("sha256:{}", hex::encode(hash)));
        }
        Some(out)
    }

    /// The JSONPaths of the fields, for what a parser must keep of a body.
    pub fn paths(&self) -> impl Iterator<Item = &JsonPath> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(path) => Some(path),
            Part::Text(_) => None,
        })
    }
}

/// Templates tried in order: the first that renders gives the key.
#[derive(Debug)]
pub struct BusinessKey {
    pub templates: Vec<KeyTemplate>,
    /// The source text of each field's JSONPath, for building a body parser.
    pub sources: Vec<String>,
}

impl BusinessKey {
    /// Parses every template; the error names the template's index in the list.
    pub fn parse(texts: &[&str]) -> Result<BusinessKey, (usize, KeyError)> {
        let mut templates = Vec::with_capacity(texts.len());
        let mut sources = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let t = KeyTemplate::parse(text).map_err(|e| (i, e))?;
            sources.extend(field_texts(text));
            templates.push(t);
        }
        Ok(BusinessKey { templates, sources })
    }

    /// The stored dedup key (`key:` and the first template's text that renders), or None.
    pub fn dedup_key(&self, body: &Value) -> Option<String> {
        self.templates
            .iter()
            .find_map(|t| t.render(body))
            .map(|k| format!("key:{k}"))
    }
}

/// The JSONPath texts between braces of a template that parsed.
fn field_texts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + len].to_owned());
        rest = &rest[open + len + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_object_from_a_webhook_and_a_poll_item_gets_one_key() {
        let webhook = BusinessKey::parse(&[
            "bigcommerce-order:{$.data.id}@status:{$.data.status.new_status_id}",
            "bigcommerce-order:{$.data.id}",
        ])
        .unwrap();
        let poll = BusinessKey::parse(&["bigcommerce-order:{$.id}"]).unwrap();
        let created = json!({"scope": "store/order/created", "data": {"type": "order", "id": 250}});
        let status =
            json!({"data": {"id": 250, "status": {"previous_status_id": 1, "new_status_id": 11}}});
        let item = json!({"id": 250, "status_id": 11});
        assert_eq!(
            webhook.dedup_key(&created).as_deref(),
            Some("key:bigcommerce-order:250")
        );
        assert_eq!(webhook.dedup_key(&created), poll.dedup_key(&item));
        assert_eq!(
            webhook.dedup_key(&status).as_deref(),
            Some("key:bigcommerce-order:250@status:11")
        );
        assert_eq!(webhook.dedup_key(&json!({"data": {}})), None);
        assert_eq!(poll.dedup_key(&json!({"id": null})), None);
        assert_eq!(poll.dedup_key(&json!({"id": {"a": 1}})), None);
        assert_eq!(
            poll.dedup_key(&json!({"id": "abc"})).unwrap(),
            "key:bigcommerce-order:abc"
        );
    }

    #[test]
    fn long_keys_are_hashed() {
        let t = BusinessKey::parse(&["k:{$.id}"]).unwrap();
        let long = "x".repeat(10_000);
        let key = t.dedup_key(&json!({ "id": long })).unwrap();
        assert!(key.starts_with("key:sha256:") && key.len() < 100, "{key}");
    }

    #[test]
    fn bad_templates_say_where() {
        let e = KeyTemplate::parse("order:{$.id").unwrap_err();
        assert_eq!(e.offset, 6);
        let e = KeyTemplate::parse("order:{id}").unwrap_err();
        assert!(e.message.contains("not a field"), "{}", e.message);
        let e = KeyTemplate::parse("order").unwrap_err();
        assert!(e.message.contains("at least one"), "{}", e.message);
        let e = KeyTemplate::parse("order:{$.id}}").unwrap_err();
        assert_eq!(e.offset, 12);
        let e = KeyTemplate::parse("o:{$[}").unwrap_err();
        assert!(e.message.starts_with("JSONPath"), "{}", e.message);
        assert!(e.offset >= 3, "{e:?}");
        assert_eq!(
            BusinessKey::parse(&["a:{$.x}", "b"]).unwrap_err().0,
            1,
            "the failing template's index"
        );
    }
}
