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
        .compile_field_expr("if value == () { \"none\" } else { value.to_upper() + record.suffix }")
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

/// `src` run explained on `record`: its result and each decision as
/// `line:col when (label = value, …) → outcome`.
fn decided(f: &Fixture, src: &str, record: Value) -> (Result<Value, RunError>, Vec<String>, usize) {
    let script = f.rules.compile_script("test", src).unwrap();
    let (out, decided) = script.run_explained(&f.rules, record, &f.ctx());
    let lines = decided
        .decisions
        .iter()
        .map(|d| {
            let reads: Vec<String> = d
                .reads
                .iter()
                .map(|(l, v)| match v {
                    Some(v) => format!("{l} = {v}"),
                    None => format!("{l} missing"),
                })
                .collect();
            let outcome = match &d.result {
                Ok(b) => b.to_string(),
                Err(e) => format!("error: {e}"),
            };
            format!(
                "{}:{} {} ({}) → {outcome}",
                d.line,
                d.col,
                d.when,
                reads.join(", ")
            )
        })
        .collect();
    (out, lines, decided.omitted)
}

#[test]
fn an_explained_script_records_each_if_it_evaluated_with_the_values_read_before_it() {
    let f = Fixture::new();
    let src = "let amount = record.amount;\n\
               if amount >= 100 {\n  if record.vip == true { record.tier = \"gold\"; } else { record.tier = \"silver\"; }\n\
               } else if amount > 50 { record.tier = \"bronze\"; } else { record.tier = \"none\"; }\n\
               record.p = if amount > 500 { \"High\" } else { \"Normal\" };";
    let (out, lines, omitted) = decided(&f, src, json!({"amount": 612, "vip": false}));
    assert_eq!(out.unwrap()["tier"], "silver");
    assert_eq!(
        lines,
        [
            "2:1 amount >= 100 (amount = 612) → true",
            "3:3 record.vip == true (record.vip = false) → false",
            "5:12 amount > 500 (amount = 612) → true",
        ]
    );
    assert_eq!(omitted, 0);
    // The else-if chain: both conditions tried, in order; a field not there is told so.
    let (out, lines, _) = decided(&f, src, json!({"amount": 20}));
    assert_eq!(out.unwrap()["tier"], "none");
    assert_eq!(
        lines,
        [
            "2:1 amount >= 100 (amount = 20) → false",
            "4:8 amount > 50 (amount = 20) → false",
            "5:12 amount > 500 (amount = 20) → false",
        ]
    );
    // Explained or not, the script does the same.
    let script = f.rules.compile_script("test", src).unwrap();
    let plain = script
        .run(&f.rules, json!({"amount": 75}), &f.ctx())
        .unwrap();
    let (explained, _, _) = decided(&f, src, json!({"amount": 75}));
    assert_eq!(plain, explained.unwrap());
}

#[test]
fn decisions_in_a_loop_are_bounded_and_the_rest_counted() {
    let f = Fixture::new();
    let src = "let n = 0;\nfor i in 0..1000 { if i % 2 == 0 { n += 1; } }\nrecord.n = n;";
    let (out, lines, omitted) = decided(&f, src, json!({}));
    assert_eq!(out.unwrap()["n"], 500);
    assert_eq!(lines.len(), MAX_DECISIONS);
    assert_eq!(lines[1], "2:20 i % 2 == 0 (i = 1) → false");
    assert_eq!(omitted, 1000 - MAX_DECISIONS);
    // A large array read by a condition in a loop is kept clipped, not whole.
    let big: Vec<i64> = (0..50_000).collect();
    let src =
        "let c = 0;\nfor i in 0..100 { if record.items.len() > i { c += 1; } }\nrecord.c = c;";
    let (out, lines, _) = decided(&f, src, json!({ "items": big }));
    assert_eq!(out.unwrap()["c"], 100);
    assert!(lines[0].contains("more items"), "{}", lines[0]);
    assert!(lines[0].len() < 1000, "{}", lines[0]);
}

#[test]
fn a_condition_calling_a_function_records_what_it_came_to() {
    let f = Fixture::new();
    let src = "fn big(x) { if x > 10 { true } else { false } }\n\
               if big(record.n) && type_of(record.email) != \"string\" { record.ok = true; }";
    let (out, lines, _) = decided(&f, src, json!({"n": 12}));
    assert_eq!(out.unwrap()["ok"], true);
    // The function's own `if` is evaluated while the outer condition is, so it comes first.
    assert_eq!(
        lines,
        [
            "1:13 x > 10 (x = 12) → true",
            "2:1 big(record.n) && type_of(record.email) != \"string\" (record.n = 12, record.email missing) → true",
        ]
    );
}

#[test]
fn a_script_that_fails_keeps_the_decisions_before_and_its_error_where_the_file_has_it() {
    let f = Fixture::new();
    // The error is on a line the recording source has calls inserted in.
    let src = "if record.a > 1 { record.b = 1; }\nif record.z >= 0 { record.c = 1 / record.z; }";
    let script = f.rules.compile_script("test", src).unwrap();
    let plain = script
        .run(&f.rules, json!({"a": 2, "z": 0}), &f.ctx())
        .unwrap_err();
    let (out, lines, _) = decided(&f, src, json!({"a": 2, "z": 0}));
    let explained = out.unwrap_err();
    assert_eq!(
        lines,
        [
            "1:1 record.a > 1 (record.a = 2) → true",
            "2:1 record.z >= 0 (record.z = 0) → true"
        ]
    );
    assert_eq!((plain.line, plain.col), (Some(2), Some(33)), "{plain:?}");
    assert_eq!((explained.line, explained.col), (plain.line, plain.col));
    assert_eq!(explained.message, plain.message);
    // A condition that is not a bool: recorded as such, and the `if` fails as it would.
    let (out, lines, _) = decided(&f, "if record.a { 1 }", json!({"a": "yes"}));
    assert!(out.is_err());
    assert_eq!(
        lines,
        ["1:1 record.a (record.a = \"yes\") → error: the condition is string, not a bool"]
    );
    // A script may not name the recording functions.
    let e = f
        .rules
        .compile_script("t", "__crossdock_if(0, [], true)")
        .unwrap_err();
    assert!(e.message.contains("reserved"), "{e}");
}

#[test]
fn an_explained_script_may_read_the_constant_event_in_a_condition() {
    let f = Fixture::new();
    // `event` and a script's own `const` are read-only: recording what a condition read of
    // them must not count as changing them.
    let src = "if event.received_at != \"\" { record.seen = true; }\n\
               const LIMIT = 10;\n\
               if record.n > LIMIT { record.over = LIMIT; }";
    let (out, lines, _) = decided(&f, src, json!({"n": 12}));
    let out = out.unwrap();
    assert_eq!(out["over"], 10, "{out}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("→ true"), "{lines:?}");
    assert!(lines[1].starts_with("3:1 record.n > LIMIT"), "{lines:?}");
    let script = f.rules.compile_script("test", src).unwrap();
    assert_eq!(
        script.run(&f.rules, json!({"n": 12}), &f.ctx()).unwrap(),
        out
    );
}
