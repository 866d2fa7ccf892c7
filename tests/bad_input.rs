//! Hostile input through the real binary: every case gets a clear per-event error (or a
//! result), never a panic, a hang or an abort. Inputs too big to keep as fixtures are made here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_crossdock")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dry_run(pipeline: &str, input: &Path) -> (Output, Vec<Value>) {
    dry_run_with(pipeline, input, &[])
}

/// bigcommerce-orders on its webhook, with `order` as the answer of its two fetches (the
/// order, and its `products` as the line items).
fn dry_run_order(dir: &Path, order: &Value) -> (Output, Vec<Value>) {
    let mut head = order.clone();
    let products = head
        .as_object_mut()
        .and_then(|o| o.remove("products"))
        .unwrap_or(Value::Null);
    let order_file = dir.join("order.json");
    let products_file = dir.join("products.json");
    std::fs::write(&order_file, serde_json::to_vec(&head).expect("json")).expect("write");
    std::fs::write(&products_file, serde_json::to_vec(&products).expect("json")).expect("write");
    let fetch = [
        format!("bigcommerce.get_order={}", order_file.display()),
        format!("bigcommerce.get_order_products={}", products_file.display()),
    ];
    dry_run_with(
        "bigcommerce-orders",
        &repo().join("tests/fixtures/bigcommerce/webhook-order-created.json"),
        &["--fetch", &fetch[0], "--fetch", &fetch[1]],
    )
}

fn dry_run_with(pipeline: &str, input: &Path, extra: &[&str]) -> (Output, Vec<Value>) {
    let out = Command::new(bin())
        .args([
            "dry-run",
            pipeline,
            "--format",
            "json",
            "--received-at",
            "2026-11-21T09:30:00Z",
            "--input",
        ])
        .arg(input)
        .arg("--project")
        .arg(repo())
        .args(extra)
        .output()
        .expect("run crossdock");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "status {:?}: {stderr}",
        out.status
    );
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:.200}")))
        .collect();
    (out, events)
}

/// Order 250 with its line items under `products`, as the two fetches make it.
fn order_fixture() -> Value {
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(repo().join("tests/fixtures/bigcommerce").join(name))
            .expect("fixture");
        serde_json::from_str(&text).expect("fixture is JSON")
    };
    let mut order = read("order-250.json");
    order["products"] = read("order-250-products.json");
    order
}

#[test]
fn a_ten_megabyte_string_is_processed_or_refused_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut order = order_fixture();
    order["customer_message"] = Value::String("x".repeat(10 * 1024 * 1024));
    let (out, events) = dry_run_order(dir.path(), &order);
    assert_eq!(events[0]["triggered"], true, "{:.300}", events[0]);
    assert_eq!(events.len(), 1);
    // The scripts' string limit (8 MiB) may refuse it; if so, it says so.
    match events[0]["errors"].as_array().and_then(|e| e.first()) {
        None => assert_eq!(out.status.code(), Some(0)),
        Some(e) => assert!(
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("too large"),
            "{e}"
        ),
    }
}

#[test]
fn two_hundred_thousand_line_items_end_in_a_result_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut order = order_fixture();
    let item = order["products"][0].clone();
    order["products"] = Value::Array(vec![item; 200_000]);
    let (_, events) = dry_run_order(dir.path(), &order);
    assert_eq!(events.len(), 1);
    // Either the order goes through with every item, or a limit stops it with a clear message:
    // on a loaded machine the mapping's time budget may be the limit that does.
    let errors = events[0]["errors"].as_array().expect("errors");
    if errors.is_empty() {
        let items = events[0]["actions"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["op"] == "composite"))
            .map(|a| {
                a["payload"]["OrderItems"]["records"]
                    .as_array()
                    .map_or(0, Vec::len)
            });
        assert_eq!(items, Some(200_000));
    } else {
        let msg = errors[0]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("limit") || msg.contains("too") || msg.contains("time budget"),
            "unclear error: {msg}"
        );
    }
}

#[test]
fn malformed_and_wrongly_shaped_bodies_are_per_event_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.jsonl");
    let deep = "[".repeat(100_000);
    let good = order_fixture().to_string();
    let mut lines = vec![
        "{\"id\": ".to_string(),
        "[1, 2, 3]".to_string(),
        "\"a string\"".to_string(),
        json!({"id": 1, "total_inc_tax": "12,50 EUR"}).to_string(),
        r#"{"id": 1e400, "products": []}"#.to_string(),
        deep,
    ];
    lines.push(good);
    let mut bytes = lines.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"id\": \"\xff\xfe\"}\n");
    std::fs::write(&path, bytes).expect("write");
    let (out, events) = dry_run("bigcommerce-orders", &path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(events.len(), 8, "one result per line");
    for (i, e) in events.iter().enumerate() {
        let errors = e["errors"].as_array().expect("errors");
        if i == 6 {
            assert!(errors.is_empty(), "the good order fails: {errors:?}");
        } else {
            let text = errors
                .first()
                .map(|e| e["message"].to_string())
                .unwrap_or_default();
            assert!(
                !text.is_empty() || e["triggered"] == false,
                "line {}: no error",
                i + 1
            );
        }
    }
}

/// A project of one stdout connector and a pipeline per mapping field: `pipelines/<name>.yaml`
/// maps the body with `{ X: <path> }` and prints the result.
fn mapping_project(paths: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = vec![(
        "crossdock.yaml".to_string(),
        "connectors:\n  out: { kind: stdout }\n".to_string(),
    )];
    for (name, path) in paths {
        files.push((
            format!("mappings/{name}.yaml"),
            format!("mapping: {name}\nfields:\n  X: {{ from: \"{path}\" }}\n"),
        ));
        files.push((
            format!("pipelines/{name}.yaml"),
            format!(
                "pipeline: {name}\nsource: {{ webhook: {{ path: /{name} }} }}\nsteps:\n  - map: {name}\n  - send: {{ to: out, op: print, payload: $ }}\n"
            ),
        ));
    }
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

/// `dry-run <pipeline>` of `project` on `body`: the one event's first error message.
fn mapping_error(project: &Path, pipeline: &str, body: &Value) -> String {
    let input = project.join(format!("{pipeline}-input.json"));
    std::fs::write(&input, serde_json::to_vec(body).expect("json")).expect("write");
    let out = Command::new(bin())
        .args(["dry-run", pipeline, "--format", "json", "--input"])
        .arg(&input)
        .arg("--project")
        .arg(project)
        .output()
        .expect("run crossdock");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let event: Value = serde_json::from_str(stdout.trim()).expect("one JSON event");
    event["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {:.300}", event))
        .to_string()
}

/// `$..sku` over 120 nested `sku` keys (3.9 MB) would copy every level with all below it,
/// gigabytes; `$..*..*..*` over 1.4 KB of nested arrays selects millions of nodes. Both end
/// in a budget error for the event, quickly and without the memory.
#[test]
fn mappings_that_would_take_gigabytes_end_in_a_budget_error() {
    let project = mapping_project(&[("skus", "$..sku"), ("stars", "$..*..*..*")]);

    let mut body = json!("end");
    for i in 0..120 {
        body = json!({"sku": body, "data": format!("{i:03}{}", "x".repeat(32_500))});
    }
    assert!(serde_json::to_vec(&body).expect("json").len() > 3_900_000);
    let message = mapping_error(project.path(), "skus", &body);
    assert!(
        message.contains("mapping skus: field X: $..sku: over the output budget: more than"),
        "{message}"
    );

    let mut deep = Value::Array(vec![json!(1); 560]);
    for _ in 0..120 {
        deep = Value::Array(vec![deep]);
    }
    let body = json!({ "d": deep });
    assert!(serde_json::to_vec(&body).expect("json").len() < 1500);
    let message = mapping_error(project.path(), "stars", &body);
    assert!(
        message.contains(
            "mapping stars: field X: $..*..*..*: over the node budget: queries visited more than"
        ),
        "{message}"
    );
}

/// A filter whose pattern comes from the body, over 20,000 elements: the pattern is compiled
/// once, not per element, and the event maps.
#[test]
fn a_pattern_from_the_body_over_twenty_thousand_elements_maps() {
    let project = mapping_project(&[("hits", "$.items[?search(@.name, $.pattern)].name")]);
    let items: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("item-{i:05}")}))
        .collect();
    let body = json!({"pattern": "^item-0*1[0-9]?$", "items": items});
    let input = project.path().join("hits-input.json");
    std::fs::write(&input, serde_json::to_vec(&body).expect("json")).expect("write");
    let out = Command::new(bin())
        .args(["dry-run", "hits", "--format", "json", "--input"])
        .arg(&input)
        .arg("--project")
        .arg(project.path())
        .output()
        .expect("run crossdock");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout:.500}");
    let event: Value = serde_json::from_str(stdout.trim()).expect("one JSON event");
    let hits = &event["record"]["X"];
    assert_eq!(hits.as_array().map(Vec::len), Some(11), "{hits}");
}

/// `limits:` in crossdock.yaml replaces the defaults: a 2 KB copy goes over 1 KB of output.
#[test]
fn mapping_limits_come_from_crossdock_yaml() {
    let project = mapping_project(&[("blob", "$.blob")]);
    let body = json!({"blob": "b".repeat(2048)});
    let yaml = project.path().join("crossdock.yaml");
    std::fs::write(
        &yaml,
        "connectors:\n  out: { kind: stdout }\nlimits: { mapping_output: 1KB, mapping_time: 5s }\n",
    )
    .expect("write");
    let message = mapping_error(project.path(), "blob", &body);
    assert!(
        message.contains(
            "mapping blob: field X: $.blob: over the output budget: more than 1024 bytes"
        ),
        "{message}"
    );
}

/// A `send` payload path is bounded like a mapping's: `$..*..*..*` fails the step.
#[test]
fn a_payload_path_that_would_take_gigabytes_fails_the_step() {
    let project = mapping_project(&[("stars", "$.d")]);
    std::fs::write(
        project.path().join("pipelines/stars.yaml"),
        "pipeline: stars\nsource: { webhook: { path: /stars } }\nsteps:\n  - send: { to: out, op: print, payload: $..*..*..* }\n",
    )
    .expect("write");
    let mut deep = Value::Array(vec![json!(1); 560]);
    for _ in 0..120 {
        deep = Value::Array(vec![deep]);
    }
    let message = mapping_error(project.path(), "stars", &json!({ "d": deep }));
    assert!(
        message.contains("$..*..*..*: over the node budget: queries visited more than 4000000"),
        "{message}"
    );
}
