//! Field mappings: `mappings/<name>.yaml` turned into a function from one JSON record to
//! another.
//!
//! Owns the mapping language (docs/mappings.md is its reference): the serde model of a file
//! ([`spec`]), its compilation into an immutable [`Mapping`] that reports every problem at
//! once as [`MappingIssue`]s located in the YAML ([`compile`]), and applying a mapping to a
//! record ([`Mapping::apply`]), which fails with a [`MappingError`] naming the mapping, the
//! field, the JSONPath and the value found.
//!
//! Data enters as an already parsed `MappingFile` (the config loader reads the YAML) and a
//! `serde_json::Value` record; it leaves as a new `Value`. This module is pure: no IO, no
//! async, no logging, no YAML library. Everything is parsed at load — JSONPaths, templates,
//! lookups, dotted targets, inline Rhai (through `crate::rules`) — so applying a mapping
//! parses nothing.
//!
//! Layout: `spec` (file model), `compile` (checks, builds the plan), `plan` (the plan and the
//! hot path), `access` (reading a path), `convert` (types, transforms), `template`, `error`,
//! `budget` (what one application may spend); `jsonpath` is the RFC 9535 engine, `query` its
//! evaluator for queries beyond names, indexes and wildcards.

mod access;
mod compile;
mod convert;
mod error;
mod plan;
mod rfc2822;
pub mod spec;
mod template;

pub use crate::jsonpath::{Budget, Exceeded, Limits};
pub use compile::compile;
pub use convert::{FieldType, Transform};
pub use error::{FieldProblem, MappingError, MappingIssue};
pub use plan::Mapping;
pub use spec::{FieldDef, FieldSpec, MappingFile};

/// The rules engine the unit tests compile and run `expr`s with.
#[cfg(test)]
pub(crate) fn test_rules() -> crate::rules::Rules {
    crate::rules::Rules::default()
}
