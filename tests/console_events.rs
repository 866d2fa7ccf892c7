//! The events behind the console's search and dead-letter pages, through the real binary:
//! correlation keys indexed and searched, each event's delivery (headers with secrets masked,
//! the signature check, the body previewed and whole), refused deliveries kept in memory, and
//! dead letters retried by a filter from the API and the CLI, with the version they failed on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use hmac::Mac;
use serde_json::{json, Value};
use support::engine::{eventually, project, Engine, ADMIN_TOKEN};
use support::upstream::Upstream;

const SECRET: &str = "orders-test-secret";

fn orders_pipeline(description: &str) -> String {
    format!(
        r#"
pipeline: orders
description: {description}
source:
  webhook:
    path: /hooks/orders
    verify: {{ scheme: shopify, secret: {SECRET} }}
keys: {{ order: $.id, customer: $.customer.email }}
steps:
  - send: {{ to: erp, op: create }}
on_error:
  retry: {{ attempts: 1 }}
  dead_letter: true
"#
    )
}

/// Shopify's signature: base64 HMAC-SHA256 of the raw body.
fn shopify_signature(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post_order(engine: &Engine, body: &str, signature: Option<&str>) -> (u16, Value) {
    let sig = signature
        .map(str::to_string)
        .unwrap_or_else(|| shopify_signature(body.as_bytes()));
    let r = Engine::client()
        .post(engine.url("/hooks/orders"))
        .header("content-type", "application/json")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-hmac-sha256", sig)
        .header("x-api-key", "sk_live_do_not_show")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn order(id: u64, email: &str, pad: usize) -> String {
    json!({ "id": id, "customer": { "email": email }, "note": "x".repeat(pad) }).to_string()
}

async fn admin_json(engine: &Engine, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = Engine::client()
        .request(method.parse().unwrap(), engine.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn outcome(engine: &Engine, id: &str, status: &str) {
    eventually(
        &format!("{id} {status}"),
        Duration::from_secs(20),
        || async {
            let (_, t) = engine.admin(&format!("/api/events/{id}")).await;
            (t["status"] == status).then_some(())
        },
    )
    .await;
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_are_found_by_business_key_with_their_delivery_and_signature_check() {
    let erp = Upstream::start().await;
    let dir = project(&[
        ("crossdock.yaml", &erp.project_file()),
        ("pipelines/orders.yaml", &orders_pipeline("orders")),
    ]);
    let engine = Engine::start(dir.path());
    let mut sent = Vec::new();
    // Order 1001 twice (created, then a larger delivery), 10010 once: a value that starts with
    // another is another key.
    for body in [
        order(1001, "ann@example.com", 0),
        order(10010, "bob@example.com", 0),
        order(1001, "ann@example.com", 10_000),
    ] {
        let (status, a) = post_order(&engine, &body, None).await;
        assert_eq!(status, 202, "{a}");
        sent.push((a["event_id"].as_str().unwrap().to_string(), body));
    }
    for (id, _) in &sent {
        outcome(&engine, id, "processed").await;
    }

    let (status, page) = engine.admin("/api/events?key=order:1001").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [sent[2].0.clone(), sent[0].0.clone()]);
    assert_eq!(page["items"][0]["keys"]["order"], "1001");
    assert_eq!(page["items"][0]["keys"]["customer"], "ann@example.com");
    let (_, page) = engine
        .admin("/api/events?key=customer:bob@example.com")
        .await;
    assert_eq!(ids(&page), [sent[1].0.clone()]);
    // Paged by the same cursor as the list, and combined with the other filters.
    let (_, first) = engine.admin("/api/events?key=order:1001&limit=1").await;
    assert_eq!(ids(&first), [sent[2].0.clone()]);
    let next = first["next"].as_str().unwrap();
    let (_, second) = engine
        .admin(&format!("/api/events?key=order:1001&limit=1&cursor={next}"))
        .await;
    assert_eq!(ids(&second), [sent[0].0.clone()]);
    let (_, none) = engine
        .admin("/api/events?key=order:1001&outcome=dead_lettered")
        .await;
    assert!(ids(&none).is_empty());
    let (_, none) = engine.admin("/api/events?key=order:100").await;
    assert!(ids(&none).is_empty(), "{none}");
    let (status, _) = engine.admin("/api/events?key=order").await;
    assert_eq!(status, 400);
    // A time range, alone and with a key: every event was received before the end of the
    // century, none before the year 2000 ends it.
    let (_, all) = engine
        .admin("/api/events?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z")
        .await;
    let listed = ids(&all);
    assert!(sent.iter().all(|(id, _)| listed.contains(id)), "{all}");
    let (_, none) = engine.admin("/api/events?until=2000-01-01T00:00:00Z").await;
    assert!(ids(&none).is_empty(), "{none}");
    let (_, none) = engine
        .admin("/api/events?key=order:1001&since=2100-01-01T00:00:00%2B02:00")
        .await;
    assert!(ids(&none).is_empty(), "{none}");
    let (status, answer) = engine.admin("/api/events?since=yesterday").await;
    assert_eq!(status, 400, "{answer}");

    // The delivery: headers with the secret-looking one masked, the signature check passed,
    // the body whole when small.
    let (status, raw) = engine
        .admin(&format!("/api/events/{}/raw", sent[0].0))
        .await;
    assert_eq!(status, 200, "{raw}");
    assert_eq!(raw["signature"], "shopify ok");
    assert_eq!(raw["headers"]["x-api-key"], "[redacted]");
    assert_eq!(raw["headers"]["x-shopify-topic"], "orders/create");
    assert!(!raw.to_string().contains("sk_live_do_not_show"));
    assert_eq!(raw["preview"], sent[0].1.as_str());
    assert_eq!(raw["truncated"], false);
    // A larger one: 4 KB previewed, the rest a request away, byte for byte.
    let (_, raw) = engine
        .admin(&format!("/api/events/{}/raw", sent[2].0))
        .await;
    assert_eq!(raw["truncated"], true);
    assert_eq!(raw["bytes"], sent[2].1.len());
    assert_eq!(raw["preview"].as_str().unwrap().len(), 4096);
    let body = Engine::client()
        .get(engine.url(&format!("/api/events/{}/body", sent[2].0)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], sent[2].1.as_bytes());
    let (status, _) = engine.admin("/api/events/evt_00000000000fffff/raw").await;
    assert_eq!(status, 404);

    // A delivery with a wrong signature is no event, but the console can see why it failed.
    let forged = order(1002, "eve@example.com", 0);
    let (status, _) = post_order(&engine, &forged, Some("bm90IGl0")).await;
    assert_eq!(status, 401);
    let (_, refused) = engine.admin("/api/refused").await;
    let last = &refused["items"][0];
    assert_eq!(last["pipeline"], "orders");
    assert_eq!(last["scheme"], "shopify");
    assert!(
        last["reason"].as_str().unwrap().contains("signature"),
        "{last}"
    );
    assert_eq!(last["headers"]["x-api-key"], "[redacted]");
    assert_eq!(last["body"], forged.as_str());
    let (_, page) = engine.admin("/api/events?key=order:1002").await;
    assert!(ids(&page).is_empty());
}

#[tokio::test]
async fn dead_letters_matching_a_filter_are_retried_on_the_version_asked_for() {
    let erp = Upstream::start().await;
    erp.set_down(Some(400));
    let dir = project(&[
        ("crossdock.yaml", &erp.project_file()),
        ("pipelines/orders.yaml", &orders_pipeline("orders")),
    ]);
    let engine = Engine::start(dir.path());
    let mut dead = Vec::new();
    for n in 1..=4 {
        let (status, a) = post_order(&engine, &order(n, "ann@example.com", 0), None).await;
        assert_eq!(status, 202, "{a}");
        dead.push(a["event_id"].as_str().unwrap().to_string());
    }
    for id in &dead {
        outcome(&engine, id, "dead_lettered").await;
    }
    let (_, list) = engine.admin("/api/dlq").await;
    let live = engine.admin("/api/pipelines").await.1["version"].clone();
    assert_eq!(list["items"][0]["version"], live);
    assert_eq!(list["items"][0]["keys"]["order"], "1");
    erp.set_down(None);

    // One order, by its key, on the version it failed on (still the live one).
    let (status, r) = admin_json(
        &engine,
        "POST",
        "/api/dlq/retry",
        &json!({ "key": "order:2", "version": "failed" }),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["retried"], 1);
    assert_eq!(r["event_ids"], json!([dead[1]]));
    outcome(&engine, &dead[1], "processed").await;
    // A filter that matches nothing retries nothing.
    let (_, r) = admin_json(
        &engine,
        "POST",
        "/api/dlq/retry",
        &json!({ "error": "no such reason", "pipeline": "orders" }),
    )
    .await;
    assert_eq!(r["retried"], 0);
    let (status, _) = admin_json(&engine, "POST", "/api/dlq/retry", &json!({ "nope": 1 })).await;
    assert_eq!(status, 400);

    // After a reload the version they failed on is gone: asked for, they are not retried.
    std::fs::write(
        dir.path().join("pipelines/orders.yaml"),
        orders_pipeline("orders, edited"),
    )
    .unwrap();
    let (_, reload) = engine.admin_post("/api/reload").await;
    assert_eq!(reload["status"], "live", "{reload}");
    assert_ne!(reload["version"], live);
    let (status, r) = admin_json(
        &engine,
        "POST",
        "/api/dlq/retry",
        &json!({ "version": "failed" }),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["retried"], 0);
    assert_eq!(r["not_retried"].as_array().unwrap().len(), 3, "{r}");
    assert!(r["not_retried"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("no longer live"));
    let (status, one) = engine
        .admin_post(&format!("/api/dlq/{}/retry?version=failed", dead[0]))
        .await;
    assert_eq!(status, 409, "{one}");

    // From the CLI, by pipeline and reason, on the live version: the other three.
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args([
            "dlq",
            "retry",
            "--all",
            "--pipeline",
            "orders",
            "--error",
            "400",
        ])
        .args(["--since", &since, "--url", &engine.url("")])
        .arg("--project")
        .arg(dir.path())
        .env("CROSSDOCK_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["retried"], 3, "{answer}");
    for id in [&dead[0], &dead[2], &dead[3]] {
        outcome(&engine, id, "processed").await;
        let (_, t) = engine.admin(&format!("/api/events/{id}")).await;
        assert_eq!(t["version"], reload["version"]);
    }
    let (_, list) = engine.admin("/api/dlq").await;
    assert_eq!(list["total"], 0);
    assert_eq!(erp.received().len(), 4);
}
