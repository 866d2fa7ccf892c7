//! `run_body` keeping only the actions (`Keep::Actions`, the runtime's way: closing sends move
//! their payloads out of the record) gives exactly the actions it gives keeping the record
//! whole (`Keep::Record`, dry runs and tests), whatever the payloads overlap or however the
//! sends are placed; and lending (`Keep::Lent`, `dry-run`: payloads moved, then written back
//! in place when the outcome is serialised) gives exactly the JSON of `Keep::Record`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crossdock::config::env::process_env;
use crossdock::flow::input::Body;
use crossdock::flow::{load, CompileOptions, GivenAnswers, Keep, RunOptions};
use crossdock::state::{MemoryStore, StateStore};
use crossdock::testing::event_info;

const PIPELINES: &[(&str, &str)] = &[
    // Disjoint closing payloads: each may be moved.
    (
        "disjoint",
        r#"
  - send: { to: out, op: print, payload: $.a }
  - send: { to: out, op: print, payload: $.d }
  - send: { to: out, op: print, payload: $.e.f }
"#,
    ),
    // $.a contains $.a.b: neither may be moved, $.d may.
    (
        "nested",
        r#"
  - send: { to: out, op: print, payload: $.a.b }
  - send: { to: out, op: print, payload: $.d }
  - send: { to: out, op: print, payload: $.a }
"#,
    ),
    // The same payload twice, and a send of the whole record: nothing moves.
    (
        "twice",
        r#"
  - send: { to: out, op: print, payload: $.a }
  - send: { to: out, op: print, payload: $.a }
  - send: { to: out, op: print }
"#,
    ),
    // A send followed by another step is not closing: the record it copies from changes later.
    (
        "not-closing",
        r#"
  - send: { to: out, op: print, payload: $.a }
  - set: { a.b: "changed" }
  - send: { to: out, op: print, payload: $.a }
  - send: { to: out, op: print, payload: $.missing }
"#,
    ),
];

#[test]
fn delivery_gives_the_same_actions_as_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crossdock.yaml"),
        "connectors:\n  out: { kind: stdout }\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    for (name, steps) in PIPELINES {
        let text = format!(
            "pipeline: {name}\nsource:\n  webhook: {{ path: /{name} }}\nsteps:\n  - set: {{ e.f: \"g\", d: 4 }}{steps}"
        );
        std::fs::write(dir.path().join(format!("pipelines/{name}.yaml")), text).unwrap();
    }
    let (project, _) = match load(dir.path(), &process_env, CompileOptions::default()) {
        Ok(p) => p,
        Err(d) => panic!("the test project does not load:\n{d}"),
    };
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let body = br#"{"a": {"b": 1, "c": [1, {"x": "y"}]}, "d": "text"}"#;
    let mut moved_somewhere = false;
    let mut lent_somewhere = false;
    for (name, _) in PIPELINES {
        let flow = project.pipeline(name).unwrap();
        let run = |how: &str| {
            let event = event_info(name, None, 1, "t");
            let body = Ok(Body::Json(&body[..]));
            let given = GivenAnswers::default();
            let keep = match how {
                "delivery" => Keep::Actions,
                "lending" => Keep::Lent,
                _ => Keep::Record,
            };
            let how = RunOptions::keeping(keep);
            flow.run_body(&project.rules, event, body, "input", &state, &given, how)
        };
        let (kept, delivered, lent) = (run("kept"), run("delivery"), run("lending"));
        // What dry-run prints: the lent payloads are back in their places.
        let printed = lent.to_json().unwrap();
        assert_eq!(printed, kept.to_json().unwrap(), "{name}");
        let expected = serde_json::json!({
            "pipeline": kept.pipeline,
            "event_id": kept.event_id,
            "triggered": kept.triggered,
            "record": kept.record,
            "actions": kept.actions,
            "state_changes": kept.state_changes,
            "errors": kept.errors,
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&printed).unwrap(),
            expected,
            "{name}"
        );
        lent_somewhere |= !lent.lent.is_empty() && lent.record != kept.record;
        assert_eq!(kept.errors, delivered.errors, "{name}");
        assert_eq!(kept.actions, delivered.actions, "{name}");
        assert!(!kept.actions.is_empty(), "{name}");
        // A dry run shows the whole record; delivery may have moved parts out of it.
        assert_eq!(kept.record["d"], 4, "{name}");
        moved_somewhere |= delivered.record.get("d").is_none();
    }
    assert!(
        moved_somewhere && lent_somewhere,
        "no payload was moved or lent: the test checks nothing"
    );
}

/// `dry-run` builds each event's mapping into the record of an earlier outcome
/// (`Outcome::into_record`): whatever shapes follow each other, every outcome is what a fresh
/// run gives.
#[test]
fn building_into_earlier_records_gives_the_outcomes_of_fresh_runs() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("crossdock.yaml", "connectors:\n  out: { kind: stdout }\n"),
        (
            "mappings/order.yaml",
            r#"mapping: order
fields:
  id: { from: $.id, type: string, required: true }
  account.Name: { from: $.customer.name, default: "" }
  account.Email: { from: $.customer.email, transform: lower }
  account.Key: { template: "C-{{ $.customer.id }}" }
  order.Number: { template: "O-{{ $.id }}" }
  order.Total: { from: $.total, type: decimal }
  order.Note: $.note
  order.Lines:
    each: $.items[*]
    fields:
      Sku: { from: $.sku, required: true }
      Qty: { from: $.qty, type: integer, default: 1 }
"#,
        ),
        (
            "scripts/order.rhai",
            r#"if record.account.Name == "" { record.account.Name = "Guest " + record.id; }
record.order.Account = #{ Key: record.account.Key };
if record.id == "3" { record.extra = [1, 2]; }
"#,
        ),
        (
            "pipelines/orders.yaml",
            r#"pipeline: orders
source: { webhook: { path: /orders } }
steps:
  - map: order
  - script: order
  - send: { to: out, op: print, payload: $.account }
  - send: { to: out, op: print, payload: $.order }
"#,
        ),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let (project, _) = match load(dir.path(), &process_env, CompileOptions::default()) {
        Ok(p) => p,
        Err(d) => panic!("the test project does not load:\n{d}"),
    };
    let flow = project.pipeline("orders").unwrap();
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let bodies = [
        r#"{"id": 1, "customer": {"id": 9, "name": "Ann", "email": "ANN@X.COM"}, "total": "10.50",
            "note": "leave at door", "items": [{"sku": "A", "qty": 2}, {"sku": "B"}]}"#,
        r#"{"id": 2, "total": 3, "items": []}"#,
        r#"{"id": 3, "customer": {"id": 1}, "items": [{"sku": "C"}, {"sku": "D", "qty": "4"},
            {"sku": "E", "qty": 5}]}"#,
        r#"{"id": 4, "items": [{"qty": 1}]}"#,
        r#"{"total": "1"}"#,
        r#"{"id": 5, "customer": {"name": "Bo"}, "note": null, "items": [{"sku": "F"}]}"#,
    ];
    let mut spare = None;
    let mut reused = 0;
    for round in 0..3 {
        for (i, text) in bodies.iter().enumerate() {
            let bytes = text.as_bytes();
            let event = || event_info("orders", None, 1, "t");
            let given = GivenAnswers::default();
            let fresh = flow.run_body(
                &project.rules,
                event(),
                Ok(Body::Json(bytes)),
                "input",
                &state,
                &given,
                RunOptions::keeping(Keep::Record),
            );
            let mut body = serde_json::Value::Null;
            flow.parse_into(bytes, &mut body).unwrap();
            reused += usize::from(spare.is_some());
            let (built_into, _) = flow.run_parsed_lending(
                &project.rules,
                event(),
                body,
                bytes,
                &state,
                &given,
                spare.take(),
            );
            assert_eq!(
                built_into.to_json().unwrap(),
                fresh.to_json().unwrap(),
                "round {round}, body {i}"
            );
            assert_eq!(built_into.errors.is_empty(), i != 3 && i != 4, "body {i}");
            spare = Some(built_into.into_record());
        }
    }
    assert!(reused > 10, "{reused}");
}
