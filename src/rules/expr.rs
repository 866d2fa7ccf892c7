//! A compiled expression ([`Expr`]): a pipeline condition or value, or a mapping `expr:`;
//! evaluating it, through the simple-condition fast path when it has one. It must not compile
//! (that is [`Rules::compile_expr`]) or build the scope itself (that is `scope`).

use std::sync::Arc;

use rhai::{Dynamic, Scope, AST};
use serde_json::Value;

use super::engine::Deadline;
use super::reads::Reads;
use super::scope::{pipeline_scope, projected_record, to_json, Uses};
use super::{condition, convert, functions, Ctx, Rules, RunError};
use crate::projection::{Need, Read};

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    pub(super) ast: Arc<AST>,
    pub(super) uses: Uses,
    /// What the expression reads of `record`: only that is converted.
    pub(super) reads: Reads,
    /// The same expression answered without Rhai, when it is a simple condition.
    pub(super) fast: Option<condition::Condition>,
    /// The text it was compiled from, for an event's explanation to quote.
    pub(super) src: Arc<str>,
}

impl Expr {
    /// Adds what the code reads of `record` to `need` (a flow works out from its steps what
    /// it reads of a body).
    pub fn add_reads_to(&self, need: &mut Need) {
        need.add_reads(self.reads.record.as_deref());
    }

    /// Whether the code reads the body through `event` (`event.body`, or `event` whole).
    pub fn reads_event_body(&self) -> bool {
        self.reads.event_body
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// What it reads of `record`, in the order it names them; `None` when it needs all of it.
    pub fn record_reads(&self) -> Option<&[Read]> {
        self.reads.record.as_deref()
    }

    /// `record` as the expression sees it: only the fields it names.
    fn record(&self, record: &Value) -> Result<Dynamic, RunError> {
        projected_record(record, &self.reads.need)
    }

    fn eval(&self, rules: &Rules, scope: &mut Scope) -> Result<Dynamic, RunError> {
        let _deadline = Deadline::start(rules.limits.timeout);
        rules
            .strict
            .eval_ast_with_scope::<Dynamic>(scope, &self.ast)
            .map_err(|e| rules.run_error(*e))
    }

    fn pipeline_eval(&self, rules: &Rules, record: &Value, ctx: &Ctx) -> Result<Dynamic, RunError> {
        if self.uses.value {
            return Err(RunError::plain(
                "`value` exists only in mapping `expr:` transforms; pipeline expressions use `record`",
            ));
        }
        let mut scope = pipeline_scope(self.record(record)?, self.uses, ctx)?;
        self.eval(rules, &mut scope)
    }

    /// Evaluate a condition; anything but a bool is an error.
    pub fn eval_bool(&self, rules: &Rules, record: &Value, ctx: &Ctx) -> Result<bool, RunError> {
        if let Some(answer) = self.fast.as_ref().and_then(|c| c.eval(record)) {
            return Ok(answer);
        }
        self.eval_bool_with_rhai(rules, record, ctx)
    }

    pub(crate) fn eval_bool_with_rhai(
        &self,
        rules: &Rules,
        record: &Value,
        ctx: &Ctx,
    ) -> Result<bool, RunError> {
        let d = self.pipeline_eval(rules, record, ctx)?;
        d.as_bool().map_err(|_| {
            RunError::plain(format!(
                "expected true or false, got {}",
                functions::describe(&d)
            ))
        })
    }

    /// Evaluate to a JSON value.
    pub fn eval_value(&self, rules: &Rules, record: &Value, ctx: &Ctx) -> Result<Value, RunError> {
        let d = self.pipeline_eval(rules, record, ctx)?;
        to_json(&d, "result")
    }

    /// For mapping `expr:` transforms: pure, no state/event. Scope has `value` (the field's
    /// source value, () if none) and `record` (the mapping input).
    ///
    /// Meant for expressions from [`Rules::compile_field_expr`]; an expression from
    /// [`Rules::compile_expr`] that names `event` or a state handle is refused here.
    pub fn eval_field(
        &self,
        rules: &Rules,
        value: Option<&Value>,
        record: &Value,
    ) -> Result<Value, RunError> {
        if self.uses.any_context() {
            return Err(RunError::plain(
                "mapping expressions cannot use `event`, `customers`, `stock` or `kv`",
            ));
        }
        let mut scope = Scope::new();
        let value = match value {
            Some(v) => {
                convert::json_to_dynamic(v).map_err(|e| RunError::plain(format!("value: {e}")))?
            }
            None => Dynamic::UNIT,
        };
        scope.push_dynamic("value", value);
        scope.push_dynamic("record", self.record(record)?);
        let d = self.eval(rules, &mut scope)?;
        to_json(&d, "result")
    }
}
