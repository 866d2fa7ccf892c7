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
    // Either the order goes through with every item, or a limit stops it with a clear message.
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
            msg.contains("limit") || msg.contains("too"),
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
