//! Many stores, one pipeline: the compiled tenants lists (`tenants/<list>.yaml`), webhook paths
//! with parameters (`/hooks/shopee/{shop}`), and `{tenant.KEY}` in config values.
//!
//! Compile once, pick per event: every tenant's signature scheme and connector is built when the
//! project loads, each from the config with that tenant's values filled in; an event only looks
//! its tenant up by name. This file owns the list's shape and limits, matching a path against a
//! pattern, and filling text; it must not build connectors or schemes (the compiler and the
//! runtime do, from what it fills).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::verify::Scheme;

/// Tenants one list may hold: far above the shops one integration serves, and a bound on the
/// connectors and schemes a list makes the engine build.
pub const MAX_TENANTS: usize = 10_000;

/// Longest tenant id and path parameter value, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// One `tenants/<list>.yaml`: tenant id -> its values (`${VAR}`s already filled in), as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantList {
    pub name: String,
    pub file: PathBuf,
    pub tenants: BTreeMap<String, BTreeMap<String, String>>,
}

/// Ids and path parameter values: letters, digits, `_`, `-` and `.`, so they are safe in a URL
/// path, a metrics label, a log line and a state key alike.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && id != "."
        && id != ".."
}

/// A webhook's per-tenant part: which list, what chooses the tenant, and each tenant's
/// signature scheme (None when the webhook has no `verify:`).
pub struct WebhookTenants {
    pub list: String,
    pub choose: Choose,
    pub schemes: BTreeMap<String, Option<Box<dyn Scheme>>>,
}

/// What names an event's tenant.
pub enum Choose {
    /// The path parameter of this name: its value is the tenant's id.
    Param(String),
    /// A field of the body, read by a parser made for it, whose text is looked up in `index`
    /// (the `match` value of every tenant -> the tenant's id).
    Body {
        path: crate::jsonpath::JsonPath,
        parser: crate::projection::BodyParser,
        index: std::collections::HashMap<String, String>,
    },
}

impl Choose {
    /// Where the tenant is read, for messages: `path parameter shop`, `body $.shop_id`.
    pub fn describe(&self) -> String {
        match self {
            Choose::Param(name) => format!("path parameter `{name}`"),
            Choose::Body { path, .. } => format!("body field `{}`", path.as_str()),
        }
    }
}

/// The text a JSON value names a tenant by: a string as it is, a number or boolean as written.
pub fn tenant_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A webhook path with `{name}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl PathPattern {
    /// The pattern in `path`, None when it has no parameter. A segment is either literal text
    /// or exactly one `{name}`; anything else with a brace is an error.
    pub fn parse(path: &str) -> Result<Option<PathPattern>, String> {
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for segment in path.split('/').skip(1) {
            let param = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            match param {
                Some(name) if valid_param_name(name) => {
                    if names.contains(&name) {
                        return Err(format!("the path names `{{{name}}}` twice"));
                    }
                    names.push(name);
                    segments.push(Segment::Param(name.to_owned()));
                }
                Some(name) => {
                    return Err(format!(
                        "`{{{name}}}` is not a parameter name (letters, digits and `_`, not \
                         starting with a digit)"
                    ))
                }
                None if segment.contains(['{', '}']) => {
                    return Err(format!(
                        "`{segment}`: a parameter is a whole segment, like `/hooks/{{shop}}`"
                    ))
                }
                None => segments.push(Segment::Literal(segment.to_owned())),
            }
        }
        if names.is_empty() {
            return Ok(None);
        }
        Ok(Some(PathPattern {
            text: path.to_owned(),
            segments,
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The parameters of `path` when it matches. A parameter's value must be a valid id
    /// ([`valid_id`]); a path whose value is not does not match, so it is a 404 like any
    /// other unknown path.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut parts = path.split('/').skip(1);
        let mut params = Vec::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(text) if text == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) if valid_id(part) => {
                    params.push((name.clone(), part.to_owned()));
                }
                Segment::Param(_) => return None,
            }
        }
        parts.next().is_none().then_some(params)
    }
}

fn valid_param_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why `{tenant.KEY}` could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    #[error("tenant `{tenant}` has no `{key}` (used as `{{tenant.{key}}}`)")]
    Missing { tenant: String, key: String },
    #[error("`{{tenant.` is not closed by `}}`")]
    Unclosed,
}

const OPEN: &str = "{tenant.";

/// Whether `text` uses `{tenant.…}`.
pub fn uses_tenant(text: &str) -> bool {
    text.contains(OPEN)
}

/// `text` with each `{tenant.KEY}` replaced by the tenant's value; `{tenant.id}` is the
/// tenant's id unless the tenant has a value called `id`.
pub fn fill(text: &str, id: &str, values: &BTreeMap<String, String>) -> Result<String, FillError> {
    if !uses_tenant(text) {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let end = after.find('}').ok_or(FillError::Unclosed)?;
        let key = &after[..end];
        match values.get(key) {
            Some(value) => out.push_str(value),
            None if key == "id" => out.push_str(id),
            None => {
                return Err(FillError::Missing {
                    tenant: id.to_owned(),
                    key: key.to_owned(),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// [`fill`] in every string of a JSON value (keys are left alone).
pub fn fill_value(
    value: &Value,
    id: &str,
    values: &BTreeMap<String, String>,
) -> Result<Value, FillError> {
    Ok(match value {
        Value::String(s) => Value::String(fill(s, id, values)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill_value(v, id, values))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), fill_value(v, id, values)?)))
                .collect::<Result<_, FillError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        [("token".to_owned(), "t-1".to_owned())]
            .into_iter()
            .collect()
    }

    #[test]
    fn fills_values_and_the_id() {
        assert_eq!(
            fill("Bearer {tenant.token} for {tenant.id}", "acme", &values()).unwrap(),
            "Bearer t-1 for acme"
        );
        assert_eq!(
            fill("{tenant.nope}", "acme", &values()),
            Err(FillError::Missing {
                tenant: "acme".into(),
                key: "nope".into()
            })
        );
        assert_eq!(
            fill("{tenant.token", "acme", &values()),
            Err(FillError::Unclosed)
        );
        assert_eq!(
            fill("{shop} plain", "acme", &values()).unwrap(),
            "{shop} plain"
        );
    }

    #[test]
    fn patterns_match_whole_segments_with_safe_values() {
        let p = PathPattern::parse("/hooks/shopee/{shop}").unwrap().unwrap();
        assert_eq!(p.params().collect::<Vec<_>>(), ["shop"]);
        assert_eq!(
            p.matches("/hooks/shopee/acme"),
            Some(vec![("shop".into(), "acme".into())])
        );
        for miss in [
            "/hooks/shopee",
            "/hooks/shopee/",
            "/hooks/shopee/acme/x",
            "/hooks/tiktok/acme",
            "/hooks/shopee/a%20b",
            "/hooks/shopee/..",
        ] {
            assert_eq!(p.matches(miss), None, "{miss}");
        }
        assert_eq!(PathPattern::parse("/hooks/plain").unwrap(), None);
        assert!(PathPattern::parse("/hooks/x{shop}").is_err());
        assert!(PathPattern::parse("/hooks/{1x}").is_err());
        assert!(PathPattern::parse("/hooks/{a}/{a}").is_err());
    }

    #[test]
    fn ids_are_bounded_and_plain() {
        assert!(valid_id("acme-01.id_x"));
        for bad in ["", "a b", "a/b", "..", &"x".repeat(65), "ü"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
