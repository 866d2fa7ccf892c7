//! An event's explanation (`Flow::run_body` with `RunOptions::explain`, what the runtime keeps in a trail): the
//! shipped bigcommerce-carts pipeline on the README's abandoned-cart webhook says what each
//! condition read and came to, what each step changed and what was sent; secret-named fields
//! are masked; a huge record and thousands of steps stay within the bound; and a run that is
//! not asked for an explanation makes none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use crossdock::config::env::process_env;
use crossdock::flow::explain::{Explanation, What, MAX_BYTES};
use crossdock::flow::input::Body;
use crossdock::flow::{load, CompileOptions, GivenAnswers, Keep, Outcome, Project, RunOptions};
use crossdock::state::{MemoryStore, StateStore};
use crossdock::testing::event_info;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/bigcommerce").join(name)).unwrap()
}

fn shipped() -> Project {
    match load(repo(), &process_env, CompileOptions::default()) {
        Ok((p, _)) => p,
        Err(d) => panic!("the shipped project does not load:\n{d}"),
    }
}

/// The README's cart webhook through bigcommerce-carts, the store answering `get_cart` with
/// `cart`.
fn cart_run(project: &Project, cart: &Value, explained: bool) -> Outcome {
    let flow = project.pipeline("bigcommerce-carts").unwrap();
    let given = GivenAnswers {
        answers: [("bigcommerce.get_cart".to_string(), cart.clone())].into(),
        hint: "",
    };
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let mut event = event_info("bigcommerce-carts", None, 1, "t");
    event.received_at = "2026-11-21T09:30:00Z".into();
    let body = fixture("webhook-cart-abandoned.json");
    flow.run_body(
        &project.rules,
        event,
        Ok(Body::Json(&body)),
        "input",
        &state,
        &given,
        RunOptions::keeping(Keep::Actions).explained(explained),
    )
}

fn explanation(outcome: &Outcome) -> &Explanation {
    outcome.explanation.as_deref().expect("an explanation")
}

/// The entries of `kind` (`switch`, `change`, ...), as JSON.
fn entries(e: &Explanation, kind: &str) -> Vec<Value> {
    serde_json::to_value(e).unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn a_high_value_cart_explains_its_opportunity_with_the_values_each_condition_read() {
    let project = shipped();
    let cart: Value = serde_json::from_slice(&fixture("cart-high-value.json")).unwrap();
    let outcome = cart_run(&project, &cart, true);
    assert!(outcome.ok(), "{:?}", outcome.errors);
    let e = explanation(&outcome);
    assert_eq!(e.omitted, 0);
    let text = serde_json::to_string(e).unwrap();

    // The trigger: what it read and what it came to.
    let first = serde_json::to_value(&e.entries[0]).unwrap();
    assert_eq!(first["step"], "trigger");
    assert_eq!(
        first["test"]["when"],
        r#"record.scope == "store/cart/abandoned""#
    );
    assert_eq!(
        first["test"]["reads"],
        json!([{"read": "record.scope", "value": "store/cart/abandoned"}])
    );
    assert_eq!(
        first["test"]["with_values"],
        r#""store/cart/abandoned" == "store/cart/abandoned""#
    );
    assert_eq!(first["test"]["result"], true);
    assert_eq!(first["then"], "continue");

    // The fetch: the call it made, and the cart it brought into the record.
    let changes = entries(e, "change");
    let fetch = &changes[0];
    assert_eq!(
        fetch["call"],
        json!({"connector": "bigcommerce", "op": "get_cart", "params": {"id": "09346904-4175-44fd-be53-f7e598531b6c"}})
    );
    assert!(fetch["diff"]["changes"]
        .as_array()
        .unwrap()
        .contains(&json!({"op": "+", "path": "record.data.cart_amount", "new": 612.5})));
    assert!(fetch["diff"]["changes"]
        .as_array()
        .unwrap()
        .contains(&json!({"op": "-", "path": "record.scope", "old": "store/cart/abandoned"})));
    // The webhook's cart token is neither read nor shown.
    assert!(!text.contains("1eed6d2d979776ff18e695ceeb10ea61"), "{text}");

    // The first switch (a signed-in shopper without an e-mail): no arm, on the values it read.
    let switches = entries(e, "switch");
    assert_eq!(switches.len(), 2, "{text}");
    let arm = &switches[0]["arms"][0];
    assert_eq!(arm["result"], false);
    let reads = arm["reads"].as_array().unwrap();
    assert!(reads.contains(&json!({"read": "record.data.customer_id", "value": 11})));
    assert!(reads.contains(&json!({"read": "record.data.email", "value": "Jane.Doe@example.com"})));
    assert_eq!(
        arm["with_values"],
        r#"11 > 0 && (type_of("Jane.Doe@example.com") != "string" || "Jane.Doe@example.com" == "")"#
    );
    assert!(switches[0].get("taken").is_none());

    // The script: what it read, and that it set the route.
    let script = changes
        .iter()
        .find(|c| {
            c["step"]
                .as_str()
                .unwrap()
                .contains("script cart-opportunity-or-lead")
        })
        .unwrap();
    assert!(script["reads"]
        .as_array()
        .unwrap()
        .contains(&json!({"read": "record.amount", "value": 612.5})));
    assert!(script["diff"]["changes"]
        .as_array()
        .unwrap()
        .contains(&json!({"op": "+", "path": "record.route", "new": "opportunity"})));
    // What it set is in the diff, not among its reads as missing.
    assert!(!script["reads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["read"] == "record.route"));
    // Why the route is "opportunity": the script's own `if`s, where they are, the values they
    // read and what they came to.
    assert_eq!(
        script["decisions"],
        json!([
            {"at": "scripts/cart-opportunity-or-lead.rhai:19:1", "when": "amount >= 100.0",
             "reads": [{"read": "amount", "value": 612.5}], "result": true},
            {"at": "scripts/cart-opportunity-or-lead.rhai:44:15", "when": "amount > 500.0",
             "reads": [{"read": "amount", "value": 612.5}], "result": true},
        ])
    );

    // The decision, and where it went.
    let decision = &switches[1];
    assert_eq!(
        decision["arms"][0]["when"],
        r#"record.route == "opportunity""#
    );
    assert_eq!(
        decision["arms"][0]["with_values"],
        r#""opportunity" == "opportunity""#
    );
    assert_eq!(decision["arms"][0]["result"], true);
    assert_eq!(decision["taken"], 0);
    assert_eq!(
        decision["then"],
        "steps[4].switch[0].steps[0] (send salesforce upsert Opportunity)"
    );

    // What was sent: the Opportunity first (action 0), then the Task.
    let sends = entries(e, "send");
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0]["object"], "Opportunity");
    assert_eq!(sends[0]["action"], 0);
    assert_eq!(sends[0]["payload"]["Amount"], 612.5);
    assert_eq!(
        sends[0]["payload"]["External_Id__c"],
        "BC-CART-09346904-4175-44fd-be53-f7e598531b6c"
    );
    assert_eq!(sends[1]["object"], "Task");
    assert_eq!(sends[1]["action"], 1);
    assert_eq!(
        sends[0]["payload"],
        serde_json::to_value(&outcome.actions[0].payload).unwrap()
    );

    // In the order the steps ran.
    let order: Vec<usize> = e
        .entries
        .iter()
        .filter_map(|x| outcome.steps.iter().position(|s| **s == *x.step))
        .collect();
    assert_eq!(
        order.len(),
        e.entries.len() - 1,
        "all but the trigger are steps"
    );
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");

    // Without asking, nothing is made.
    assert!(cart_run(&project, &cart, false).explanation.is_none());
}

#[test]
fn a_small_cart_explains_the_switch_going_to_otherwise() {
    let project = shipped();
    let cart: Value = serde_json::from_slice(&fixture("cart-low-value.json")).unwrap();
    let outcome = cart_run(&project, &cart, true);
    assert!(outcome.ok(), "{:?}", outcome.errors);
    let switches = entries(explanation(&outcome), "switch");
    let decision = &switches[1];
    assert_eq!(
        decision["arms"][0]["with_values"],
        r#""lead" == "opportunity""#
    );
    assert_eq!(decision["arms"][0]["result"], false);
    assert_eq!(decision["taken"], 1);
    assert_eq!(decision["otherwise"], true);
    assert_eq!(
        decision["then"],
        "steps[4].switch[1].otherwise[0] (send salesforce create Lead)"
    );
    let script = entries(explanation(&outcome), "change")
        .into_iter()
        .find(|c| c["step"].as_str().unwrap().contains("script"))
        .unwrap();
    assert_eq!(script["decisions"][0]["when"], "amount >= 100.0");
    assert_eq!(script["decisions"][0]["result"], false);
}

const HUGE: &str = r#"
pipeline: huge
source:
  webhook: { path: /huge }
steps:
  - filter: 'record.note != ""'
  - set: { note: "short now", added: 1 }
  - each:
      in: $.items
      max: 100000
      steps:
        - set: { item.seen: true }
        - send: { to: out, op: print, payload: $.item }
"#;

#[test]
fn a_huge_record_and_thousands_of_steps_stay_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crossdock.yaml"),
        "connectors:\n  out: { kind: stdout }\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/huge.yaml"), HUGE).unwrap();
    let (project, _) = match load(dir.path(), &process_env, CompileOptions::default()) {
        Ok(p) => p,
        Err(d) => panic!("the test project does not load:\n{d}"),
    };
    let flow = project.pipeline("huge").unwrap();
    let run = |body: Value| {
        let bytes = serde_json::to_vec(&body).unwrap();
        let state: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let outcome = flow.run_body(
            &project.rules,
            event_info("huge", None, 1, "t"),
            Ok(Body::Json(&bytes)),
            "input",
            &state,
            &GivenAnswers::default(),
            RunOptions::keeping(Keep::Actions).explained(true),
        );
        assert!(outcome.ok(), "{:?}", outcome.errors);
        let size = serde_json::to_vec(explanation(&outcome)).unwrap().len();
        assert!(size <= MAX_BYTES, "{size} bytes");
        outcome
    };

    // A 1 MB string and 20,000 fields: each value quoted is cut short, each diff bounded.
    let mut body = serde_json::Map::new();
    body.insert("note".into(), Value::from("x".repeat(1 << 20)));
    for i in 0..20_000 {
        body.insert(format!("field{i}"), Value::from(i));
    }
    body.insert("items".into(), json!([]));
    let outcome = run(Value::Object(body));
    let e = explanation(&outcome);
    assert_eq!(e.omitted, 0);
    let filter = serde_json::to_value(&e.entries[0]).unwrap();
    let note = filter["test"]["reads"][0]["value"].as_str().unwrap();
    assert!(note.len() < 400 && note.contains("more chars"), "{note}");
    let What::Change { diff, .. } = &e.entries[1].what else {
        panic!("{:?}", e.entries[1]);
    };
    assert_eq!(diff.changes.len(), 2, "{diff:?}");
    assert_eq!(diff.changes[0].path, "record.note");
    assert_eq!(diff.changes[0].new, Some(Value::from("short now")));
    assert_eq!(diff.changes[1].path, "record.added");
    let old = diff.changes[0].old.as_ref().unwrap().as_str().unwrap();
    assert!(old.len() < 400, "{old}");

    // 5,000 elements, two steps each: the entries stop at the bound and the rest are counted.
    let items: Vec<Value> = (0..5_000).map(|i| json!({"n": i})).collect();
    let outcome = run(json!({"note": "n", "items": items}));
    assert_eq!(outcome.actions.len(), 5_000);
    let e = explanation(&outcome);
    assert!(e.omitted > 0);
    // filter, set, each, then per element its set and its send
    assert_eq!(e.entries.len() + e.omitted, 3 + 2 * 5_000);
    assert!(e.entries.iter().any(|x| x.step.ends_with("#0")));
}
