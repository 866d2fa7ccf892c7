//! The evaluator of every JSONPath that is not plain names, indexes and wildcards: descendant
//! segments, filters, slices, several selectors in a bracket.
//!
//! Owns a syntax tree of RFC 9535 queries ([`Query`]), read from text the `serde_json_path`
//! engine has already accepted (so reading needs to be right about valid queries only), and
//! evaluating it against a [`Budget`]: every node selected or passed over is counted, so a
//! query such as `$..*..*..*`, whose node list grows with the cube of a document's depth,
//! fails with [`Exceeded`] instead of allocating gigabytes; patterns of `match()`/`search()`
//! that come from the data are compiled within the budget's regex limits and reused.
//! Semantics follow the engine exactly (the compliance suite and unit tests compare them),
//! including its comparison of numbers as `f64`.
//!
//! Reading is `parse.rs` and evaluating `eval.rs`; this file holds the tree they share.

mod eval;
mod parse;

use serde_json::Value;

use super::budget::{Budget, Exceeded};
use super::reader::Reader;
use eval::Cx;
use parse::parse_query;

/// A query: `$…` from the root or `@…` from the current node of a filter.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    relative: bool,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug)]
struct Segment {
    descendant: bool,
    selectors: Vec<Selector>,
}

#[derive(Clone, Debug)]
enum Selector {
    Name(String),
    Index(i64),
    Wildcard,
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
    Filter(Box<Or>),
}

/// `a || b || …` of `a && b && …`.
type Or = Vec<Vec<Basic>>;

#[derive(Clone, Debug)]
enum Basic {
    Paren {
        not: bool,
        expr: Or,
    },
    Compare {
        left: Operand,
        op: Op,
        right: Operand,
    },
    Exists {
        not: bool,
        query: Query,
    },
    Test {
        not: bool,
        func: Func,
    },
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
enum Operand {
    Literal(Value),
    Query(Query),
    Func(Func),
}

#[derive(Clone, Debug)]
enum Func {
    Length(Box<Operand>),
    Count(Query),
    Value(Query),
    /// `match()` (`whole`) or `search()`; a literal pattern is compiled once, at load.
    Regex {
        whole: bool,
        value: Box<Operand>,
        pattern: Pattern,
    },
}

#[derive(Clone, Debug)]
enum Pattern {
    /// A literal, compiled; `None` if it is not a regular expression (it matches nothing).
    Compiled(Option<regex::Regex>),
    /// Read from the data for each candidate.
    Data(Box<Operand>),
}

/// Why a valid query could not be read: a literal pattern over the regex limits, or (never,
/// if this reader is right) a form it does not know.
pub(crate) enum ParseProblem {
    Unknown(usize),
    Regex(Exceeded),
}

impl Query {
    /// Reads `src`, which the engine has accepted.
    pub(crate) fn parse(src: &str) -> Result<Query, ParseProblem> {
        let mut r = Reader {
            s: src.as_bytes(),
            src,
            i: 0,
        };
        let q = parse_query(&mut r)?;
        r.blanks();
        if r.peek().is_some() {
            return Err(ParseProblem::Unknown(r.i));
        }
        Ok(q)
    }

    /// Every node selected, in RFC 9535 order, counting each against `budget`.
    pub(crate) fn run<'a>(
        &self,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Vec<&'a Value>, Exceeded> {
        Cx { root, budget }.query(self, root)
    }
}
