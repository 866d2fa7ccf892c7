//! JSONPath (RFC 9535): compiled once at load, evaluated many times on the hot path.
//!
//! Owns the one JSONPath type the engine uses ([`JsonPath`]), its parse errors with a byte
//! offset for the caret ([`JsonPathError`]), and the choice of how a path is evaluated.
//! Validation belongs to the `serde_json_path` crate, which passes the whole RFC 9535
//! compliance suite (`tests/jsonpath_cts.rs`); see `docs/jsonpath.md` for why that crate and
//! not `jsonpath-rust`. Every query that is not "simple" is then read again into our own tree
//! and evaluated by `query`, which counts the nodes it visits against a [`Budget`]
//! (the crate's evaluator has no limit: `$..*..*..*` over a 1.4 KB body took gigabytes).
//!
//! On top of the engine sits a fast path, chosen in [`JsonPath::parse`]: a query made only
//! of child segments with one name, one index or a wildcard (`$.billing_address.email`,
//! `$.products[0].sku`, `$['a b']`, `$.products[*].sku`) is walked directly over the
//! `serde_json::Value`, which is several times faster than the engine and allocates nothing
//! for singular queries. The fast path only ever sees queries the engine has accepted, so the
//! two cannot disagree on what is valid, and unit tests check they agree on results.
//!
//! Before the engine sees a query, its bracket and parenthesis nesting is bounded: the
//! engine's parser recurses on nesting (a stack overflow for thousands of levels) and its
//! time doubles with every filter nested in a filter.
//!
//! This module is pure: no IO, no logging, no panics reachable from input. Results borrow
//! from the queried document, so numbers keep every digit (serde_json's
//! `arbitrary_precision`). Filter comparisons of numbers are the engine's, made in `f64`:
//! integers beyond 2^53 that differ only in their last digits compare equal in a filter.

use std::fmt;

use serde_json::Value;

mod budget;
mod nesting;
mod query;
mod reader;
mod simple;

pub use self::budget::{Budget, Exceeded, Limits};
use self::nesting::check_nesting;
pub(crate) use self::nesting::upper_hex_escapes;
use self::query::{ParseProblem, Query};
use self::simple::{as_segments, parse_simple, walk, walk_simple};

/// A compiled JSONPath query. Cheap to query, `Send + Sync`, cloneable.
#[derive(Clone, Debug)]
pub struct JsonPath {
    src: String,
    plan: Plan,
}

/// A JSONPath that is not valid RFC 9535, or that nests too deep. The message says what is
/// wrong at `offset`, not which path: callers name the path and where it was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct JsonPathError {
    pub message: String,
    /// Byte offset into the source where the problem is (0 if unknown).
    pub offset: usize,
}

/// One step of a singular query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A member name, unescaped: `$['a b']` gives `Name("a b")`.
    Name(String),
    /// An array index; negative counts from the end (`-1` is the last element).
    Index(i64),
}

#[derive(Clone, Debug)]
enum Plan {
    /// Names and indexes only: at most one node; `first` walks it without allocating.
    Singular(Vec<Segment>),
    /// Names, indexes and at least one wildcard, walked directly.
    Simple(Vec<Step>),
    /// Everything else: filters, slices, descendants, several selectors in one bracket.
    Tree(Box<Query>),
}

#[derive(Clone, Debug)]
enum Step {
    Child(Segment),
    Wildcard,
}

impl JsonPath {
    /// Parses and compiles `src`. All parsing happens here; queries never parse again.
    pub fn parse(src: &str) -> Result<JsonPath, JsonPathError> {
        check_nesting(src)?;
        serde_json_path::JsonPath::parse(&upper_hex_escapes(src)).map_err(|e| JsonPathError {
            message: e.message().to_owned(),
            offset: e.position().min(src.len()),
        })?;
        let plan = match parse_simple(src) {
            None => Plan::Tree(Box::new(Query::parse(src).map_err(|p| match p {
                ParseProblem::Regex(e) => JsonPathError {
                    message: e.to_string(),
                    offset: 0,
                },
                ParseProblem::Unknown(offset) => JsonPathError {
                    message: "a query the evaluator cannot read".into(),
                    offset: offset.min(src.len()),
                },
            })?)),
            Some(steps) => match as_segments(&steps) {
                Some(segs) => Plan::Singular(segs),
                None => Plan::Simple(steps),
            },
        };
        Ok(JsonPath {
            src: src.to_owned(),
            plan,
        })
    }

    /// The source text, as written.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// Whether this is an RFC 9535 singular query: only child segments with one name or one
    /// index each. Such a query selects at most one node.
    pub fn is_singular(&self) -> bool {
        matches!(self.plan, Plan::Singular(_))
    }

    /// Every node the query selects, in the order RFC 9535 defines, with no budget: for
    /// documents bounded some other way. A pattern from the data that compiles to more than
    /// 10 MB (where the engine's `regex` stops too) makes the result empty.
    pub fn query<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        match &self.plan {
            Plan::Singular(segs) => walk(root, segs).into_iter().collect(),
            Plan::Simple(steps) => walk_simple(root, steps),
            Plan::Tree(q) => q.run(root, &mut Budget::unlimited()).unwrap_or_default(),
        }
    }

    /// The first node the query selects, with no budget (see [`JsonPath::query`]).
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        match &self.plan {
            Plan::Singular(segs) => walk(root, segs),
            Plan::Simple(steps) => walk_simple(root, steps).into_iter().next(),
            Plan::Tree(_) => self.query(root).into_iter().next(),
        }
    }

    /// [`JsonPath::query`] within `budget`. Names, indexes and wildcards alone select at
    /// most every node of the document once per step and are not counted; the other
    /// queries count every node they select or pass over (filter candidates, descendants,
    /// the nodes of queries inside filters) and fail once the budget is spent.
    pub fn query_within<'a>(
        &self,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Vec<&'a Value>, Exceeded> {
        match &self.plan {
            Plan::Singular(segs) => Ok(walk(root, segs).into_iter().collect()),
            Plan::Simple(steps) => Ok(walk_simple(root, steps)),
            Plan::Tree(q) => q.run(root, budget),
        }
    }

    /// For singular queries: the path as segments, so callers can write at or project by
    /// it (`$` gives an empty slice). `None` for any other query.
    pub fn segments(&self) -> Option<&[Segment]> {
        match &self.plan {
            Plan::Singular(segs) => Some(segs),
            Plan::Simple(_) | Plan::Tree(_) => None,
        }
    }

    /// For queries of names, indexes and wildcards alone (`$.items[*].sku`): each step, a
    /// wildcard as `None`, so callers can tell which fields the query reads. `None` for any
    /// other query (filters, slices, descendants, several selectors in one bracket).
    pub fn simple_steps(&self) -> Option<Vec<Option<&Segment>>> {
        match &self.plan {
            Plan::Singular(segs) => Some(segs.iter().map(Some).collect()),
            Plan::Simple(steps) => Some(
                steps
                    .iter()
                    .map(|s| match s {
                        Step::Child(seg) => Some(seg),
                        Step::Wildcard => None,
                    })
                    .collect(),
            ),
            Plan::Tree(_) => None,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}

#[cfg(test)]
pub(crate) mod tests;
