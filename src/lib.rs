//! crossdock: a declarative integration engine for commerce.
//!
//! Integrators describe in YAML how events from one system become calls on another, with
//! field mappings in JSONPath and business rules in Rhai. This crate is the whole engine; the
//! `crossdock` binary is a thin shell over [`cli`].
//!
//! # Layout
//!
//! The modules are drawn as future crate borders, and data flows down this list (the table in
//! docs/architecture.md, checked by `tests/architecture.rs`):
//!
//! - [`allocator`]: asking mimalloc to give back free memory on every thread. The only
//!   `unsafe` of the crate.
//! - [`config`]: reading a project folder; YAML with positions, `${VAR}`, diagnostics.
//!   The only module that knows YAML.
//! - [`jsonpath`]: RFC 9535 JSONPath, parsed once and evaluated within a budget. Pure: it uses
//!   no other module.
//! - [`projection`]: which fields code reads, to parse and convert only those.
//! - [`state`]: the store behind the `customers`, `stock` and `kv` script modules.
//! - [`rules`]: the sandboxed Rhai engine, scripts and expressions. The only module that
//!   builds a Rhai `Engine`.
//! - [`mapping`]: field mappings (inline expressions through [`rules`]). Pure: no IO, no async.
//! - [`connectors`]: the kinds of connector and what their operations need.
//! - [`verify`]: webhook signature schemes, over headers and bytes.
//! - [`flow`]: compiling a project into immutable flows and running an event through one.
//! - [`runtime`]: `crossdock run`: the live version, the durable inbox, workers, retries,
//!   dead letters, reloads.
//! - [`server`]: the HTTP surface over a runtime: webhooks, health, metrics, admin API.
//! - [`testing`]: pipeline test cases (`tests/pipelines/*.yaml`).
//! - [`schema`]: JSON Schemas of the project's files, from the types that read them.
//! - [`scaffold`]: the project templates of `crossdock init`.
//! - [`telemetry`]: OpenTelemetry traces of the engine's spans, sent over OTLP/HTTP.
//! - [`cli`]: the command line. The only module that prints.

pub mod allocator;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod flow;
pub mod jsonpath;
pub mod mapping;
pub mod projection;
pub mod rules;
pub mod runtime;
pub mod scaffold;
pub mod schema;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod testing;
pub mod verify;

/// What the fuzz targets in `fuzz/` need beyond the public API. Not an API: it may change
/// with any release.
#[doc(hidden)]
pub mod fuzzing {
    use std::borrow::Cow;

    /// A JSONPath as `jsonpath` hands it to the `serde_json_path` engine, so a
    /// target can ask the engine the same question.
    pub fn engine_text(src: &str) -> Cow<'_, str> {
        crate::jsonpath::upper_hex_escapes(src)
    }
}
