//! The one place YAML is read.
//!
//! Parses a YAML file into a `serde_json::Value` (the value model the whole engine uses) and,
//! in the same pass, a [`SpanIndex`] from every node's path to its line and column, then
//! interpolates `${VAR}` in string values. Typed config is deserialised from that value with
//! `serde_path_to_error`, so a type error or an unknown key comes back with the path of the
//! node, and the span index turns the path into `file:line:col`. Aliases are expanded here
//! too, within a bound on how many nodes they may copy (see `alias_limit`).
//!
//! Why not serde_yaml: it is deprecated upstream, and its `Value` keeps no positions, so a
//! second parser would be needed for spans anyway. yaml-rust2's event parser gives both.
//! A successor is a change to this folder only.//!
//! Reading text is here and in `build.rs` (the event receiver); typed deserialisation and its
//! diagnostics are `de.rs`.

mod build;
mod de;
#[cfg(test)]
mod tests;

use serde_json::Value;
use yaml_rust2::parser::Parser;

use super::env::EnvLookup;
use super::span::{PathSeg, Pos, SpanIndex};
use build::{pos, Builder};
pub use de::{diagnostic, from_doc, from_doc_at, DeError};

/// A parsed YAML document with positions.
#[derive(Debug, Default, Clone)]
pub struct Doc {
    pub value: Value,
    pub spans: SpanIndex,
    /// `${VAR}` references with VAR unset and no default: where they are and which variable.
    pub unset_vars: Vec<(Vec<PathSeg>, String, Pos)>,
    /// Values that came from the environment.
    pub secrets: Vec<String>,
}

/// A problem found while reading YAML: a syntax error, a duplicate key, a malformed `${`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub pos: Pos,
    pub message: String,
}

/// Parses `text`. Syntax errors stop the parse (one problem); everything else is collected.
pub fn parse(text: &str, env: EnvLookup<'_>) -> Result<(Doc, Vec<YamlProblem>), YamlProblem> {
    let mut builder = Builder {
        env: Some(env),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(YamlProblem {
            pos: pos(m),
            message: format!("YAML syntax: {}", e.info()),
        });
    }
    if let Some(p) = builder.fatal.take() {
        return Err(p);
    }
    let value = builder.root.take().unwrap_or(Value::Null);
    Ok((
        Doc {
            value,
            spans: builder.spans,
            unset_vars: builder.unset_vars,
            secrets: builder.secrets,
        },
        builder.problems,
    ))
}

/// Aliases may copy this many times the nodes a file has of its own...
pub const ALIAS_FACTOR: usize = 4;
/// ...but always this many...
pub const ALIAS_FLOOR: usize = 10_000;
/// ...and never more than this many, whatever the file's size (about a hundred megabytes of
/// values at most).
pub const ALIAS_CAP: usize = 1_000_000;

/// How many nodes aliases may copy into a file that has `own` nodes of its own so far. Own
/// nodes so far, not in the whole file: an anchor comes before its aliases, so what an alias
/// copies is always measured against text already read.
fn alias_limit(own: usize) -> usize {
    own.saturating_mul(ALIAS_FACTOR)
        .clamp(ALIAS_FLOOR, ALIAS_CAP)
}
