//! Reading a value at a compiled JSONPath, on the hot path.
//!
//! Owns the choice, made once at load, of how a path is evaluated: a path made only of names
//! and indexes (`$.billing_address.email`, `$.products[0].sku`, nearly every mapping source)
//! is walked step by step like hand-written `value["a"]["b"]` code, with no allocation; any
//! other path goes through the JSONPath engine. Results borrow from the input.

use std::borrow::Cow;

use serde_json::Value;

use super::jsonpath::{JsonPath, Segment};

#[derive(Clone, Debug)]
pub(crate) struct Access {
    path: JsonPath,
    how: How,
}

#[derive(Clone, Debug)]
enum How {
    /// Names and indexes only; a negative index counts from the end (RFC 9535).
    Steps(Box<[Segment]>),
    /// `<names and indexes>[*]` (`$.products[*]`, the usual `each`): every element of the
    /// array (or member value of the object) there, without the engine.
    StepsThenAll(Box<[Segment]>),
    /// Selects at most one node, but needs the engine (e.g. `$['a b']` forms it does not
    /// expose as segments).
    Singular,
    /// May select several nodes: the result is the array of matches.
    Many,
}

impl Access {
    pub(crate) fn new(path: JsonPath) -> Access {
        let how = match path.segments() {
            Some(segs) => How::Steps(segs.into()),
            None if path.is_singular() => How::Singular,
            None => match wildcard_parent(path.as_str()) {
                Some(segs) => How::StepsThenAll(segs),
                None => How::Many,
            },
        };
        Access { path, how }
    }

    pub(crate) fn path(&self) -> &JsonPath {
        &self.path
    }

    pub(crate) fn is_many(&self) -> bool {
        matches!(self.how, How::Many | How::StepsThenAll(_))
    }

    /// The value a field reads: the one node for a singular path (borrowed; `None` when
    /// absent), the array of all matches for a non-singular one (possibly empty).
    pub(crate) fn get<'a>(&self, root: &'a Value) -> Option<Cow<'a, Value>> {
        match &self.how {
            How::Many | How::StepsThenAll(_) => Some(Cow::Owned(Value::Array(
                self.get_all(root).into_iter().cloned().collect(),
            ))),
            _ => self.get_one(root).map(Cow::Borrowed),
        }
    }

    /// The first node the path selects.
    pub(crate) fn get_one<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        match &self.how {
            How::Steps(steps) => walk(root, steps),
            How::StepsThenAll(_) => self.get_all(root).into_iter().next(),
            How::Singular | How::Many => self.path.first(root),
        }
    }

    /// Every node the path selects, in document order.
    pub(crate) fn get_all<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        match &self.how {
            How::Steps(steps) => walk(root, steps).into_iter().collect(),
            How::StepsThenAll(steps) => match walk(root, steps) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(Value::Object(members)) => members.values().collect(),
                _ => Vec::new(),
            },
            How::Singular | How::Many => self.path.query(root),
        }
    }
}

/// The steps before a final `[*]` or `.*`, when they are only names and indexes.
fn wildcard_parent(src: &str) -> Option<Box<[Segment]>> {
    let parent = src.strip_suffix("[*]").or_else(|| src.strip_suffix(".*"))?;
    let parent = JsonPath::parse(parent).ok()?;
    parent.segments().map(Into::into)
}

fn walk<'a>(mut v: &'a Value, steps: &[Segment]) -> Option<&'a Value> {
    for step in steps {
        v = match step {
            Segment::Name(name) => v.as_object()?.get(name.as_str())?,
            Segment::Index(i) => {
                let items = v.as_array()?;
                let at = if *i < 0 {
                    items
                        .len()
                        .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
                } else {
                    usize::try_from(*i).ok()?
                };
                items.get(at)?
            }
        };
    }
    Some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_and_queries() {
        let rec = json!({"a": {"b": [10, 20, 30]}, "k": "v", "items": [{"s": 1}, {"s": 2}]});
        let cases = [
            ("$", Some(rec.clone())),
            ("$.k", Some(json!("v"))),
            ("$.a.b[0]", Some(json!(10))),
            ("$.a.b[-1]", Some(json!(30))),
            ("$.a.b[-4]", None),
            ("$.a.b[3]", None),
            ("$.k.x", None),
            ("$.nope", None),
            ("$.items[*].s", Some(json!([1, 2]))),
            ("$.nope[*]", Some(json!([]))),
            ("$.items[*]", Some(json!([{"s": 1}, {"s": 2}]))),
            ("$.a.*", Some(json!([[10, 20, 30]]))),
            ("$.k[*]", Some(json!([]))),
            ("$.items[*][*]", Some(json!([1, 2]))),
            ("$..s", Some(json!([1, 2]))),
        ];
        for (src, want) in cases {
            let a = Access::new(JsonPath::parse(src).unwrap());
            assert_eq!(a.get(&rec).map(Cow::into_owned), want, "{src}");
        }
    }
}
