//! Reading only what is read.
//!
//! Most flows start with a trigger and a `map`, which together read a handful of fields of a
//! body that may be kilobytes long; most scripts touch a few fields of the record. At compile
//! time we work out which fields (a [`Need`]): the flow parses a body skipping everything else,
//! and the rules module gives a script only those fields of the record and writes back only
//! those. Anything we cannot analyse — a filter in a JSONPath, `record` passed whole to a
//! function, `record` indexed by an expression, a use of `event.body` — makes the need `All`,
//! so the result is always the same as with the whole document for everything code can observe.
//!
//! Owns the analysis of JSONPaths (their steps as `jsonpath` parses them, in [`path`]), the
//! [`Need`] built from them and from the [`Read`]s the rules module finds in a script's AST
//! ([`need`]), parsing a body by it ([`parse`])
//! and checking a whole body ([`check`](mod@check)); knows nothing of flows or Rhai values.

mod check;
mod need;
mod parse;
mod path;

pub use check::{check, Kind};
pub use need::{Need, PathStep, Read};
pub use parse::{utf8, BodyParser};
pub use path::simple_path;

#[cfg(test)]
use serde_json::{Number, Value};

#[cfg(test)]
mod tests;
