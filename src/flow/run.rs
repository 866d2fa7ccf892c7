//! Running one event through a compiled flow.
//!
//! The record starts as the event body, shared rather than copied: most flows begin with a
//! `map`, which only reads it, so the body is cloned only if a step needs to own it.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use crate::rules::{Ctx, EventInfo, Rules};
use crate::state::StateStore;

use super::explain::{self, Explanation, Watched, What};
use super::record::kind_of;
use super::{
    Action, Arm, Fetch, FieldPath, Flow, Keep, Outcome, RunOptions, SendStep, SetValue, Step,
    StepError, Undo,
};

/// Why a step could not make a value (of a `set`, a fetch's `params`) or a `send`'s payload;
/// the step's label is added when it becomes a [`StepError`].
#[derive(Debug, thiserror::Error)]
enum ValueError {
    #[error(transparent)]
    Expr(#[from] crate::rules::RunError),
    #[error("{path}: {exceeded}")]
    OverBudget {
        path: String,
        exceeded: crate::mapping::Exceeded,
    },
    #[error("payload {0} matched nothing in the record")]
    NoPayload(String),
}

/// Where control goes after a step.
enum Next {
    Continue,
    /// A filter dropped the event.
    Stop,
}

struct Run<'a> {
    rules: &'a Rules,
    ctx: Ctx<'a>,
    actions: Vec<Action>,
    fetch: &'a dyn Fetch,
    /// Set when a fetch failed in a way worth retrying (with the server's Retry-After).
    retry: Option<Option<std::time::Duration>>,
    /// The labels of the steps that ran, in order.
    steps: Vec<Arc<str>>,
    /// What the caller keeps: whether closing sends may move their payloads.
    keep: Keep,
    /// The payloads moved out of the record, for [`Keep::Lent`].
    lent: Vec<(usize, Arc<[String]>)>,
    /// An earlier record for the first `map` without `into` to build into
    /// ([`Mapping::apply_into`]).
    ///
    /// [`Mapping::apply_into`]: crate::mapping::Mapping::apply_into
    spare: Option<Value>,
    /// `#i` for each `each` step the running steps are inside (`#2#0`), empty at the top: it
    /// makes each element's actions distinct effects.
    scope: String,
    /// Compensations owed by the steps with `undo:` that ran.
    undo: Vec<Undo>,
    /// What the steps saw and did, when the caller asked ([`RunOptions::explain`]).
    explain: Option<Box<Explaining>>,
}

/// An explanation being written, and the state store that tells it what each step wrote.
struct Explaining {
    out: Explanation,
    watched: Arc<Watched>,
    /// The call of the `fetch` step running, for its entry.
    call: Option<explain::Call>,
    /// The step of the last failure explained: the steps around it fail with the same error,
    /// which is not explained again.
    failed: Option<String>,
    /// The decisions of the `script` step running, for its entry.
    decided: Vec<explain::Decision>,
    decisions_omitted: usize,
}
impl Flow {
    /// Runs `event` through trigger and steps. State is read and written through `state`
    /// (an overlay in dry runs). Never panics on input; every failure is an error in the outcome.
    pub fn run(
        &self,
        rules: &Rules,
        event: &EventInfo,
        state: &Arc<dyn StateStore>,
        fetch: &dyn Fetch,
    ) -> Outcome {
        self.run_keeping(
            rules,
            event,
            state,
            fetch,
            RunOptions::keeping(Keep::Record),
            None,
        )
    }

    /// With [`Keep::Actions`] (the runtime) the outcome's `record` lacks what the closing sends
    /// moved into their payloads instead of copying, and is null when no step changed the body
    /// (copying the body only to drop it would be waste). With [`Keep::Lent`] it lacks the
    /// moved payloads, which [`Outcome::lent`] lists. A `spare` record is built into by the
    /// first `map` without `into` rather than allocated afresh. With `explain` the outcome
    /// carries an [`Explanation`].
    pub(super) fn run_keeping(
        &self,
        rules: &Rules,
        event: &EventInfo,
        state: &Arc<dyn StateStore>,
        fetch: &dyn Fetch,
        RunOptions { keep, explain }: RunOptions,
        spare: Option<Value>,
    ) -> Outcome {
        // Every way an event runs (run, dry-run, test) caps its scripts' log lines.
        let _log = crate::rules::engine::LogBudget::start();
        let keep_record = keep != Keep::Actions;
        let mut outcome = Outcome::before_steps(self.name.clone(), event.id.clone());
        if !event.body.is_object() {
            outcome.record = (*event.body).clone();
            outcome.errors.push(StepError {
                step: "input".into(),
                message: format!(
                    "the event body must be a JSON object, got {}",
                    kind_of(&event.body)
                ),
            });
            return outcome;
        }
        // Explaining, the steps see the state through a store that notes what they write.
        let watched = explain.then(|| Arc::new(Watched::new(state.clone())));
        let watching: Option<Arc<dyn StateStore>> =
            watched.clone().map(|w| w as Arc<dyn StateStore>);
        let state = watching.as_ref().unwrap_or(state);
        let mut run = Run::new(rules, Ctx { event, state }, fetch, keep, spare);
        run.explain = watched.map(|watched| {
            Box::new(Explaining {
                out: Explanation::default(),
                watched,
                call: None,
                failed: None,
                decided: Vec::new(),
                decisions_omitted: 0,
            })
        });
        run.steps.reserve(self.steps.len());
        let mut record: Cow<'_, Value> = Cow::Borrowed(&event.body);

        if let Some(trigger) = &self.trigger {
            let result = trigger.eval_bool(rules, &record, &run.ctx);
            if let Some(x) = run.explain.as_mut() {
                let then = match result {
                    Ok(true) => "continue",
                    Ok(false) => "skipped",
                    Err(_) => "failed",
                };
                let test = explain::test(trigger, &record, &result);
                x.out.push(
                    "trigger",
                    What::Condition {
                        test,
                        then: then.into(),
                    },
                );
            }
            outcome.explanation = run.explain.as_ref().map(|x| Box::new(x.out.clone()));
            match result {
                Ok(true) => {}
                Ok(false) => {
                    if keep_record {
                        outcome.record = record.into_owned();
                    }
                    return outcome;
                }
                Err(e) => {
                    outcome.record = record.into_owned();
                    outcome.errors.push(StepError {
                        step: "trigger".into(),
                        message: e.to_string(),
                    });
                    return outcome;
                }
            }
        }
        outcome.triggered = true;
        match run.steps(&self.steps, &mut record) {
            Ok(Next::Continue) => {}
            Ok(Next::Stop) => outcome.filtered = true,
            Err(e) => outcome.errors.push(e),
        }
        outcome.body_unchanged = matches!(record, Cow::Borrowed(_));
        // A record still borrowed is the body: copying it is for callers that show it.
        if keep_record || !outcome.body_unchanged {
            outcome.record = record.into_owned();
        }
        outcome.actions = run.actions;
        outcome.retry = run.retry;
        outcome.steps = run.steps;
        outcome.lent = run.lent;
        outcome.undo = run.undo;
        outcome.explanation = run.explain.map(|x| Box::new(x.out));
        outcome
    }

    /// Runs the `undo:` steps `undo` names on the record it keeps: a compensation. Its actions
    /// are effects of their own (the undo steps' places, with the same element indexes), its
    /// state writes go through `state` as a flow's do. An error when this version has no such
    /// step.
    pub fn compensate(
        &self,
        rules: &Rules,
        event: &EventInfo,
        undo: &Undo,
        state: &Arc<dyn StateStore>,
        fetch: &dyn Fetch,
    ) -> Outcome {
        let _log = crate::rules::engine::LogBudget::start();
        let (at, scope) = undo
            .step
            .split_at(undo.step.find('#').unwrap_or(undo.step.len()));
        let mut outcome = self.unreadable(event.clone(), &undo.step, String::new());
        outcome.errors.clear();
        outcome.triggered = true;
        let Some(steps) = super::find_undo(&self.steps, at) else {
            outcome.errors.push(StepError {
                step: undo.step.clone(),
                message: format!(
                    "the running version of pipeline `{}` has no step `{at}` with `undo:` to \
                     compensate with",
                    self.name
                ),
            });
            return outcome;
        };
        let mut run = Run::new(rules, Ctx { event, state }, fetch, Keep::Record, None);
        run.scope = scope.to_string();
        let mut record: Cow<'_, Value> = Cow::Borrowed(&undo.record);
        if let Err(e) = run.steps(steps, &mut record) {
            outcome.errors.push(e);
        }
        outcome.actions = run.actions;
        outcome.retry = run.retry;
        outcome.steps = run.steps;
        outcome
    }
}

impl<'a> Run<'a> {
    fn new(
        rules: &'a Rules,
        ctx: Ctx<'a>,
        fetch: &'a dyn Fetch,
        keep: Keep,
        spare: Option<Value>,
    ) -> Run<'a> {
        Run {
            rules,
            ctx,
            actions: Vec::new(),
            fetch,
            retry: None,
            steps: Vec::new(),
            keep,
            lent: Vec::new(),
            spare,
            scope: String::new(),
            undo: Vec::new(),
            explain: None,
        }
    }

    fn steps(&mut self, steps: &[Step], record: &mut Cow<'_, Value>) -> Result<Next, StepError> {
        for step in steps {
            if let Next::Stop = self.step(step, record)? {
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Continue)
    }

    fn step(&mut self, step: &Step, record: &mut Cow<'_, Value>) -> Result<Next, StepError> {
        if let Step::Undoable { step, at, .. } = step {
            let next = self.step(step, record)?;
            // A filter that stopped the event took no effect to undo.
            if let Next::Continue = next {
                self.undo.push(Undo {
                    step: format!("{at}{}", self.scope),
                    record: record.clone().into_owned(),
                    send: matches!(**step, Step::Send { .. }),
                });
            }
            return Ok(next);
        }
        self.steps.push(step.label());
        // A trace's child span per step (`telemetry`); off, the span costs a check of a flag.
        let _span = tracing::debug_span!("step", step = &*step.label()).entered();
        let Some(x) = self.explain.as_ref() else {
            return self.run_step(step, record);
        };
        let changes = matches!(
            step,
            Step::Map { .. } | Step::Script { .. } | Step::Set { .. } | Step::Fetch { .. }
        );
        // A record still borrowed is the body, which the step leaves as it was: no copy.
        let before = (changes && !x.out.is_full()).then(|| match record {
            Cow::Borrowed(body) => Cow::Borrowed(*body),
            Cow::Owned(record) => Cow::Owned(record.clone()),
        });
        let result = self.run_step(step, record);
        let Some(x) = self.explain.as_mut() else {
            return result;
        };
        let label = format!("{}{}", step.label(), self.scope);
        let mut state = x.watched.take();
        if changes && result.is_ok() {
            // Full, the explanation only counts the entry: no copy was made to diff.
            let (reads, diff) = match (&before, step) {
                (None, _) => (Vec::new(), explain::Diff::default()),
                (Some(before), Step::Script { script, .. }) => {
                    let diff = explain::diff("record", before, record);
                    let mut reads = explain::seen(script.record_reads(), before);
                    // A field the script set is among its reads, missing before: the diff
                    // says it better.
                    reads.retain(|r| !(r.missing && diff.added(&r.read)));
                    (reads, diff)
                }
                (Some(before), _) => (Vec::new(), explain::diff("record", before, record)),
            };
            let what = What::Change {
                reads,
                call: x.call.take(),
                diff,
                state: std::mem::take(&mut state),
                decisions: std::mem::take(&mut x.decided),
                decisions_omitted: std::mem::take(&mut x.decisions_omitted),
            };
            x.out.push(&label, what);
        }
        // A script that failed: the decisions it made before are why it got where it failed.
        if !x.decided.is_empty() || x.decisions_omitted > 0 {
            let what = What::Change {
                reads: Vec::new(),
                call: None,
                diff: explain::Diff::default(),
                state: Vec::new(),
                decisions: std::mem::take(&mut x.decided),
                decisions_omitted: std::mem::take(&mut x.decisions_omitted),
            };
            x.out.push(&label, what);
        }
        if !state.is_empty() {
            let what = What::Change {
                reads: Vec::new(),
                call: None,
                diff: explain::Diff::default(),
                state,
                decisions: Vec::new(),
                decisions_omitted: 0,
            };
            x.out.push(&label, what);
        }
        if let Err(e) = &result {
            if x.failed.as_deref() != Some(e.step.as_str()) {
                let what = What::Failed {
                    message: e.message.clone(),
                };
                x.out.push(&format!("{}{}", e.step, self.scope), what);
                x.failed = Some(e.step.clone());
            }
        }
        result
    }

    /// One step, its `undo:` and explanation aside.
    fn run_step(&mut self, step: &Step, record: &mut Cow<'_, Value>) -> Result<Next, StepError> {
        let fail = |label: &str, message: String| StepError {
            step: label.to_string(),
            message,
        };
        match step {
            Step::Map {
                label,
                mapping,
                into,
            } => {
                // A spare is a whole record: only a map that makes the whole record takes it.
                let spare = if into.is_none() {
                    self.spare.take()
                } else {
                    None
                };
                let out = match spare {
                    Some(mut spare) => mapping
                        .apply_into(self.rules, record, &mut spare)
                        .map(|()| spare),
                    None => mapping.apply(self.rules, record),
                }
                .map_err(|e| fail(label, e.to_string()))?;
                match into {
                    None => *record = Cow::Owned(out),
                    Some(path) => path
                        .set(record.to_mut(), out)
                        .map_err(|e| fail(label, e.to_string()))?,
                }
            }
            Step::Script { label, script } => {
                let input = std::mem::replace(record, Cow::Owned(Value::Null)).into_owned();
                let file = || format!("scripts/{}.rhai", script.name());
                let out = match self.explain.as_mut() {
                    None => script.run(self.rules, input, &self.ctx),
                    Some(x) => {
                        let (out, decided) = script.run_explained(self.rules, input, &self.ctx);
                        let file = file();
                        x.decided = decided
                            .decisions
                            .into_iter()
                            .map(|d| explain::Decision::of(&file, d))
                            .collect();
                        x.decisions_omitted = decided.omitted;
                        out
                    }
                }
                .map_err(|e| fail(label, e.located(&file())))?;
                *record = Cow::Owned(out);
            }
            Step::Filter { label, when } => {
                let result = when.eval_bool(self.rules, record, &self.ctx);
                if let Some(x) = self.explain.as_mut() {
                    let then = match result {
                        Ok(true) => "continue",
                        Ok(false) => "dropped",
                        Err(_) => "failed",
                    };
                    let test = explain::test(when, record, &result);
                    x.out.push(
                        &format!("{label}{}", self.scope),
                        What::Condition {
                            test,
                            then: then.into(),
                        },
                    );
                }
                if !result.map_err(|e| fail(label, e.to_string()))? {
                    return Ok(Next::Stop);
                }
            }
            Step::Switch { label, arms } => return self.switch(label, arms, record),
            Step::Set { label, fields } => {
                for (path, value) in fields {
                    let value = self
                        .value(value, record)
                        .map_err(|e| fail(label, format!("{path}: {e}")))?;
                    path.set(record.to_mut(), value)
                        .map_err(|e| fail(label, e.to_string()))?;
                }
            }
            Step::Fetch {
                label,
                connector,
                op,
                params,
                into,
            } => {
                let mut args = serde_json::Map::new();
                for (name, value) in params {
                    let value = self
                        .value(value, record)
                        .map_err(|e| fail(label, format!("{name}: {e}")))?;
                    args.insert(name.clone(), value);
                }
                let args = Value::Object(args);
                let answer = self.fetch.fetch(connector, op, &args);
                if let Some(x) = self.explain.as_mut() {
                    x.call = Some(explain::Call {
                        connector: connector.clone(),
                        op: op.clone(),
                        params: explain::clip(&args, explain::VALUE_CHARS),
                        error: answer.as_ref().err().map(|e| e.message.clone()),
                    });
                }
                let answer = answer.map_err(|e| {
                    if e.retryable {
                        self.retry = Some(e.retry_after);
                    }
                    fail(label, e.message)
                })?;
                match into {
                    None => *record = Cow::Owned(answer),
                    Some(path) => path
                        .set(record.to_mut(), answer)
                        .map_err(|e| fail(label, e.to_string()))?,
                }
            }
            Step::Each {
                label,
                items,
                item,
                max,
                into,
                steps,
            } => self.each(label, (items, item, *max, into.as_ref()), steps, record)?,
            // Ran above, before its label.
            Step::Undoable { .. } => {}
            Step::Send { label, send } => {
                if let (Some(path), true, Cow::Owned(owned)) =
                    (&send.movable, self.keep != Keep::Record, &mut *record)
                {
                    if let Some(payload) = take(owned, path) {
                        if self.keep == Keep::Lent {
                            self.lent.push((self.actions.len(), path.clone()));
                        }
                        let action = send.action(payload, &self.scope);
                        self.actions.push(action);
                        self.explain_send(label);
                        return Ok(Next::Continue);
                    }
                }
                let action = self
                    .send(send, record)
                    .map_err(|e| fail(label, e.to_string()))?;
                self.actions.push(action);
                self.explain_send(label);
            }
        }
        Ok(Next::Continue)
    }

    /// An `each` step: its steps once per element, each element on a copy of the record
    /// without the array (copying the array into every element's record would cost its square).
    /// Every element runs, and the step fails with the failures of all that failed, by index.
    fn each(
        &mut self,
        label: &str,
        (items, item, max, into): (&[String], &FieldPath, usize, Option<&FieldPath>),
        steps: &[Step],
        record: &mut Cow<'_, Value>,
    ) -> Result<(), StepError> {
        let fail = |message: String| StepError {
            step: label.to_string(),
            message,
        };
        let owned = record.to_mut();
        let list = match take(owned, items) {
            Some(Value::Array(list)) => list,
            Some(other) => {
                let message = format!(
                    "`$.{}` is {}, not an array",
                    items.join("."),
                    kind_of(&other)
                );
                put(owned, items, other);
                return Err(fail(message));
            }
            None => {
                return Err(fail(format!(
                    "`$.{}` is not in the record",
                    items.join(".")
                )))
            }
        };
        if list.len() > max {
            let n = list.len();
            put(owned, items, Value::Array(list));
            return Err(fail(format!(
                "`$.{}` has {n} elements, more than `max: {max}`",
                items.join(".")
            )));
        }
        if let Some(x) = self.explain.as_mut() {
            let what = What::Each {
                elements: list.len(),
            };
            x.out.push(&format!("{label}{}", self.scope), what);
        }
        let scope_len = self.scope.len();
        let mut failures = Vec::new();
        let mut results = Vec::with_capacity(if into.is_some() { list.len() } else { 0 });
        for (i, element) in list.iter().enumerate() {
            let mut copy = owned.clone();
            if let Err(e) = item.set(&mut copy, element.clone()) {
                failures.push(format!("[{i}]: {e}"));
                continue;
            }
            self.scope.push_str(&format!("#{i}"));
            let mut inner: Cow<'_, Value> = Cow::Owned(copy);
            match self.steps(steps, &mut inner) {
                Ok(_) => results.push(inner.into_owned()),
                Err(e) => failures.push(format!("[{i}] {e}")),
            }
            self.scope.truncate(scope_len);
        }
        put(owned, items, Value::Array(list));
        if !failures.is_empty() {
            return Err(fail(format!(
                "{} of the elements failed: {}",
                failures.len(),
                failures.join("; ")
            )));
        }
        if let Some(into) = into {
            into.set(owned, Value::Array(results))
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    /// A computed value of a `set` or a fetch's `params`.
    fn value(&self, value: &SetValue, record: &Value) -> Result<Value, ValueError> {
        Ok(match value {
            SetValue::Literal(v) => v.clone(),
            SetValue::Expr(e) => e.eval_value(self.rules, record, &self.ctx)?,
            SetValue::From(p) => select(p, record)?.unwrap_or(Value::Null),
        })
    }

    fn switch(
        &mut self,
        label: &str,
        arms: &[Arm],
        record: &mut Cow<'_, Value>,
    ) -> Result<Next, StepError> {
        let mut tests = Vec::new();
        for (i, arm) in arms.iter().enumerate() {
            let taken = match &arm.when {
                None => Ok(true),
                Some(w) => {
                    let result = w.eval_bool(self.rules, record, &self.ctx);
                    if self.explain.is_some() {
                        tests.push(explain::test(w, record, &result));
                    }
                    result
                }
            };
            let taken = taken.map_err(|e| StepError {
                step: format!("{label} arm {i}"),
                message: e.to_string(),
            });
            let decided = !matches!(taken, Ok(false));
            if decided || i + 1 == arms.len() {
                if let Some(x) = self.explain.as_mut() {
                    let chosen = matches!(taken, Ok(true));
                    let what = What::Switch {
                        arms: std::mem::take(&mut tests),
                        taken: chosen.then_some(i),
                        otherwise: chosen && arm.when.is_none(),
                        then: chosen
                            .then(|| arm.steps.first().map(|s| s.label().to_string()))
                            .flatten(),
                    };
                    x.out.push(&format!("{label}{}", self.scope), what);
                }
            }
            if taken? {
                return self.steps(&arm.steps, record);
            }
        }
        Ok(Next::Continue)
    }

    /// Explains the action just made by `send` step `label`.
    fn explain_send(&mut self, label: &str) {
        let (Some(x), Some(action)) = (self.explain.as_mut(), self.actions.last()) else {
            return;
        };
        let what = What::Send {
            connector: action.connector.clone(),
            op: action.op.clone(),
            object: action.object.clone(),
            action: self.actions.len() - 1,
            payload: explain::clip(&action.payload, explain::PAYLOAD_CHARS),
        };
        x.out.push(&format!("{label}{}", self.scope), what);
    }

    fn send(&self, send: &SendStep, record: &Value) -> Result<Action, ValueError> {
        let payload = match &send.payload {
            None => record.clone(),
            Some(p) => select(p, record)?.ok_or_else(|| ValueError::NoPayload(p.to_string()))?,
        };
        Ok(send.action(payload, &self.scope))
    }
}

impl SendStep {
    /// The action for `payload`; `scope` is the element indexes of the `each` steps it runs in.
    fn action(&self, payload: Value, scope: &str) -> Action {
        Action {
            effect: if scope.is_empty() {
                self.effect.clone()
            } else {
                format!("{}{scope}", self.effect).into()
            },
            connector: self.connector.clone(),
            op: self.op.clone(),
            object: self.object.clone(),
            key: self.key.clone(),
            payload,
        }
    }
}

impl Outcome {
    /// The record whole, the payloads lent to actions put back in their places: what the
    /// outcome's JSON shows as `record`, and a spare for [`Flow::run_parsed_lending`].
    pub fn into_record(mut self) -> Value {
        for (i, path) in std::mem::take(&mut self.lent) {
            if let Some(action) = self.actions.get_mut(i) {
                put(&mut self.record, &path, std::mem::take(&mut action.payload));
            }
        }
        self.record
    }
}

/// Puts `v` at `path` (object keys) in `record`, if its parents are there: [`take`] undone.
fn put(record: &mut Value, path: &[String], v: Value) -> Option<()> {
    let Some((last, parents)) = path.split_last() else {
        *record = v;
        return Some(());
    };
    let mut at = record;
    for key in parents {
        at = at.as_object_mut()?.get_mut(key)?;
    }
    at.as_object_mut()?.insert(last.clone(), v);
    Some(())
}

/// Removes and returns the value at `path` (object keys) of `record`, if there is one.
fn take(record: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut at = record;
    for key in parents {
        at = at.as_object_mut()?.get_mut(key)?;
    }
    at.as_object_mut()?.remove(last)
}

/// The value a JSONPath names: the one node for a singular path, the list of nodes otherwise,
/// made within the default mapping budget (nodes visited, bytes copied, time), so a path such
/// as `$..*..*..*` fails the step instead of the process.
fn select(path: &crate::jsonpath::JsonPath, record: &Value) -> Result<Option<Value>, ValueError> {
    if path.is_singular() {
        return Ok(path.first(record).cloned());
    }
    let mut budget = crate::mapping::Budget::default();
    let over = |exceeded| ValueError::OverBudget {
        path: path.to_string(),
        exceeded,
    };
    let nodes = path.query_within(record, &mut budget).map_err(over)?;
    let mut items = Vec::with_capacity(nodes.len());
    for v in nodes {
        budget.output(v).map_err(over)?;
        items.push(v.clone());
    }
    Ok(Some(Value::Array(items)))
}
