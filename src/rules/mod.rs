//! Business rules in Rhai: compiling scripts and expressions once, running them per event.
//!
//! This module is the only place a `rhai::Engine` is built ([`engine::build`]) and the only one
//! that knows Rhai's types: callers hand in `serde_json::Value`s and get `Value`s back. It owns
//! the sandbox and its limits, the JSON <-> Rhai conversion ([`convert`]), the functions scripts
//! get on top of Rhai's standard library ([`functions`]; hashing and encoding in `digest`) and
//! the state handles `customers`, `stock` and `kv` ([`handles`], thin wrappers over
//! `crate::state`). It must not do IO of its
//! own, know about YAML, HTTP or tokio, or re-parse anything per event.
//!
//! Compile once, run many: [`Rules::compile_script`] and [`Rules::compile_expr`] parse and
//! optimise at load time (collecting which of `event`, `customers`, `stock`, `kv` the code
//! names), and [`Script::run`] / [`Expr::eval_bool`] evaluate the kept AST with a fresh scope
//! per event. Only what the code names is put in that scope: `event.body` in particular is a
//! full copy of the body, built only for code that reads `event`.
//!
//! The jobs are one file each: [`Rules`] compiles (here), [`Script`] (`script.rs`) and [`Expr`]
//! (`expr.rs`) run, and `scope.rs` builds the scope an evaluation sees.
//!
//! What a script sees is documented for integrators in `docs/rules.md`.

mod condition;
pub mod convert;
mod decisions;
mod digest;
pub mod engine;
mod error;
mod expr;
mod functions;
mod handles;
mod reads;
mod scope;
mod script;
mod writes;

use reads::Reads;
use scope::Uses;
use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Scope};
use serde_json::Value;

pub use decisions::{push_name, Decided, Decision, MAX_DECISIONS};
pub use engine::Limits;
pub use error::{RuleError, RunError};
pub use expr::Expr;
pub use scope::{PARAM_HEADER_PREFIX, TENANT_HEADER};
pub use script::Script;
pub use writes::{Written, WrittenValue};

use crate::state::StateStore;

/// The sandboxed engine, shared by every compiled script and expression (cheap to clone).
#[derive(Clone)]
pub struct Rules {
    /// Runs scripts.
    engine: Arc<Engine>,
    /// Runs expressions (`when`, `filter`, `set`/`fetch` values, mapping `expr:`): the same
    /// engine without Rhai's fast operators, so that comparing a string with a number is an
    /// error instead of a quiet `false` (`functions::register_mixed_comparisons`). Operators
    /// cost about twice as much that way (measured on a loop of comparisons, debug build), which
    /// a one-line condition does not notice and an operator-heavy script would.
    strict: Arc<Engine>,
    limits: Arc<Limits>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::new(Limits::default())
    }
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("limits", &self.limits)
            .finish()
    }
}

/// What an event looks like to a script (`event` in scope).
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub id: String,
    pub pipeline: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// RFC 3339.
    pub received_at: String,
    /// The body as received.
    pub body: Arc<Value>,
}

/// Everything a script or pipeline expression runs against besides `record`.
pub struct Ctx<'a> {
    pub event: &'a EventInfo,
    pub state: &'a Arc<dyn StateStore>,
}

/// Names a pipeline script may use.
const SCRIPT_NAMES: [&str; 5] = ["record", "event", "customers", "stock", "kv"];
/// Names [`Rules::compile_expr`] accepts: the script names and the mapping name `value`, so
/// one call compiles both kinds; which ones an evaluation may use is checked when it runs.
const EXPR_NAMES: [&str; 6] = ["record", "event", "customers", "stock", "kv", "value"];
/// Names a mapping `expr:` may use.
const FIELD_NAMES: [&str; 2] = ["value", "record"];

/// A scope that declares `names` for strict-variables compilation. The values are unit and the
/// variables are not constants, so the optimiser cannot fold a placeholder into the AST.
fn declare(names: &[&str]) -> Scope<'static> {
    let mut scope = Scope::new();
    for name in names {
        scope.push_dynamic(*name, Dynamic::UNIT);
    }
    scope
}

impl Rules {
    /// An engine with these limits.
    pub fn new(limits: Limits) -> Rules {
        let mut strict = engine::build(&limits);
        strict.set_fast_operators(false);
        Rules {
            engine: Arc::new(engine::build(&limits)),
            strict: Arc::new(strict),
            limits: Arc::new(limits),
        }
    }

    /// The limits every evaluation runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compile a script file. `name` is its name for logs (`debug` output carries it).
    pub fn compile_script(&self, name: &str, src: &str) -> Result<Script, RuleError> {
        let scope = declare(&SCRIPT_NAMES);
        let mut ast = self
            .engine
            .compile_with_scope(&scope, src)
            .map_err(|e| RuleError::from_parse(&e))?;
        ast.set_source(name);
        decisions::refuse_reserved(&ast)?;
        let reads = Reads::of(&ast);
        Ok(Script {
            name: name.to_string(),
            recording: decisions::recording(&self.engine, &scope, &ast, name, src).map(Arc::new),
            uses: Uses::of(&ast, reads.event_body),
            writes: writes::of(&ast, src),
            reads,
            ast: Arc::new(ast),
        })
    }

    /// Compile an expression: a pipeline condition or value (`trigger.when`, `filter`,
    /// `switch`, `set`; evaluated with [`Expr::eval_bool`] / [`Expr::eval_value`], sees `record`,
    /// `event` and the state handles) or a mapping `expr:` (evaluated with [`Expr::eval_field`],
    /// sees `value` and `record`). Names outside both sets are compile errors; a name of the
    /// other kind is refused when the expression is evaluated. Prefer
    /// [`Rules::compile_field_expr`] for mapping expressions: it refuses `event` and the state
    /// handles at compile time.
    pub fn compile_expr(&self, src: &str) -> Result<Expr, RuleError> {
        self.expr(src, &EXPR_NAMES)
    }

    /// Compile a mapping `expr:` transform: sees only `value` (the field's source value) and
    /// `record` (the mapping's input). Use [`Expr::eval_field`] to run it.
    pub fn compile_field_expr(&self, src: &str) -> Result<Expr, RuleError> {
        self.expr(src, &FIELD_NAMES)
    }

    fn expr(&self, src: &str, names: &[&str]) -> Result<Expr, RuleError> {
        let ast = self
            .engine
            .compile_expression_with_scope(&declare(names), src)
            .map_err(|e| RuleError::from_parse(&e))?;
        let reads = Reads::of(&ast);
        Ok(Expr {
            uses: Uses::of(&ast, reads.event_body),
            reads,
            ast: Arc::new(ast),
            fast: condition::Condition::compile(src),
            src: src.into(),
        })
    }

    fn run_error(&self, err: rhai::EvalAltResult) -> RunError {
        RunError::from_eval(err, &self.limits)
    }
}

/// What a script reads of `record` (`None`: all of it), for tests of what is built on it.
#[cfg(test)]
pub(crate) fn record_reads_of(src: &str) -> Option<Vec<crate::projection::Read>> {
    let ast = engine::build(&Limits::default())
        .compile_with_scope(&declare(&SCRIPT_NAMES), src)
        .unwrap_or_else(|e| panic!("{src}: {e}"));
    Reads::of(&ast).record
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
