//! Effects once and compensation, end to end: the real binary, real sled in a temporary folder,
//! and an upstream on loopback that counts what it applied, keyed as a remote that supports
//! `Idempotency-Key` would key it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use support::engine::{eventually, project_of, shipped_project, Engine};

/// What the upstream saw: per path, the requests it applied (their `Idempotency-Key` and body);
/// and which paths refuse with 422 (a permanent failure) for now.
#[derive(Default)]
struct Seen {
    applied: BTreeMap<String, Vec<(Option<String>, Value)>>,
    refuse: Vec<String>,
}

#[derive(Clone)]
struct Remote {
    seen: Arc<Mutex<Seen>>,
    url: String,
}

impl Remote {
    async fn start() -> Remote {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Remote { seen, url }
    }
    fn applied(&self, path: &str) -> Vec<(Option<String>, Value)> {
        let seen = self.seen.lock().unwrap();
        seen.applied.get(path).cloned().unwrap_or_default()
    }
    fn refuse(&self, path: &str, on: bool) {
        let mut seen = self.seen.lock().unwrap();
        seen.refuse.retain(|p| p != path);
        if on {
            seen.refuse.push(path.to_string());
        }
    }
}

async fn answer(
    State(seen): State<Arc<Mutex<Seen>>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut seen = seen.lock().unwrap();
    let path = uri.path().to_string();
    if seen.refuse.contains(&path) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": "invalid order"})),
        )
            .into_response();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let list = seen.applied.entry(path).or_default();
    list.push((key, body));
    let n = list.len();
    (StatusCode::CREATED, axum::Json(json!({ "id": n }))).into_response()
}

fn files(url: &str) -> Vec<(String, String)> {
    let config = format!(
        r#"
connectors:
  shop:
    kind: http
    base_url: "{url}"
    operations:
      note: {{ method: POST, path: /notes }}
      order: {{ method: POST, path: /orders }}
      line: {{ method: POST, path: "/lines/{{sku}}" }}
      cancel: {{ method: POST, path: /cancellations }}
"#
    );
    // A script that counts its runs in state (as the on-hand figure of a made-up SKU): were
    // its writes committed by each run, the count would grow with every retry.
    let relay = r#"
pipeline: relay
source:
  webhook: { path: /hooks/relay }
steps:
  - script: count
  - send: { to: shop, op: note, payload: $.note }
  - send: { to: shop, op: order, payload: $.order }
on_error:
  retry: { attempts: 2, initial: 50ms }
"#;
    let count = r#"
let counter = "RUNS-" + record.id;
stock.set(counter, stock.available(counter) + 1);
record.note = #{ id: record.id };
record.order = #{ id: record.id };
record
"#;
    // A reservation undone when the order cannot be placed.
    let reserve = r#"
pipeline: reserve
source:
  webhook: { path: /hooks/reserve }
steps:
  - script: reserve
    undo:
      - script: release
  - send: { to: shop, op: order, payload: $.reservation }
on_error:
  retry: { attempts: 2, initial: 50ms }
"#;
    let reserve_rhai = r#"
record.reservation = stock.reserve(record.order_id, record.items);
record
"#;
    let release_rhai = r#"
stock.release(record.order_id);
record
"#;
    // One call per line; a line's failure is reported by its index.
    let lines = r#"
pipeline: lines
source:
  webhook: { path: /hooks/lines }
steps:
  - each:
      in: $.lines
      as: line
      steps:
        - filter: 'record.line.qty != 0'
        - script: check-line
        - send: { to: shop, op: line, payload: $.line }
on_error:
  retry: { attempts: 2, initial: 50ms }
"#;
    let check_line = r#"
if record.line.qty < 0 { throw "a negative quantity: " + record.line.qty; }
record.line.order = record.id;
record
"#;
    // The undo itself calls the remote: cancelling the order that was placed.
    let cancel = r#"
pipeline: cancel
source:
  webhook: { path: /hooks/cancel }
steps:
  - send: { to: shop, op: order, payload: $.order }
    undo:
      - send: { to: shop, op: cancel, payload: $.order }
  - send: { to: shop, op: note, payload: $.note }
on_error:
  retry: { attempts: 2, initial: 50ms }
"#;
    vec![
        ("crossdock.yaml".into(), config),
        ("pipelines/cancel.yaml".into(), cancel.into()),
        ("pipelines/lines.yaml".into(), lines.into()),
        ("scripts/check-line.rhai".into(), check_line.into()),
        ("pipelines/relay.yaml".into(), relay.into()),
        ("scripts/count.rhai".into(), count.into()),
        ("pipelines/reserve.yaml".into(), reserve.into()),
        ("scripts/reserve.rhai".into(), reserve_rhai.into()),
        ("scripts/release.rhai".into(), release_rhai.into()),
    ]
}

async fn dead_letter(engine: &Engine, id: &str) -> Value {
    eventually("the dead letter", Duration::from_secs(20), || async {
        let (status, l) = engine.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(l)
    })
    .await
}

async fn trail(engine: &Engine, id: &str, status: &str) -> Value {
    eventually(status, Duration::from_secs(20), || async {
        let (_, t) = engine.admin(&format!("/api/events/{id}")).await;
        (t["status"] == status).then_some(t)
    })
    .await
}

#[tokio::test]
async fn a_dead_letter_retried_after_a_partial_success_sends_only_what_had_not_succeeded() {
    let remote = Remote::start().await;
    let dir = project_of(&files(&remote.url));
    let engine = Engine::start(dir.path());

    remote.refuse("/orders", true);
    let (status, a) = engine.post("/hooks/relay", r#"{"id":"A"}"#).await;
    assert_eq!(status, 202);
    let id = a["event_id"].as_str().unwrap().to_string();
    let letter = dead_letter(&engine, &id).await;
    assert!(
        letter["reason"].as_str().unwrap().contains("422"),
        "{letter}"
    );
    assert_eq!(remote.applied("/notes").len(), 1);
    assert!(remote.applied("/orders").is_empty());

    // The remote is fixed; the dead letter goes again: the note is not sent twice.
    remote.refuse("/orders", false);
    let (status, _) = engine.admin_post(&format!("/api/dlq/{id}/retry")).await;
    assert_eq!(status, 200);
    let t = trail(&engine, &id, "processed").await;
    assert_eq!(t["actions"][0]["status"], "skipped", "{t}");
    assert_eq!(t["actions"][1]["status"], "ok", "{t}");
    assert_eq!(remote.applied("/notes").len(), 1);
    let orders = remote.applied("/orders");
    assert_eq!(orders.len(), 1);
    // The script's state write was committed once, by the first run.
    let (_, runs) = engine.admin("/api/state/stock/RUNS-A").await;
    assert_eq!(runs["on_hand"], 1, "{runs}");
    // Every call carries a key made of the event and the step.
    let note_key = remote.applied("/notes")[0].0.clone().unwrap();
    assert_eq!(note_key, format!("{id}/steps[1]"));
    assert_eq!(orders[0].0.as_deref(), Some(&*format!("{id}/steps[2]")));

    // A full re-run, asked for, does everything again, under the same keys (a remote that
    // honours them would apply nothing twice), and commits the state again.
    remote.refuse("/orders", true);
    let (_, b) = engine.post("/hooks/relay", r#"{"id":"B"}"#).await;
    let id = b["event_id"].as_str().unwrap().to_string();
    dead_letter(&engine, &id).await;
    remote.refuse("/orders", false);
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["dlq", "retry", &id, "--full", "--url", &engine.url("")])
        .arg("--project")
        .arg(dir.path())
        .env("CROSSDOCK_ADMIN_TOKEN", support::engine::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    trail(&engine, &id, "processed").await;
    let notes = remote.applied("/notes");
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert_eq!(notes[1].0, notes[2].0);
    assert_eq!(remote.applied("/orders").len(), 2);
    let (_, runs) = engine.admin("/api/state/stock/RUNS-B").await;
    assert_eq!(runs["on_hand"], 2, "{runs}");
}

#[tokio::test]
async fn a_permanent_failure_after_a_reservation_releases_the_stock() {
    let remote = Remote::start().await;
    let dir = project_of(&files(&remote.url));
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["state", "stock", "SKU-1", "--set", "10", "--project"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(seeded.status.success());
    let engine = Engine::start(dir.path());

    remote.refuse("/orders", true);
    let order = r#"{"order_id":"O-1","items":[{"sku":"SKU-1","qty":3}]}"#;
    let (_, a) = engine.post("/hooks/reserve", order).await;
    let id = a["event_id"].as_str().unwrap().to_string();
    dead_letter(&engine, &id).await;
    let t = trail(&engine, &id, "dead_lettered").await;
    let undone = &t["compensations"];
    assert_eq!(undone[0]["step"], "steps[0]", "{t}");
    assert_eq!(undone[0]["status"], "done", "{t}");
    assert_eq!(
        undone[0]["steps"],
        json!(["steps[0].undo[0] (script release)"])
    );
    let (_, stock) = engine.admin("/api/state/stock/SKU-1").await;
    assert_eq!(stock["reserved"], 0, "{stock}");
    let (_, r) = engine.admin("/api/state/reservations/O-1").await;
    assert_eq!(r["status"], "released", "{r}");

    // Dropping the dead letter owes nothing more: the compensation is not run twice.
    let dropped = Engine::client()
        .delete(engine.url(&format!("/api/dlq/{id}")))
        .bearer_auth(support::engine::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), 200);
    let dropped: Value = dropped.json().await.unwrap();
    assert_eq!(dropped["compensations"], json!([]), "{dropped}");
    let (_, stock) = engine.admin("/api/state/stock/SKU-1").await;
    assert_eq!(stock["reserved"], 0, "{stock}");
    assert_eq!(stock["on_hand"], 10, "{stock}");
}

#[tokio::test]
async fn each_runs_its_steps_per_element_and_a_retry_redoes_only_the_failed_ones() {
    let remote = Remote::start().await;
    let dir = project_of(&files(&remote.url));
    let engine = Engine::start(dir.path());

    // Line B is refused for good: A went before it, C (after it) is not tried. A filtered line
    // (qty 0) sends nothing.
    remote.refuse("/lines/B", true);
    let body = r#"{"id":"O-7","lines":[{"sku":"A","qty":1},{"sku":"B","qty":2},{"sku":"Z","qty":0},{"sku":"C","qty":3}]}"#;
    let (_, a) = engine.post("/hooks/lines", body).await;
    let id = a["event_id"].as_str().unwrap().to_string();
    dead_letter(&engine, &id).await;
    assert_eq!(remote.applied("/lines/A").len(), 1);
    assert!(remote.applied("/lines/C").is_empty());
    assert!(remote.applied("/lines/Z").is_empty());
    assert_eq!(
        remote.applied("/lines/A")[0].1,
        json!({"sku": "A", "qty": 1, "order": "O-7"})
    );

    remote.refuse("/lines/B", false);
    engine.admin_post(&format!("/api/dlq/{id}/retry")).await;
    let t = trail(&engine, &id, "processed").await;
    let statuses: Vec<&str> = t["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["skipped", "ok", "ok"], "{t}");
    for sku in ["A", "B", "C"] {
        assert_eq!(remote.applied(&format!("/lines/{sku}")).len(), 1, "{sku}");
    }
    // Each element is an effect of its own: its index is in the key.
    assert_eq!(
        remote.applied("/lines/C")[0].0.as_deref(),
        Some(&*format!("{id}/steps[0].each.steps[2]#3"))
    );

    // A rule error in two elements: the event fails at once, naming both by index.
    let body =
        r#"{"id":"O-8","lines":[{"sku":"A","qty":-1},{"sku":"B","qty":1},{"sku":"C","qty":-5}]}"#;
    let (_, a) = engine.post("/hooks/lines", body).await;
    let letter = dead_letter(&engine, a["event_id"].as_str().unwrap()).await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("2 of the elements failed"), "{reason}");
    assert!(
        reason.contains("[0] steps[0].each.steps[1] (script check-line)"),
        "{reason}"
    );
    assert!(reason.contains("a negative quantity: -5"), "{reason}");
    // Nothing of a failed flow is sent, not even the good element's call.
    assert_eq!(remote.applied("/lines/B").len(), 1);
}

#[tokio::test]
async fn the_shipped_stock_pipeline_releases_a_reservation_the_erp_refused() {
    use base64::Engine as _;
    use hmac::Mac;
    const SECRET: &str = "effects-shopify-secret";
    let erp = Remote::start().await;
    erp.refuse("/v1/sales-orders", true);
    let dir = shipped_project();
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["state", "stock", "IPOD2009BLACK", "--set", "5", "--project"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(seeded.status.success());
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("ERP_BASE_URL", &erp.url),
            ("ERP_API_TOKEN", "erp-token"),
            ("SHOPIFY_WEBHOOK_SECRET", SECRET),
        ],
    );
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/shopify/orders-create.json"),
    )
    .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let r = Engine::client()
        .post(engine.url("/hooks/shopify/orders"))
        .header("content-type", "application/json")
        .header("X-Shopify-Topic", "orders/create")
        .header("X-Shopify-Hmac-Sha256", sig)
        .header("X-Shopify-Webhook-Id", "effects-1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", engine.log());
    let id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = trail(&engine, &id, "dead_lettered").await;
    assert!(
        t["errors"][0]["message"].as_str().unwrap().contains("422"),
        "{t}"
    );
    assert_eq!(t["compensations"][0]["status"], "done", "{t}");
    assert_eq!(
        t["compensations"][0]["steps"],
        json!(["steps[1].switch[0].steps[0].undo[0] (script stock-release)"])
    );
    let (_, stock) = engine.admin("/api/state/stock/IPOD2009BLACK").await;
    assert_eq!(stock["reserved"], 0, "{stock}");
    let (_, r) = engine.admin("/api/state/reservations/1073459980").await;
    assert_eq!(r["status"], "released", "{r}");
}

#[tokio::test]
async fn a_compensation_that_fails_stays_owed_until_the_dead_letter_is_dropped() {
    let remote = Remote::start().await;
    let dir = project_of(&files(&remote.url));
    let engine = Engine::start(dir.path());

    // The order goes, the note is refused for good, and so is the cancellation at first.
    remote.refuse("/notes", true);
    remote.refuse("/cancellations", true);
    let (_, a) = engine
        .post(
            "/hooks/cancel",
            r#"{"order": {"id": "O-9"}, "note": {"id": "O-9"}}"#,
        )
        .await;
    let id = a["event_id"].as_str().unwrap().to_string();
    let letter = dead_letter(&engine, &id).await;
    assert_eq!(letter["event"]["undo"][0]["step"], "steps[0]", "{letter}");
    let t = trail(&engine, &id, "dead_lettered").await;
    assert_eq!(t["compensations"][0]["status"], "failed", "{t}");
    assert_eq!(remote.applied("/orders").len(), 1);

    // Dropping it runs what is owed; still refused: 409, the letter stays.
    let drop = || async {
        let r = Engine::client()
            .delete(engine.url(&format!("/api/dlq/{id}")))
            .bearer_auth(support::engine::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, answer) = drop().await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(engine.admin(&format!("/api/dlq/{id}")).await.0, 200);

    // The remote takes the cancellation: the drop cancels the order once, then drops.
    remote.refuse("/cancellations", false);
    let (status, answer) = drop().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["compensations"][0]["status"], "done", "{answer}");
    assert_eq!(remote.applied("/cancellations").len(), 1);
    assert_eq!(remote.applied("/cancellations")[0].1, json!({"id": "O-9"}));
    assert_eq!(engine.admin(&format!("/api/dlq/{id}")).await.0, 404);
    let t = trail(&engine, &id, "dead_lettered").await;
    let statuses: Vec<&str> = t["compensations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "done"], "{t}");
}
