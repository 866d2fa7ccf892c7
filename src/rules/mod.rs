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
//! What a script sees is documented for integrators in `docs/rules.md`.

mod condition;
pub mod convert;
mod digest;
pub mod engine;
mod error;
mod functions;
mod handles;
mod reads;
mod writes;

use crate::projection::{Need, Read};
use reads::Reads;
use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Dynamic, Engine, ImmutableString, Map, Scope, AST};
use serde_json::Value;

pub use engine::Limits;
pub use error::{RuleError, RunError};
pub use writes::{Written, WrittenValue};

use crate::state::StateStore;
use engine::Deadline;

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

/// Which context names compiled code refers to; the scope gets only these.
#[derive(Debug, Clone, Copy, Default)]
struct Uses {
    event: bool,
    /// `event.body` (or `event` whole) is read: converting the body is the costly part.
    event_body: bool,
    customers: bool,
    stock: bool,
    kv: bool,
    value: bool,
}

impl Uses {
    fn of(ast: &AST, event_body: bool) -> Uses {
        let mut uses = Uses {
            event_body,
            ..Uses::default()
        };
        // Over-approximates (a local variable named `event` counts), which only costs building
        // a value that is not read.
        ast.walk(&mut |path: &[rhai::ASTNode]| {
            if let Some(rhai::ASTNode::Expr(rhai::Expr::Variable(v, ..))) = path.last() {
                match v.1.as_str() {
                    "event" => uses.event = true,
                    "customers" => uses.customers = true,
                    "stock" => uses.stock = true,
                    "kv" => uses.kv = true,
                    "value" => uses.value = true,
                    _ => {}
                }
            }
            true
        });
        uses
    }

    fn any_context(self) -> bool {
        self.event || self.customers || self.stock || self.kv
    }
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
        let mut ast = self
            .engine
            .compile_with_scope(&declare(&SCRIPT_NAMES), src)
            .map_err(|e| RuleError::from_parse(&e))?;
        ast.set_source(name);
        let reads = Reads::of(&ast);
        Ok(Script {
            name: name.to_string(),
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

/// Build the pipeline scope: `record` (a variable: what the code assigns flows on), then the
/// context constants the code names.
fn pipeline_scope(record: Dynamic, uses: Uses, ctx: &Ctx) -> Result<Scope<'static>, RunError> {
    let mut scope = Scope::new();
    scope.push_dynamic("record", record);
    if uses.event {
        scope.push_constant_dynamic("event", event_dynamic(ctx.event, uses.event_body)?);
    }
    if uses.customers {
        scope.push_constant(
            "customers",
            handles::Customers {
                store: ctx.state.clone(),
            },
        );
    }
    if uses.stock {
        scope.push_constant(
            "stock",
            handles::Stock {
                store: ctx.state.clone(),
            },
        );
    }
    if uses.kv {
        scope.push_constant(
            "kv",
            handles::Kv {
                store: ctx.state.clone(),
                pipeline: ImmutableString::from(ctx.event.pipeline.as_str()),
            },
        );
    }
    Ok(scope)
}

/// Headers the engine sets on a webhook's events: one per path parameter, and the tenant.
pub const PARAM_HEADER_PREFIX: &str = "x-crossdock-param-";
pub const TENANT_HEADER: &str = "x-crossdock-tenant";

fn event_dynamic(event: &EventInfo, with_body: bool) -> Result<Dynamic, RunError> {
    // The webhook's path parameters and tenant travel as the engine's own headers (a sender's
    // `x-crossdock-*` are dropped at the door); scripts read them by name.
    let mut params = Map::new();
    let mut tenant = Dynamic::UNIT;
    for (k, v) in &event.headers {
        if let Some(name) = k.strip_prefix(PARAM_HEADER_PREFIX) {
            params.insert(name.into(), Dynamic::from(v.clone()));
        } else if k == TENANT_HEADER {
            tenant = Dynamic::from(v.clone());
        }
    }
    let headers = handles::Headers(Arc::new(event.headers.clone()));
    let body = if with_body {
        convert::json_to_dynamic(&event.body)
            .map_err(|e| RunError::plain(format!("event.body: {e}")))?
    } else {
        Dynamic::UNIT
    };
    let mut map = Map::new();
    map.insert("id".into(), Dynamic::from(event.id.clone()));
    map.insert("pipeline".into(), Dynamic::from(event.pipeline.clone()));
    map.insert("headers".into(), Dynamic::from(headers));
    map.insert("params".into(), Dynamic::from_map(params));
    map.insert("tenant".into(), tenant);
    map.insert(
        "received_at".into(),
        Dynamic::from(event.received_at.clone()),
    );
    map.insert("body".into(), body);
    Ok(Dynamic::from_map(map))
}

fn record_dynamic(record: &Value) -> Result<Dynamic, RunError> {
    convert::json_to_dynamic(record).map_err(|e| RunError::plain(format!("record: {e}")))
}

/// `record` as code that reads only `reads` of it sees it.
fn projected_record(record: &Value, reads: &Need) -> Result<Dynamic, RunError> {
    if reads.is_all() {
        return record_dynamic(record);
    }
    convert::json_to_dynamic_projected(record, reads)
        .map_err(|e| RunError::plain(format!("record: {e}")))
}

fn to_json(d: &Dynamic, what: &str) -> Result<Value, RunError> {
    convert::dynamic_to_json(d).map_err(|e| RunError::plain(format!("{what}: {e}")))
}

/// A compiled script file.
#[derive(Debug, Clone)]
pub struct Script {
    name: String,
    ast: Arc<AST>,
    uses: Uses,
    /// What the script reads (and so may write) of `record`: only that is converted.
    reads: Reads,
    /// The fields it surely sets, for `check` against a target's schema.
    writes: Vec<Written>,
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
    pub fn run(&self, rules: &Rules, mut record: Value, ctx: &Ctx) -> Result<Value, RunError> {
        // Give the script only the fields it names, and take back only those: the rest of a
        // large record never crosses into Rhai.
        let mut scope =
            pipeline_scope(projected_record(&record, &self.reads.need)?, self.uses, ctx)?;
        {
            let _deadline = Deadline::start(rules.limits.timeout);
            rules
                .engine
                .run_ast_with_scope(&mut scope, &self.ast)
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

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    ast: Arc<AST>,
    uses: Uses,
    /// What the expression reads of `record`: only that is converted.
    reads: Reads,
    /// The same expression answered without Rhai, when it is a simple condition.
    fast: Option<condition::Condition>,
    /// The text it was compiled from, for an event's explanation to quote.
    src: Arc<str>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use serde_json::json;
    use std::time::{Duration, Instant};

    struct Fixture {
        rules: Rules,
        event: EventInfo,
        state: Arc<dyn StateStore>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture::with_limits(Limits::default())
        }

        fn with_limits(limits: Limits) -> Fixture {
            Fixture {
                rules: Rules::new(limits),
                event: EventInfo {
                    id: "evt-1".into(),
                    pipeline: "orders".into(),
                    headers: BTreeMap::from([("x-shop".to_string(), "acme".to_string())]),
                    received_at: "2026-01-02T10:00:00Z".into(),
                    body: Arc::new(json!({"id": 820982911946154508_i64, "total": "19.99"})),
                },
                state: Arc::new(MemoryStore::new()),
            }
        }

        fn ctx(&self) -> Ctx<'_> {
            Ctx {
                event: &self.event,
                state: &self.state,
            }
        }

        fn run(&self, src: &str, record: Value) -> Result<Value, RunError> {
            let script = self.rules.compile_script("test", src).unwrap();
            script.run(&self.rules, record, &self.ctx())
        }

        fn value(&self, src: &str, record: Value) -> Result<Value, RunError> {
            let expr = self.rules.compile_expr(src).unwrap();
            expr.eval_value(&self.rules, &record, &self.ctx())
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_condition_comparing_text_with_a_number_fails_naming_the_values() {
        let f = Fixture::new();
        let when = f.rules.compile_expr("record.total > 100").unwrap();
        let e = when
            .eval_bool(&f.rules, &json!({"total": "120.00"}), &f.ctx())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"`"120.00" > 100` compares a string with a number"#),
            "{e}"
        );
        // Also where the simple-condition path answers text comparisons without Rhai.
        let when = f.rules.compile_expr(r#"record.id == "42""#).unwrap();
        let e = when
            .eval_bool(&f.rules, &json!({"id": 42}), &f.ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"`42 == "42"`"#), "{e}");
        assert!(when
            .eval_bool(&f.rules, &json!({"id": "42"}), &f.ctx())
            .unwrap());
        assert!(!when.eval_bool(&f.rules, &json!({}), &f.ctx()).unwrap());
    }

    #[test]
    fn rules_scripts_and_exprs_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Rules>();
        assert_send_sync::<Script>();
        assert_send_sync::<Expr>();
    }

    #[test]
    fn decimals_are_exact() {
        let f = Fixture::new();
        let out = f
            .run(
                "record.sum = record.a + record.b; record.big = record.total >= 100; record.lit = 0.1 + 0.2 == 0.3;",
                parse(r#"{"a": 0.1, "b": 0.2, "total": 100.00}"#),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"a":0.1,"b":0.2,"big":true,"lit":true,"sum":0.3,"total":100.00}"#
        );
        let out = f
            .run(
                r#"record.lv = decimal("19.99") + decimal(record.s) + 0.20; record.n = record.qty * 2.50;"#,
                parse(r#"{"s": "0.10", "qty": 3}"#),
            )
            .unwrap();
        assert_eq!(out["lv"].to_string(), "20.29");
        assert_eq!(out["n"].to_string(), "7.50");
        assert_eq!(
            f.value("record.total < 100", parse(r#"{"total": 99.99}"#))
                .unwrap(),
            json!(true)
        );
    }

    #[test]
    fn records_round_trip_digit_for_digit() {
        let f = Fixture::new();
        let text = r#"{"amount":225.0000,"beyond":1e400,"huge":12345678901234567890123,"id":820982911946154508,"neg":-0.5,"nested":{"a":"x","z":[1,{"a":true,"b":null}]},"price":"225.0000"}"#;
        // `record` used whole: every field crosses into Rhai and back.
        let out = f.run("record = record;", parse(text)).unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            text.replace("1e400", r#""1e+400""#)
        );
        // A script that names no field leaves the record exactly as it was.
        let out = f.run("let x = 1;", parse(text)).unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            text.replace("1e400", "1e+400")
        );
        // A script that touches the record keeps the rest as it was.
        let out = f
            .run("record.nested.a = \"y\"; record.added = 1;", parse(text))
            .unwrap();
        assert_eq!(out["id"].to_string(), "820982911946154508");
        assert_eq!(out["huge"].to_string(), "12345678901234567890123");
        assert_eq!(out["amount"].to_string(), "225.0000");
        assert_eq!(out["added"], 1);
        assert_eq!(out["nested"]["a"], "y");
        // Assigning a whole new record is allowed; so is a scalar.
        assert_eq!(f.run("record = 42;", json!({})).unwrap(), json!(42));
    }

    #[test]
    fn header_names_are_looked_up_in_any_case() {
        let f = Fixture::new();
        let out = f
            .run(
                r#"record.a = event.headers["X-Shop"]; record.b = event.headers.get("X-SHOP");
                   record.c = "x-SHOP" in event.headers; record.d = "x-other" in event.headers;
                   record.e = event.headers["x-other"]; record.all = event.headers;
                   record.n = event.headers.len();"#,
                json!({}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"a": "acme", "b": "acme", "c": true, "d": false, "e": null,
                   "all": {"x-shop": "acme"}, "n": 1})
        );
        let when = f
            .rules
            .compile_expr(r#"event.headers["X-Shop"] == "acme""#)
            .unwrap();
        assert!(when.eval_bool(&f.rules, &json!({}), &f.ctx()).unwrap());
    }

    #[test]
    fn event_is_read_only_and_built_only_when_named() {
        let f = Fixture::new();
        let out = f
            .run(
                "record.e = `${event.id} ${event.pipeline} ${event.headers[\"x-shop\"]} ${event.received_at}`; record.id = event.body.id;",
                json!({}),
            )
            .unwrap();
        assert_eq!(out["e"], "evt-1 orders acme 2026-01-02T10:00:00Z");
        assert_eq!(out["id"].to_string(), "820982911946154508");
        let err = f.run("event.id = \"x\";", json!({})).unwrap_err();
        assert!(err.message.contains("constant"), "{err}");

        // A body too deep to convert fails only code that names `event`.
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let mut f = Fixture::new();
        f.event.body = Arc::new(deep);
        assert!(f.run("record.x = 1;", json!({})).is_ok());
        assert!(f.run("record.x = event.id;", json!({})).is_ok());
        let err = f.run("record.x = event.body;", json!({})).unwrap_err();
        assert!(err.message.starts_with("event.body"), "{err}");
    }

    /// Not a speed check (the error message shows which limit fired): only a guard against a
    /// hang, generous enough for a loaded machine.
    const HANG: Duration = Duration::from_secs(10);

    #[test]
    fn runaway_loops_fail_fast_and_the_engine_keeps_working() {
        // No operations limit, so the wall-clock deadline is what stops these.
        let f = Fixture::with_limits(Limits {
            max_operations: 0,
            ..Limits::default()
        });
        for src in [
            "loop {}",
            "while true { record.x = 1; }",
            "fn f(n) { f(n) } let i = 0; loop { i += 1; }",
        ] {
            let started = Instant::now();
            let err = f.run(src, json!({})).unwrap_err();
            assert!(started.elapsed() < HANG, "{src}: {:?}", started.elapsed());
            assert_eq!(err.message, "script exceeded 250 ms", "{src}");
            assert!(err.line.is_some());
            assert_eq!(
                f.run("record.ok = true;", json!({})).unwrap(),
                json!({"ok": true})
            );
        }
        // Expressions too.
        let expr = f.rules.compile_expr("{ let i = 0; loop { i += 1 } }");
        if let Ok(expr) = expr {
            let err = expr.eval_bool(&f.rules, &json!({}), &f.ctx()).unwrap_err();
            assert!(err.message.contains("exceeded"), "{err}");
        }

        // The operations limit stops them too, with its own message.
        let f = Fixture::with_limits(Limits {
            max_operations: 10_000,
            ..Limits::default()
        });
        let err = f.run("loop {}", json!({})).unwrap_err();
        assert!(err.message.starts_with("too many operations"), "{err}");
    }

    #[test]
    fn memory_bombs_fail_fast_and_the_engine_keeps_working() {
        let f = Fixture::new();
        for (src, needle) in [
            (r#"let s = "x"; loop { s += s; }"#, "string"),
            (r#"let a = []; loop { a.push(a); }"#, "array"),
            (r#"let a = [1]; loop { a += a; }"#, "array"),
            (r#"let m = #{}; loop { m = #{a: m, b: m}; }"#, "map"),
            (r#"let s = "x"; s.pad(1000000000, "y");"#, "string"),
            (
                r#"record.s = "x"; loop { record.s += record.s; }"#,
                "string",
            ),
        ] {
            let started = Instant::now();
            let err = f.run(src, json!({})).unwrap_err();
            assert!(started.elapsed() < HANG, "{src}: {:?}", started.elapsed());
            assert!(err.message.contains(needle), "{src}: {err}");
            assert_eq!(
                f.run("record.ok = true;", json!({})).unwrap(),
                json!({"ok": true})
            );
        }
    }

    #[test]
    fn nesting_bombs_stop_at_the_deadline_on_a_min_stack_thread() {
        // Rhai recurses over nested values; only the deadline bounds their depth, and evaluating
        // threads need engine::MIN_STACK (the test harness gives 2 MiB, too little in debug).
        let run = || {
            let f = Fixture::new();
            for src in [
                "let a = []; loop { a = [a]; }",
                "let m = #{}; loop { m = #{m: m}; }",
                "let m = #{}; loop { m = #{m: take(m)}; }",
                "loop { record = #{r: record}; }",
            ] {
                let started = Instant::now();
                let err = f.run(src, json!({})).unwrap_err();
                assert!(started.elapsed() < HANG, "{src}: {:?}", started.elapsed());
                assert_eq!(err.message, "script exceeded 250 ms", "{src}");
                assert_eq!(
                    f.run("record.ok = true;", json!({})).unwrap(),
                    json!({"ok": true})
                );
            }
        };
        std::thread::Builder::new()
            .stack_size(engine::MIN_STACK)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn deep_recursion_is_refused() {
        let f = Fixture::new();
        let err = f.run("fn f(n) { f(n + 1) } f(0);", json!({})).unwrap_err();
        assert!(err.message.contains("nested function calls"), "{err}");
        // Nesting built by a script cannot become JSON beyond the limit.
        let err = f
            .run(
                "let a = 1; for i in 0..200 { a = [a]; } record = a;",
                json!({}),
            )
            .unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
    }

    #[test]
    fn compile_errors_have_positions() {
        let rules = Rules::default();
        let err = rules
            .compile_script("s", "let x = 1;\nlet y = ;\n")
            .unwrap_err();
        assert_eq!((err.line, err.col), (Some(2), Some(9)), "{err:?}");

        let err = rules
            .compile_script("s", "record.a = 1;\n  record.b = foo + 1;")
            .unwrap_err();
        assert_eq!((err.line, err.col), (Some(2), Some(14)), "{err:?}");
        assert!(err.message.contains("foo"), "{err}");

        let err = rules.compile_expr("record.total > limit").unwrap_err();
        assert_eq!((err.line, err.col), (Some(1), Some(16)), "{err:?}");

        // `value` is a mapping name, `event` a pipeline name.
        assert!(rules.compile_expr("value + other").is_err());
        assert!(rules.compile_field_expr("event.id").is_err());
        assert!(rules.compile_field_expr("stock.available(\"A\")").is_err());
        assert!(rules.compile_script("s", "eval(\"1\")").is_err());
        assert!(rules.compile_script("s", "import \"x\" as x;").is_err());
        // Deeply nested source is refused by the parser, not a stack overflow.
        for src in [
            format!("{}1{}", "(".repeat(5000), ")".repeat(5000)),
            format!("let a = {}1{};", "[".repeat(5000), "]".repeat(5000)),
            format!("{}{}", "if true {".repeat(2000), "}".repeat(2000)),
            format!("let a = {}1{};", "#{a: ".repeat(3000), "}".repeat(3000)),
        ] {
            let err = rules.compile_script("s", &src).unwrap_err();
            assert!(
                err.message.contains("too deeply nested") || err.message.contains("complex"),
                "{err}"
            );
        }
    }

    #[test]
    fn runtime_errors_have_positions_and_clear_messages() {
        let f = Fixture::new();
        let err = f
            .run(
                "let a = 1;\nif record.bad { throw \"bad order\"; }",
                json!({"bad": true}),
            )
            .unwrap_err();
        assert_eq!(err.message, "bad order");
        assert_eq!(err.line, Some(2));

        let err = f
            .run(
                "fn check(x) {\n  if x > 1 { throw \"too big\" }\n}\ncheck(5);",
                json!({}),
            )
            .unwrap_err();
        assert_eq!(err.message, "too big (in function `check`)");
        assert_eq!(err.line, Some(2));

        let err = f
            .run("record.x = decimal(\"12,50 EUR\");", json!({}))
            .unwrap_err();
        assert!(err.message.contains("12,50 EUR"), "{err}");
        assert_eq!((err.line, err.col), (Some(1), Some(12)));
    }

    #[test]
    fn expressions() {
        let f = Fixture::new();
        let rules = &f.rules;
        let when = rules
            .compile_expr(r#"record.scope == "store/cart/abandoned""#)
            .unwrap();
        assert!(when
            .eval_bool(rules, &json!({"scope": "store/cart/abandoned"}), &f.ctx())
            .unwrap());
        assert!(!when.eval_bool(rules, &json!({}), &f.ctx()).unwrap());
        let not_bool = rules.compile_expr("record.scope").unwrap();
        let err = not_bool
            .eval_bool(rules, &json!({"scope": "x"}), &f.ctx())
            .unwrap_err();
        assert_eq!(err.message, r#"expected true or false, got "x""#);
        let err = not_bool.eval_bool(rules, &json!({}), &f.ctx()).unwrap_err();
        assert_eq!(err.message, "expected true or false, got ()");
        assert_eq!(f.value("event.id", json!({})).unwrap(), json!("evt-1"));
        let strings = rules
            .compile_expr(r#"event.id == "evt-1" && event.headers["x-shop"] == "acme" && event.body.total == "19.99""#)
            .unwrap();
        assert!(strings.eval_bool(rules, &json!({}), &f.ctx()).unwrap());
        assert_eq!(
            f.value("#{a: 1, b: [record.x]}", parse(r#"{"x": 1.50}"#))
                .unwrap(),
            parse(r#"{"a":1,"b":[1.50]}"#)
        );

        // Mapping expressions.
        let upper = rules
            .compile_field_expr(
                "if value == () { \"none\" } else { value.to_upper() + record.suffix }",
            )
            .unwrap();
        assert_eq!(
            upper
                .eval_field(rules, Some(&json!("ab")), &json!({"suffix": "!"}))
                .unwrap(),
            json!("AB!")
        );
        assert_eq!(
            upper.eval_field(rules, None, &json!({})).unwrap(),
            json!("none")
        );
        let cents = rules
            .compile_field_expr("(decimal(value) * 100).to_int()")
            .unwrap();
        assert_eq!(
            cents
                .eval_field(rules, Some(&json!("19.99")), &json!({}))
                .unwrap(),
            json!(1999)
        );
        let uses_state = rules.compile_expr("stock.available(record.sku)").unwrap();
        assert!(uses_state.eval_field(rules, None, &json!({})).is_err());
        let plain = rules.compile_expr("record.a * 2").unwrap();
        assert_eq!(
            plain.eval_field(rules, None, &json!({"a": 2})).unwrap(),
            json!(4)
        );
        // compile_expr takes mapping expressions too; `value` is refused where it means nothing.
        let mapping = rules.compile_expr("value * 2").unwrap();
        assert_eq!(
            mapping
                .eval_field(rules, Some(&json!(21)), &json!({}))
                .unwrap(),
            json!(42)
        );
        let err = mapping.eval_bool(rules, &json!({}), &f.ctx()).unwrap_err();
        assert!(
            err.message.contains("`value` exists only in mapping"),
            "{err}"
        );
    }

    #[test]
    fn state_through_scripts() {
        let f = Fixture::new();
        let out = f
            .run(
                r#"
                let c = customers.record_order(record.customer, record.id, record.total, record.date);
                customers.record_order(record.customer, record.id, record.total, record.date); // replay
                let c2 = customers.record_order(record.customer, 2, "0.10", "2026-01-03T09:00:00Z");
                record.tier = if c2.lifetime_value >= 10000 { "Platinum" } else if c2.lifetime_value >= 10 { "Silver" } else { "Bronze" };
                record.customer_state = customers.get(record.customer);
                record.nobody = customers.get("nobody");
                "#,
                parse(r#"{"customer": "c-42", "id": 820982911946154508, "total": 19.99, "date": "2026-01-02"}"#),
            )
            .unwrap();
        assert_eq!(out["tier"], "Silver");
        assert_eq!(
            serde_json::to_string(&out["customer_state"]).unwrap(),
            r#"{"first_order":"2026-01-02","last_order":"2026-01-03","lifetime_value":20.09,"orders":2}"#
        );
        assert_eq!(out["nobody"], Value::Null);

        let out = f
            .run(
                r#"
                stock.set("A", 5);
                stock.set("B", 1);
                record.first = stock.reserve(record.id, record.items);
                record.again = stock.reserve(record.id, record.items);
                record.short = stock.reserve("o-2", [#{sku: "A", qty: 1}, #{sku: "B", qty: 5}]);
                record.avail_a = stock.available("A");
                record.released = stock.release(record.id);
                record.avail_after = stock.available("A");
                stock.reserve("o-3", [#{sku: "A", qty: 4}]);
                record.committed = stock.commit("o-3");
                record.left = stock.available("A");
                "#,
                json!({"id": 7, "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1.0}]}),
            )
            .unwrap();
        assert_eq!(out["first"], json!({"ok": true, "shortfalls": []}));
        assert_eq!(out["again"], out["first"]);
        assert_eq!(
            out["short"],
            json!({"ok": false, "shortfalls": [{"available": 0, "requested": 5, "sku": "B"}]})
        );
        assert_eq!(out["avail_a"], json!(3));
        assert_eq!(out["released"], json!(true));
        assert_eq!(out["avail_after"], json!(5));
        assert_eq!(out["committed"], json!(true));
        assert_eq!(out["left"], json!(1));

        let out = f
            .run(
                r#"
                record.none = kv.get("k");
                kv.set("k", #{last: record.n, at: 1.50});
                record.doc = kv.get("k");
                record.c1 = kv.incr("count");
                record.c2 = kv.incr("count", 10);
                "#,
                json!({"n": 12345678901234567890_u64}),
            )
            .unwrap();
        assert_eq!(out["none"], Value::Null);
        assert_eq!(
            serde_json::to_string(&out["doc"]).unwrap(),
            r#"{"at":1.50,"last":12345678901234567890}"#
        );
        assert_eq!(out["c2"], json!(11));
        // kv is the pipeline's own.
        assert_eq!(
            crate::state::kv::get(&*f.state, "orders", "count").unwrap(),
            Some(json!(11))
        );

        // State errors are run errors naming the method.
        for (src, needle) in [
            (
                r#"stock.reserve("o", [#{sku: "A", qty: 0}]);"#,
                "stock.reserve: quantity",
            ),
            (
                r#"stock.reserve("o", [#{qty: 1}]);"#,
                "stock.reserve: item 0 has no `sku`",
            ),
            (
                r#"stock.reserve("o", "A");"#,
                "stock.reserve: items must be an array",
            ),
            (r#"stock.set("A", -1);"#, "stock.set"),
            (
                r#"customers.record_order("c", "o", "12,50 EUR", "2026-01-01");"#,
                "customers.record_order: amount",
            ),
            (
                r#"customers.record_order("c", "o", 1, "yesterday");"#,
                "customers.record_order",
            ),
            (r#"kv.set("k", stock);"#, "kv.set"),
            (r#"kv.set("k", "s"); kv.incr("k");"#, "kv.incr"),
        ] {
            let err = f.run(src, json!({})).unwrap_err();
            assert!(err.message.contains(needle), "{src}: {err}");
            assert!(err.line.is_some(), "{src}: {err:?}");
        }
        // A handle cannot be replaced or leak into the record.
        assert!(f.run("stock = 1;", json!({})).is_err());
        let err = f.run("record.s = stock;", json!({})).unwrap_err();
        assert!(err.message.contains("Stock"), "{err}");
    }

    #[test]
    fn deadline_is_per_evaluation_across_threads() {
        let rules = Rules::default();
        let runaway = rules.compile_script("runaway", "loop {}").unwrap();
        let quick = rules.compile_expr("record.x + 1").unwrap();
        let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let event = Fixture::new().event;
        std::thread::scope(|s| {
            let r = &rules;
            let (st, ev) = (&state, &event);
            let slow = s.spawn(move || {
                runaway
                    .run(
                        r,
                        json!({}),
                        &Ctx {
                            event: ev,
                            state: st,
                        },
                    )
                    .unwrap_err()
            });
            for i in 0..200 {
                let v = quick
                    .eval_value(
                        r,
                        &json!({"x": i}),
                        &Ctx {
                            event: ev,
                            state: st,
                        },
                    )
                    .unwrap();
                assert_eq!(v, json!(i + 1));
            }
            let err = slow.join().unwrap();
            assert!(
                err.message.contains("exceeded") || err.message.contains("too many"),
                "{err}"
            );
        });
    }

    #[test]
    fn functions_do_not_see_the_scope() {
        let f = Fixture::new();
        for src in [
            "fn f() { record } f();",
            "fn f() { event.id } f();",
            "fn f() { stock.available(\"A\") } f();",
        ] {
            let err = f.run(src, json!({})).unwrap_err();
            assert!(err.message.contains("Variable not found"), "{src}: {err}");
        }
        // They get what they need as parameters.
        let out = f
            .run(
                "fn double(r) { r.n * 2 } record.m = double(record);",
                json!({"n": 2}),
            )
            .unwrap();
        assert_eq!(out["m"], json!(4));
    }

    #[test]
    fn what_docs_rules_md_promises() {
        let f = Fixture::new();
        let out = f
            .run(
                r#"
                record.has = "a" in record;
                record.missing_is_unit = record.missing == ();
                record.sq = 1.10 * 1.10;
                record.r = (2.675).round(2);
                record.fl = (2.7).floor();
                record.ce = (2.1).ceiling();
                record.i = (2.0).to_int();
                record.account = #{};
                record.account.Tier__c = "Gold";
                "#,
                json!({"a": 1}),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"a":1,"account":{"Tier__c":"Gold"},"ce":3,"fl":2,"has":true,"i":2,"missing_is_unit":true,"r":2.68,"sq":1.2100}"#
        );
        let err = f.run("record.nope.x = 1;", json!({})).unwrap_err();
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn print_and_debug_do_not_write_to_stdout() {
        let f = Fixture::new();
        assert!(f
            .run(r#"print("hello"); debug(record);"#, json!({"a": 1}))
            .is_ok());
    }
}
