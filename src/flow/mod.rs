//! Flows: pipelines compiled into immutable plans, and running one event through a plan.
//!
//! Owns the compiled project ([`Project`]): every mapping, script and expression is parsed and
//! compiled once, in [`compile`], which also checks that the files fit together and collects
//! every problem in one pass. [`Flow::run`] then takes an event through trigger and steps with
//! nothing parsed per event. Running never calls a connector: a `send` yields an [`Action`];
//! executing actions is the runtime's job. `check`, `dry-run`, `test` and `run` all start here.

mod compile;
pub mod event;
pub mod explain;
pub mod input;
mod json;
pub mod key;
mod record;
mod run;
pub mod tenants;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use compile::{compile, connector_config, load, load_edited, CompileOptions};
pub use record::FieldPath;

use crate::config::env::Redactor;
use crate::config::model::{CatchUpConfig, OnErrorConfig, ProjectFile, SourceConfig};
use crate::connectors::ConnectorConfig;
use crate::jsonpath::JsonPath;
use crate::mapping::Mapping;
use crate::rules::{EventInfo, Expr, Rules, Script};
use crate::state::{StateChange, StateStore};
use crate::verify::Scheme;

/// A compiled project: immutable, shared by every event that runs on it.
pub struct Project {
    pub root: PathBuf,
    /// Content hash of the project's files.
    pub version: String,
    /// Each file's content hash, by path relative to the root (`config::ProjectSources`).
    pub files: BTreeMap<String, String>,
    pub config: ProjectFile,
    pub connectors: BTreeMap<String, ConnectorConfig>,
    pub rules: Rules,
    pub pipelines: BTreeMap<String, Arc<Flow>>,
    /// Connectors whose variables are unset and that name an `unconfigured` stand-in.
    pub unconfigured: BTreeMap<String, Unconfigured>,
    /// Connectors with a `breaker:` of their own; the others use the default.
    pub breakers: BTreeMap<String, BreakerSpec>,
    pub redactor: Redactor,
    /// Where crossdock.yaml declares each connector. A connector is built only when the
    /// runtime makes it live, and a failure then is reported at this position, as `check`'s
    /// errors are.
    pub connector_pos: BTreeMap<String, crate::config::span::Pos>,
    /// `tenants/<list>.yaml`, by list name.
    pub tenants: BTreeMap<String, tenants::TenantList>,
    /// Connectors with `tenants: LIST`: each tenant's config, its values filled in.
    pub tenant_connectors: BTreeMap<String, TenantConnector>,
}

/// A connector built once per tenant of a list.
#[derive(Debug, Clone)]
pub struct TenantConnector {
    pub list: String,
    /// Tenant id -> its config, and the filled raw config (to tell on reload what changed).
    pub configs: BTreeMap<String, (ConnectorConfig, serde_json::Value)>,
}

/// When a connector's circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSpec {
    /// Retryable failures in a row that open it.
    pub failures: u32,
    /// How long it stays open before one trial call may go through.
    pub cooldown: std::time::Duration,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            failures: 5,
            cooldown: std::time::Duration::from_secs(30),
        }
    }
}

/// A connector that is not configured on this machine, and who takes its calls instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfigured {
    /// The stand-in connector.
    pub to: String,
    /// The unset variables, in the order they appear.
    pub missing: Vec<String>,
}

impl Project {
    pub fn pipeline(&self, name: &str) -> Option<&Arc<Flow>> {
        self.pipelines.get(name)
    }
}

/// One pipeline, compiled.
pub struct Flow {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub source: SourceConfig,
    /// `catch_up:` beside a webhook source, as `check` accepted it.
    pub catch_up: Option<CatchUpConfig>,
    pub on_error: Option<OnErrorConfig>,
    /// Events that may run at once; the runtime's default when None.
    pub concurrency: Option<usize>,
    trigger: Option<Expr>,
    steps: Vec<Step>,
    /// What the flow reads of an event body: the rest is skipped when parsing.
    need: crate::projection::BodyParser,
    /// A webhook source's ingress, built by `compile`; None for other sources.
    pub webhook: Option<Arc<Webhook>>,
    /// `keys:`: each correlation key's name and its plain path into the body.
    keys: Vec<(Arc<str>, JsonPath)>,
    /// `ordering_key:` compiled; None when the pipeline declares none.
    pub ordering_key: Option<OrderingKey>,
}

/// `ordering_key:` compiled: the path, and a parser made for it that reads only that field of
/// a body.
pub struct OrderingKey {
    pub path: JsonPath,
    pub parser: crate::projection::BodyParser,
}

impl OrderingKey {
    /// The key of an event with this body; None when the body has nothing at the path (or is
    /// not JSON: the flow refuses it when it runs). A string is taken as it is, any other
    /// value as its JSON text, so `1` and `"1"` are different keys.
    pub fn of(&self, body: &[u8]) -> Option<String> {
        let value = self.parser.parse(body).ok()?;
        match self.path.first(&value)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// What a webhook source's `verify:` and `dedup_id:` compile to. Built once with the flow, so
/// the runtime serves from what `check` accepted instead of parsing the config again.
pub struct Webhook {
    /// The signature scheme; None without `verify:`.
    pub scheme: Option<Box<dyn Scheme>>,
    pub dedup_id: Option<DedupId>,
    /// `key:`: the business dedup key, and a parser that keeps the fields it (and `dedup_id`)
    /// reads of a body.
    pub key: Option<WebhookKey>,
    /// The path's `{name}` parameters; None for a plain path.
    pub pattern: Option<tenants::PathPattern>,
    /// `tenants:`: the tenant a path parameter names, and each tenant's scheme (then
    /// `scheme` is None).
    pub tenants: Option<tenants::WebhookTenants>,
}

/// A webhook's `key:` compiled.
pub struct WebhookKey {
    pub key: key::BusinessKey,
    pub parser: crate::projection::BodyParser,
}

/// `dedup_id:` compiled: the path, and a parser made for it that reads only that field of a
/// body (and still refuses a body no flow could parse, see `projection::check`).
pub struct DedupId {
    pub path: JsonPath,
    pub parser: crate::projection::BodyParser,
}

enum Step {
    Map {
        label: Arc<str>,
        mapping: Arc<Mapping>,
        into: Option<FieldPath>,
    },
    Script {
        label: Arc<str>,
        script: Arc<Script>,
    },
    Filter {
        label: Arc<str>,
        when: Expr,
    },
    Switch {
        label: Arc<str>,
        arms: Vec<Arm>,
    },
    Set {
        label: Arc<str>,
        fields: Vec<(FieldPath, SetValue)>,
    },
    Send {
        label: Arc<str>,
        send: SendStep,
    },
    Fetch {
        label: Arc<str>,
        connector: String,
        op: String,
        params: Vec<(String, SetValue)>,
        into: Option<FieldPath>,
    },
    /// Its steps once per element of the array at `items`, each on a copy of the record (the
    /// array left out) with the element at `item`.
    Each {
        label: Arc<str>,
        /// The array's place: object keys from the record's root.
        items: Arc<[String]>,
        item: FieldPath,
        /// More elements than this fail the step (the array's budget).
        max: usize,
        /// Where each element's final record goes, as an array in the same order.
        into: Option<FieldPath>,
        steps: Vec<Step>,
    },
    /// A step with `undo:` steps: when it took effect and the event then fails for good, the
    /// runtime runs `undo` on the record as it was after the step ([`Flow::compensate`]).
    Undoable {
        step: Box<Step>,
        /// The step's place (`steps[1]`), as in [`Action::effect`].
        at: Arc<str>,
        undo: Vec<Step>,
    },
}

/// A compensation owed: the step with `undo:` that took effect (its place, with the element
/// indexes of any `each` it ran in: `steps[2].each.steps[0]#1`) and the record its undo steps
/// run on.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Undo {
    pub step: String,
    pub record: Value,
    /// The step is a `send`: it took effect only if its action succeeded (its effect, the
    /// same as `step`, is among the event's done effects).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send: bool,
}

/// Whether any of `steps` (arms included) is a `fetch`.
fn any_fetch(steps: &[Step]) -> bool {
    steps.iter().any(|s| match s {
        Step::Fetch { .. } => true,
        Step::Switch { arms, .. } => arms.iter().any(|a| any_fetch(&a.steps)),
        Step::Each { steps, .. } => any_fetch(steps),
        Step::Undoable { step, undo, .. } => {
            any_fetch(std::slice::from_ref(step)) || any_fetch(undo)
        }
        _ => false,
    })
}

/// The `undo:` steps of the step at `at` (a place as in [`Undo::step`], without indexes).
fn find_undo<'a>(steps: &'a [Step], at: &str) -> Option<&'a [Step]> {
    steps.iter().find_map(|s| match s {
        Step::Undoable { at: here, undo, .. } if &**here == at => Some(undo.as_slice()),
        Step::Undoable { step, undo, .. } => {
            find_undo(std::slice::from_ref(step), at).or_else(|| find_undo(undo, at))
        }
        Step::Switch { arms, .. } => arms.iter().find_map(|a| find_undo(&a.steps, at)),
        Step::Each { steps, .. } => find_undo(steps, at),
        _ => None,
    })
}

impl Flow {
    /// The flow calls out (has a `fetch` step): running it may wait on the network, so the
    /// runtime gives it a thread of its own.
    pub fn fetches(&self) -> bool {
        any_fetch(&self.steps)
    }
}

impl Step {
    /// Shared, so recording it in each event's trail costs no copy.
    fn label(&self) -> Arc<str> {
        match self {
            Step::Map { label, .. }
            | Step::Script { label, .. }
            | Step::Filter { label, .. }
            | Step::Switch { label, .. }
            | Step::Set { label, .. }
            | Step::Send { label, .. }
            | Step::Fetch { label, .. }
            | Step::Each { label, .. } => label.clone(),
            Step::Undoable { step, .. } => step.label(),
        }
    }
}

/// How a flow's `fetch` steps reach a connector. The runtime calls the live connector; dry
/// runs and tests answer from what they were given, and never call anything.
pub trait Fetch: Send + Sync {
    /// The answer of `connector`'s `op` called with `params` (a JSON object).
    fn fetch(&self, connector: &str, op: &str, params: &Value) -> Result<Value, FetchError>;
}

/// A failed fetch; `retryable` when trying the event again later may succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub message: String,
    pub retryable: bool,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<std::time::Duration>,
}

/// Answers fetches from a table of `connector.op` → answer; anything else is an error that
/// says how to provide it. What `dry-run` and `test` use.
#[derive(Debug, Clone, Default)]
pub struct GivenAnswers {
    pub answers: BTreeMap<String, Value>,
    /// How the user provides an answer, for the error message.
    pub hint: &'static str,
}

impl Fetch for GivenAnswers {
    fn fetch(&self, connector: &str, op: &str, _params: &Value) -> Result<Value, FetchError> {
        let key = format!("{connector}.{op}");
        self.answers.get(&key).cloned().ok_or_else(|| FetchError {
            message: format!(
                "no answer for `{key}`: nothing is called outside `crossdock run`; {}",
                self.hint
            ),
            retryable: false,
            retry_after: None,
        })
    }
}

struct Arm {
    /// `None` for `otherwise`.
    when: Option<Expr>,
    steps: Vec<Step>,
}

enum SetValue {
    Literal(Value),
    Expr(Expr),
    From(JsonPath),
}

struct SendStep {
    connector: Arc<str>,
    op: Arc<str>,
    object: Option<Arc<str>>,
    key: Option<Arc<str>>,
    payload: Option<JsonPath>,
    /// The payload's keys, when the payload may be moved out of the record instead of copied
    /// (see `compile::mark_movable_payloads`).
    movable: Option<Arc<[String]>>,
    /// Where the step is in the pipeline (`steps[2].switch[0].steps[1]`): its actions' effect
    /// key, which stays the same from one run of the event to the next.
    effect: Arc<str>,
}

/// A call on a connector that a `send` step asks for. The names are shared with the step, so
/// an action copies none of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub connector: Arc<str>,
    pub op: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Arc<str>>,
    pub payload: Value,
    /// The step that asked for it, with the element's index inside an `each`
    /// (`steps[3].each.steps[0]#2`): the same in every run of the event, so the runtime records
    /// which effects succeeded and skips them when the event runs again, and derives the
    /// idempotency key it gives the remote from it.
    #[serde(skip)]
    pub effect: Arc<str>,
}

/// A body that is not JSON (or not UTF-8), as [`Flow::parse_body`] found it.
#[derive(Debug, thiserror::Error)]
#[error("the body is not valid JSON: {0}")]
pub struct BodyError(#[from] serde_json::Error);

/// Why an event stopped: which step, and what went wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepError {
    /// The step, as `steps[1] (script cart-opportunity-or-lead)`; `trigger` or `input` before steps.
    pub step: String,
    pub message: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

/// What running one event produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub pipeline: String,
    pub event_id: String,
    /// False when the trigger did not match (the event is acknowledged and skipped).
    pub triggered: bool,
    /// A `filter` step dropped the event.
    pub filtered: bool,
    /// The record after the steps (incomplete with [`Keep::Actions`] and [`Keep::Lent`]).
    pub record: Value,
    pub actions: Vec<Action>,
    pub state_changes: Vec<StateChange>,
    pub errors: Vec<StepError>,
    /// The record is still the event body as parsed (no step replaced or changed it).
    pub body_unchanged: bool,
    /// The error came from a fetch that may succeed later: the event is worth retrying.
    pub retry: Option<Option<std::time::Duration>>,
    /// The steps that ran, in order, as their labels (`steps[2] (script tier)`): the trail's.
    pub steps: Vec<Arc<str>>,
    /// The compensations the run makes owed if its effects are kept (see [`Undo`]).
    pub undo: Vec<Undo>,
    /// Payloads lent to actions instead of copied ([`Keep::Lent`]): the action's
    /// index and where in the record its payload was. Its JSON ([`Outcome::write_json`]) puts
    /// them back in place.
    pub lent: Vec<(usize, Arc<[String]>)>,
    /// The correlation keys found in the body (see [`Flow::read_keys`]).
    pub keys: Vec<(Arc<str>, String)>,
    /// What each step saw and did, when the caller asked ([`RunOptions::explain`]).
    pub explanation: Option<Box<explain::Explanation>>,
}

impl Flow {
    /// Parses an event body, keeping only what this flow reads of it.
    pub fn parse_body(&self, body: input::Body<'_>) -> Result<Value, BodyError> {
        match body {
            input::Body::Json(bytes) => {
                let mut value = Value::Null;
                self.parse_into(bytes, &mut value).map(|()| value)
            }
            input::Body::Value(v) => Ok(v),
        }
    }

    /// Parses and runs one event; `event.body` is filled here. `how` says what the caller
    /// keeps of the outcome, which decides whether the closing sends may move their payloads
    /// out of the record instead of copying them (see [`Keep`]), and whether the outcome
    /// explains every step.
    #[allow(clippy::too_many_arguments)]
    pub fn run_body(
        &self,
        rules: &Rules,
        event: EventInfo,
        body: Result<input::Body<'_>, input::DecodeError>,
        label: &str,
        state: &Arc<dyn StateStore>,
        fetch: &dyn Fetch,
        how: RunOptions,
    ) -> Outcome {
        match body {
            // Parsed into the last body this thread parsed, reusing its allocations.
            Ok(input::Body::Json(bytes)) if bytes.len() <= SPARE_BODY_MAX => {
                let mut value = SPARE_BODY.take();
                if let Err(e) = self.parse_into(bytes, &mut value) {
                    return self.unreadable(event, label, e.to_string());
                }
                let (outcome, back) =
                    self.run_parsed(rules, event, value, Some(bytes), state, fetch, how, None);
                if let Some(body) = back {
                    SPARE_BODY.set(body);
                }
                outcome
            }
            Ok(input::Body::Json(bytes)) => match self.parse_body(input::Body::Json(bytes)) {
                Ok(value) => {
                    self.run_parsed(rules, event, value, Some(bytes), state, fetch, how, None)
                        .0
                }
                Err(e) => self.unreadable(event, label, e.to_string()),
            },
            Ok(input::Body::Value(value)) => {
                self.run_parsed(rules, event, value, None, state, fetch, how, None)
                    .0
            }
            Err(e) => self.unreadable(event, label, e.to_string()),
        }
    }

    /// Parses a body as [`Flow::run_body`] does, into `target`, reusing what it holds (see
    /// [`BodyParser::parse_into`](crate::projection::BodyParser::parse_into)).
    pub fn parse_into(&self, bytes: &[u8], target: &mut Value) -> Result<(), BodyError> {
        Ok(self.need.parse_into(bytes, target)?)
    }

    /// [`Flow::run_body`] with [`Keep::Lent`] for a body already parsed with [`Flow::parse_into`] from
    /// `bytes`; gives the body back to be parsed into again, unless a step kept it. A `spare`
    /// record (an earlier outcome's, [`Outcome::into_record`]) is built into by the first
    /// `map` step without `into` instead of a new one.
    #[allow(clippy::too_many_arguments)]
    pub fn run_parsed_lending(
        &self,
        rules: &Rules,
        event: EventInfo,
        body: Value,
        bytes: &[u8],
        state: &Arc<dyn StateStore>,
        fetch: &dyn Fetch,
        spare: Option<Value>,
    ) -> (Outcome, Option<Value>) {
        self.run_parsed(
            rules,
            event,
            body,
            Some(bytes),
            state,
            fetch,
            RunOptions::keeping(Keep::Lent),
            spare,
        )
    }

    /// Runs a parsed body; `bytes` are what it was parsed from.
    #[allow(clippy::too_many_arguments)]
    fn run_parsed(
        &self,
        rules: &Rules,
        mut event: EventInfo,
        body: Value,
        bytes: Option<&[u8]>,
        state: &Arc<dyn StateStore>,
        fetch: &dyn Fetch,
        how: RunOptions,
        spare: Option<Value>,
    ) -> (Outcome, Option<Value>) {
        event.body = Arc::new(body);
        let mut outcome = self.run_keeping(rules, &event, state, fetch, how, spare);
        outcome.keys = self.read_keys(&event.body);
        // The parsed body holds only what the flow reads; an event that stopped before any
        // step changed it shows the body as it came.
        if outcome.body_unchanged && how.keep != Keep::Actions && !self.need.is_all() {
            if let Some(v) = bytes.and_then(|b| serde_json::from_slice(b).ok()) {
                outcome.record = v;
            }
        }
        // Nothing else holds the body once the flow ran, unless a step kept it.
        (outcome, Arc::try_unwrap(event.body).ok())
    }

    /// The values of the flow's correlation keys in a body parsed by [`Flow::parse_body`]
    /// (which keeps their paths): a string as it is, a number or boolean as its JSON text; a
    /// key that is missing, of another type, or longer than [`MAX_KEY_VALUE`] bytes is left
    /// out.
    pub fn read_keys(&self, body: &Value) -> Vec<(Arc<str>, String)> {
        self.keys
            .iter()
            .filter_map(|(name, path)| {
                let text = match path.first(body)? {
                    Value::String(s) => s.clone(),
                    v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                    _ => return None,
                };
                (!text.is_empty() && text.len() <= MAX_KEY_VALUE).then(|| (name.clone(), text))
            })
            .collect()
    }

    /// The names of the flow's correlation keys, as declared.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(name, _)| &**name)
    }

    /// The outcome of an event whose body could not be read.
    pub fn unreadable(&self, event: EventInfo, label: &str, message: String) -> Outcome {
        Outcome {
            errors: vec![StepError {
                step: label.to_string(),
                message,
            }],
            body_unchanged: false,
            ..Outcome::before_steps(self.name.clone(), event.id)
        }
    }
}

thread_local! {
    /// The body this thread parsed last, for the next to be parsed into (see
    /// [`projection::BodyParser`](crate::projection::BodyParser)).
    static SPARE_BODY: std::cell::Cell<Value> = const { std::cell::Cell::new(Value::Null) };
}

/// The longest correlation key value indexed, in bytes: an index entry is the key's name and
/// value, so a body cannot make one large.
pub const MAX_KEY_VALUE: usize = 256;

/// Bodies larger than this are parsed afresh and not kept: a thread would otherwise hold the
/// memory of the largest body it ever saw.
const SPARE_BODY_MAX: usize = 64 * 1024;

/// What a caller of [`Flow::run_body`] keeps of the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The record whole; payloads are copies (`test`, the admin API).
    Record,
    /// The record whole once serialised (`dry-run`): closing sends move their payloads out of
    /// `record` instead of copying them, and the outcome's JSON puts them back (see
    /// [`Outcome::lent`]); the copies were a tenth of a dry run.
    Lent,
    /// Only the actions (the runtime): closing sends move their payloads, so the outcome's
    /// `record` lacks them, and it is null when no step changed the body.
    Actions,
}

/// How [`Flow::run_body`] runs an event: what the caller keeps of the outcome, and whether
/// the outcome explains each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub keep: Keep,
    /// The outcome carries an [`explain::Explanation`] of every step: what the runtime keeps in
    /// an event's trail. It costs a copy of the record per step that changes it, which is why
    /// it is asked for.
    pub explain: bool,
}

impl RunOptions {
    /// Keeping `keep`, explaining nothing.
    pub const fn keeping(keep: Keep) -> Self {
        RunOptions {
            keep,
            explain: false,
        }
    }

    /// The same, each step explained when `explain`.
    pub const fn explained(self, explain: bool) -> Self {
        RunOptions { explain, ..self }
    }
}

impl Outcome {
    /// Event `event_id` of `pipeline` before the trigger: nothing ran, nothing changed.
    fn before_steps(pipeline: String, event_id: String) -> Outcome {
        Outcome {
            pipeline,
            event_id,
            triggered: false,
            filtered: false,
            record: Value::Null,
            actions: Vec::new(),
            state_changes: Vec::new(),
            errors: Vec::new(),
            body_unchanged: true,
            retry: None,
            steps: Vec::new(),
            undo: Vec::new(),
            lent: Vec::new(),
            keys: Vec::new(),
            explanation: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}
