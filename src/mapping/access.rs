//! Reading a value at a compiled JSONPath, on the hot path.
//!
//! Owns what a mapping field makes of a path's matches: the one node of a singular path
//! (borrowed), or the array of every match of any other. The walking itself — directly over the
//! value for names, indexes and wildcards, through the engine otherwise — is `JsonPath`'s.

use std::borrow::Cow;

use serde_json::Value;

use crate::jsonpath::JsonPath;
use crate::jsonpath::{Budget, Exceeded};

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
    /// absent), the array of all matches for a non-singular one (possibly empty). The
    /// matches are counted against `budget` as output before they are copied.
    pub(crate) fn get<'a>(
        &self,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Option<Cow<'a, Value>>, Exceeded> {
        if !self.is_many() {
            return Ok(self.get_one(root).map(Cow::Borrowed));
        }
        let found = self.get_all(root, budget)?;
        let mut items = Vec::with_capacity(found.len());
        for v in found {
            budget.output(v)?;
            items.push(v.clone());
        }
        Ok(Some(Cow::Owned(Value::Array(items))))
    }

    /// The first node the path selects (for singular paths, which need no budget).
    pub(crate) fn get_one<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.path.first(root)
    }

    /// Every node the path selects, in document order, within `budget`.
    pub(crate) fn get_all<'a>(
        &self,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Vec<&'a Value>, Exceeded> {
        self.path.query_within(root, budget)
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
            let got = a.get(&rec, &mut Budget::default()).unwrap();
            assert_eq!(got.map(Cow::into_owned), want, "{src}");
        }
    }

    #[test]
    fn copies_of_matches_are_counted_before_they_are_made() {
        // Each `a` holds the next: `$..a` copies the tail of the chain once per level.
        let mut rec = json!("end");
        for _ in 0..50 {
            rec = json!({"a": rec, "pad": "x".repeat(100)});
        }
        let a = Access::new(JsonPath::parse("$..a").unwrap());
        let mut budget = Budget::new(crate::mapping::Limits {
            output_bytes: 20_000,
            ..Default::default()
        });
        assert_eq!(
            a.get(&rec, &mut budget).map(|_| ()),
            Err(Exceeded::Output(20_000))
        );
        // Without the limit the same read is about 50 * 25 * 110 bytes.
        assert!(a.get(&rec, &mut Budget::default()).is_ok());
    }
}
