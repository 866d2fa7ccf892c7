//! Reading a value at a compiled JSONPath, on the hot path.
//!
//! Owns what a mapping field makes of a path's matches: the one node of a singular path
//! (borrowed), or the array of every match of any other. The walking itself — directly over the
//! value for names, indexes and wildcards, through the engine otherwise — is `JsonPath`'s.

use std::borrow::Cow;

use serde_json::Value;

use super::jsonpath::JsonPath;

#[derive(Clone, Debug)]
pub(crate) struct Access {
    path: JsonPath,
}

impl Access {
    pub(crate) fn new(path: JsonPath) -> Access {
        Access { path }
    }

    pub(crate) fn path(&self) -> &JsonPath {
        &self.path
    }

    pub(crate) fn is_many(&self) -> bool {
        !self.path.is_singular()
    }

    /// The value a field reads: the one node for a singular path (borrowed; `None` when
    /// absent), the array of all matches for a non-singular one (possibly empty).
    pub(crate) fn get<'a>(&self, root: &'a Value) -> Option<Cow<'a, Value>> {
        if self.is_many() {
            Some(Cow::Owned(Value::Array(
                self.get_all(root).into_iter().cloned().collect(),
            )))
        } else {
            self.get_one(root).map(Cow::Borrowed)
        }
    }

    /// The first node the path selects.
    pub(crate) fn get_one<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.path.first(root)
    }

    /// Every node the path selects, in document order.
    pub(crate) fn get_all<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        self.path.query(root)
    }
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
