//! A compiled script file ([`Script`]): what it reads and surely writes of `record`, and running
//! it on one record with only the fields it names crossing into Rhai. It must not compile
//! (that is [`Rules::compile_script`]) or build the scope itself (that is `scope`).

use std::sync::Arc;

use rhai::{Dynamic, AST};
use serde_json::Value;

use super::decisions::{Decided, Recording};
use super::engine::Deadline;
use super::reads::Reads;
use super::scope::{pipeline_scope, projected_record, to_json, Uses};
use super::{convert, Ctx, Rules, RunError, Written};
use crate::projection::{Need, Read};

/// A compiled script file.
#[derive(Debug, Clone)]
pub struct Script {
    pub(super) name: String,
    pub(super) ast: Arc<AST>,
    pub(super) uses: Uses,
    /// What the script reads (and so may write) of `record`: only that is converted.
    pub(super) reads: Reads,
    /// The fields it surely sets, for `check` against a target's schema.
    pub(super) writes: Vec<Written>,
    /// The compile that records its decisions, when it has an `if` (`decisions.rs`).
    pub(super) recording: Option<Arc<Recording>>,
}

impl Script {
    /// The name it was compiled with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds what the code reads of `record` to `need` (a flow works out from its steps what
    /// it reads of a body).
    pub fn add_reads_to(&self, need: &mut Need) {
        need.add_reads(self.reads.record.as_deref());
    }

    /// Whether the code reads the body through `event` (`event.body`, or `event` whole).
    pub fn reads_event_body(&self) -> bool {
        self.reads.event_body
    }

    /// The fields of `record` the script surely sets on every run (see `writes.rs`).
    pub fn writes(&self) -> &[Written] {
        &self.writes
    }

    /// The fields of `record` the script may change, as names from `record` down (a path
    /// ends where a name does not follow); `None` when it may change anything.
    pub fn touches(&self) -> Option<Vec<Vec<String>>> {
        let reads = self.reads.record.as_ref()?;
        Some(
            reads
                .iter()
                .map(|r| {
                    let (crate::projection::Read::Path(steps)
                    | crate::projection::Read::Presence(steps)) = r;
                    steps
                        .iter()
                        .map_while(|s| match s {
                            crate::projection::PathStep::Name(n) => Some(n.clone()),
                            crate::projection::PathStep::Elements => None,
                        })
                        .collect()
                })
                .collect(),
        )
    }

    /// What it reads of `record`, in the order it names them; `None` when it needs all of it.
    pub fn record_reads(&self) -> Option<&[Read]> {
        self.reads.record.as_deref()
    }

    /// Run the script on `record` and return the final value of `record`.
    ///
    /// Fields of `record` the script does not name are handed back untouched.
    pub fn run(&self, rules: &Rules, record: Value, ctx: &Ctx) -> Result<Value, RunError> {
        self.run_ast(rules, &self.ast, record, ctx)
    }

    /// [`Script::run`], recording which `if`s it evaluated, what their conditions read and
    /// what they came to: the decisions made before an error are kept too.
    pub fn run_explained(
        &self,
        rules: &Rules,
        record: Value,
        ctx: &Ctx,
    ) -> (Result<Value, RunError>, Decided) {
        let Some(recording) = &self.recording else {
            return (self.run(rules, record, ctx), Decided::default());
        };
        let recorded = recording.start();
        let result = self.run_ast(rules, &recording.ast, record, ctx);
        let decided = recorded.finish();
        // The recording source has calls inserted before the conditions: an error's column
        // is told as in the file.
        let result = result.map_err(|mut e| {
            if let (Some(line), Some(col)) = (e.line, e.col) {
                e.col = Some(recording.original_col(line, col));
            }
            e
        });
        (result, decided)
    }

    fn run_ast(
        &self,
        rules: &Rules,
        ast: &AST,
        mut record: Value,
        ctx: &Ctx,
    ) -> Result<Value, RunError> {
        // Give the script only the fields it names, and take back only those: the rest of a
        // large record never crosses into Rhai.
        let mut scope =
            pipeline_scope(projected_record(&record, &self.reads.need)?, self.uses, ctx)?;
        {
            let _deadline = Deadline::start(rules.limits.timeout);
            rules
                .engine
                .run_ast_with_scope(&mut scope, ast)
                .map_err(|e| rules.run_error(*e))?;
        }
        let out = scope
            .remove::<Dynamic>("record")
            .unwrap_or(Dynamic::UNIT)
            .flatten();
        if self.reads.need.is_all() {
            return to_json(&out, "record");
        }
        convert::write_back_dynamic(&self.reads.need, &mut record, &out)
            .map_err(|e| RunError::plain(format!("record: {e}")))?;
        Ok(record)
    }
}
