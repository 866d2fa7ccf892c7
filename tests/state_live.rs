//! `crossdock state` and `crossdock dry-run` beside a running engine: the real binary serving a
//! temporary project (sled in its folder), the commands finding that the engine holds the
//! state and going through its admin API; writes made there reach the next event and the
//! audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, json_lines, project, Engine, ADMIN_TOKEN};

/// The engine is started with `--listen 127.0.0.1:0`; the commands learn where it listens from
/// `server.listen`, which the tests give as `SHOP_LISTEN`.
const PROJECT: &str = r#"
server: { listen: "${SHOP_LISTEN:-127.0.0.1:8787}" }
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

const ORDERS: &str = r#"
pipeline: orders
source:
  webhook: { path: /hooks/orders }
steps:
  - script: reserve
  - send: { to: out, op: append }
"#;

/// The decision depends on live state twice: the stock the order can reserve, and the tier of
/// the customer as stored.
const RESERVE: &str = r#"
record.reservation = stock.reserve(record.id, record.items);
let c = customers.get(record.customer);
record.tier = if type_of(c) == "()" {
    "new"
} else if c.lifetime_value >= 1000.0 {
    "gold"
} else {
    "regular"
};
"#;

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("crossdock.yaml", PROJECT),
        ("pipelines/orders.yaml", ORDERS),
        ("scripts/reserve.rhai", RESERVE),
    ]
}

/// Runs the binary in `dir` with `env` (and nothing of the test's own admin token unless
/// given); returns the exit code, stdout and stderr.
fn crossdock(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossdock"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("CROSSDOCK_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr,
    )
}

fn order(id: &str, customer: &str, sku: &str, qty: i64) -> String {
    json!({"id": id, "customer": customer, "items": [{"sku": sku, "qty": qty}]}).to_string()
}

/// `crossdock dry-run orders` on `order` (written to order-2.json): its JSON outcome.
fn dry_run(dir: &Path, env: &[(&str, &str)], order: &str) -> Value {
    std::fs::write(dir.join("order-2.json"), order).unwrap();
    let args = [
        "dry-run",
        "orders",
        "--input",
        "order-2.json",
        "--format",
        "json",
    ];
    let (code, out, err) = crossdock(dir, env, &args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_and_dry_run_beside_a_running_engine_show_its_state() {
    let dir = project(&files());
    let d = dir.path();
    // Set with the engine stopped: the folder itself, and the audit log has it too.
    let (code, out, err) = crossdock(
        d,
        &[],
        &["state", "stock", "SKU-1", "--set", "3", "--actor", "setup"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "SKU-1: on hand 3, reserved 0, available 3");

    let engine = Engine::start(d);
    let live = [
        ("CROSSDOCK_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SHOP_LISTEN", engine.addr.as_str()),
    ];
    let (status, answer) = engine
        .post("/hooks/orders", &order("o-1", "c-1", "SKU-1", 2))
        .await;
    assert_eq!(status, 202, "{answer}");
    let actions = d.join("out/actions.jsonl");
    eventually("the first order", Duration::from_secs(20), || async {
        (json_lines(&actions).len() == 1).then_some(())
    })
    .await;

    // The engine holds the store: the commands read its state through the admin API.
    let (code, out, err) = crossdock(d, &live, &["state", "stock", "SKU-1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "SKU-1: on hand 3, reserved 2, available 1");
    let (code, out, err) = crossdock(d, &live, &["state", "reservation", "o-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reservation o-1: "), "{out}");
    let reservation: Value = serde_json::from_str(&out["reservation o-1: ".len()..]).unwrap();
    assert_eq!(reservation["status"], "reserved");

    // Correcting a customer while running.
    let (code, out, err) = crossdock(
        d,
        &live,
        &[
            "state",
            "customer",
            "c-9",
            "--lifetime-value",
            "1500.00",
            "--orders",
            "4",
            "--actor",
            "alice",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("customer c-9: lifetime value 1500.00, 4 orders"),
        "{out}"
    );

    // A dry run decides on the live state: the stored customer's tier, and the one unit left.
    let outcome = dry_run(d, &live, &order("o-2", "c-9", "SKU-1", 2));
    let payload = &outcome["actions"][0]["payload"];
    assert_eq!(payload["tier"], "gold", "{outcome}");
    assert_eq!(payload["reservation"]["ok"], false, "{outcome}");
    assert_eq!(
        payload["reservation"]["shortfalls"][0],
        json!({"sku": "SKU-1", "requested": 2, "available": 1})
    );
    // ... and wrote nothing: the order was not reserved in the engine.
    let (_, out, _) = crossdock(d, &live, &["state", "reservation", "o-2"]);
    assert_eq!(out, "reservation o-2: none");

    // Stock set while running changes what the next event sees.
    let (code, out, err) = crossdock(
        d,
        &live,
        &["state", "stock", "SKU-1", "--set", "10", "--actor", "bób"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "SKU-1: on hand 10, reserved 2, available 8");
    let (status, _) = engine
        .post("/hooks/orders", &order("o-2", "c-9", "SKU-1", 2))
        .await;
    assert_eq!(status, 202);
    let lines = eventually("the second order", Duration::from_secs(20), || async {
        let lines = json_lines(&actions);
        (lines.len() == 2).then_some(lines)
    })
    .await;
    assert_eq!(
        lines[1]["payload"]["reservation"]["ok"], true,
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["payload"]["tier"], "gold");

    // The audit log, through the CLI (here with --url) and the API: newest first.
    let (code, out, err) = crossdock(
        d,
        &[("CROSSDOCK_ADMIN_TOKEN", ADMIN_TOKEN)],
        &["state", "audit", "--url", &engine.url("")],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("bób  stock set SKU-1 10"), "{out}");
    assert_eq!(
        lines[1],
        r#"    stock/SKU-1: {"on_hand":3,"reserved":2} → {"on_hand":10,"reserved":2}"#
    );
    assert!(lines[2].ends_with("alice  customer correct c-9"), "{out}");
    assert!(out.contains("setup  stock set SKU-1 3"), "{out}");
    assert!(out.ends_with("3 of 3 entries kept (3 written)"), "{out}");
    let (status, page) = engine.admin("/api/state/audit?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["head"], 3);
    let entry = &page["items"][0];
    assert_eq!(entry["actor"], "bób");
    assert_eq!(entry["changes"][0]["key"], "stock/SKU-1");
    assert!(entry["at"].as_str().unwrap().ends_with('Z'), "{entry}");

    // No token: the commands say what to do, and read nothing else instead.
    let listen = [("SHOP_LISTEN", engine.addr.as_str())];
    for args in [
        &["state", "stock", "SKU-1"][..],
        &["dry-run", "orders", "--input", "order-2.json"][..],
    ] {
        let (code, out, err) = crossdock(d, &listen, args);
        assert_eq!(code, 1, "{out}");
        assert!(
            err.contains("a running engine holds the state")
                && err.contains("set CROSSDOCK_ADMIN_TOKEN"),
            "{err}"
        );
    }
    let wrong = [
        ("CROSSDOCK_ADMIN_TOKEN", "not-the-token"),
        ("SHOP_LISTEN", engine.addr.as_str()),
    ];
    let (code, _, err) = crossdock(d, &wrong, &["state", "stock", "SKU-1", "--set", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("refused the admin token"), "{err}");

    // Stopped, the folder holds what was written through the engine, the log included.
    assert!(engine.terminate().success());
    let (code, out, err) = crossdock(d, &[], &["state", "audit", "--limit", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with("bób  stock set SKU-1 10"),
        "{out}"
    );
    let (_, out, _) = crossdock(d, &[], &["state", "customer", "c-9"]);
    assert!(
        out.starts_with("customer c-9: lifetime value 1500.00"),
        "{out}"
    );
}

/// Stock set through the API while orders reserve the same SKU: every set lands between two
/// reservations, so the stored count of reserved units is exactly what the reservations hold.
#[tokio::test(flavor = "multi_thread")]
async fn stock_set_while_orders_reserve_loses_no_reservation() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let client = Engine::client();
    let set = |n: i64| {
        client
            .put(engine.url("/api/state/stock/SKU-2"))
            .bearer_auth(ADMIN_TOKEN)
            .header("x-crossdock-actor", "erp-sync")
            .json(&json!({ "on_hand": n }))
            .send()
    };
    assert_eq!(set(100).await.unwrap().status(), 200);
    let orders = 30;
    let mut posts = Vec::new();
    for i in 0..orders {
        let body = order(&format!("r-{i}"), "c-1", "SKU-2", 1);
        let url = engine.url("/hooks/orders");
        posts.push(tokio::spawn(async move {
            Engine::client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    // Sets interleaved with the orders being reserved.
    for n in 1..=10 {
        let r = set(100 + n).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for p in posts {
        assert_eq!(p.await.unwrap(), 202);
    }
    let actions = dir.path().join("out/actions.jsonl");
    eventually("every order", Duration::from_secs(60), || async {
        (json_lines(&actions).len() == orders).then_some(())
    })
    .await;
    let mut held = 0;
    for i in 0..orders {
        let (status, r) = engine
            .admin(&format!("/api/state/reservations/r-{i}"))
            .await;
        assert_eq!(status, 200);
        if r["status"] == "reserved" {
            held += r["items"][0]["qty"].as_i64().unwrap();
        }
    }
    assert_eq!(held, orders as i64, "every order fits in 100 units");
    let (_, level) = engine.admin("/api/state/stock/SKU-2").await;
    assert_eq!(level["reserved"], held, "{level}");
    assert_eq!(level["on_hand"], 110);
    let (_, page) = engine.admin("/api/state/audit?limit=1000").await;
    assert_eq!(page["head"], 11);
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "erp-sync"));
}

/// The admin API refuses what it must: keys flows do not read (tokens), unknown fields, and
/// more levels in one request than it takes.
#[tokio::test]
async fn the_state_routes_refuse_what_they_do_not_serve() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let (status, answer) = engine.admin("/api/state/key?key=token/erp").await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = engine.admin("/api/state/key?key=stock/none").await;
    assert_eq!((status, &answer["value"]), (200, &Value::Null));
    let client = Engine::client();
    let r = client
        .patch(engine.url("/api/state/customers/c-1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "lifetime": "5" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let levels: Vec<Value> = (0..1001)
        .map(|i| json!({"sku": format!("S{i}"), "on_hand": 1}))
        .collect();
    let r = client
        .post(engine.url("/api/state/stock"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "levels": levels }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .put(engine.url("/api/state/stock/S1"))
        .json(&json!({ "on_hand": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token, no write");
    let (_, page) = engine.admin("/api/state/audit").await;
    assert_eq!(page["head"], 0, "nothing was written: {page}");
}

/// A clustered project keeps its state in NATS, never in the folder: the commands go through a
/// node's admin API from the start, and the writes and the audit log land in the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn in_a_cluster_state_goes_through_a_node() {
    let dir = project(&[
        (
            "crossdock.yaml",
            r#"
server: { listen: "${SHOP_LISTEN:-127.0.0.1:8787}" }
cluster:
  nats: { url: "${NATS_URL}" }
  node: n1
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#,
        ),
        ("pipelines/orders.yaml", ORDERS),
        ("scripts/reserve.rhai", RESERVE),
    ]);
    let d = dir.path();
    let nats = support::nats::Nats::start(&d.join("nats"));
    let nats_url = nats.url();
    let engine = Engine::start_with(d, &[("NATS_URL", &nats_url)]);
    let live = [
        ("CROSSDOCK_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SHOP_LISTEN", engine.addr.as_str()),
        ("NATS_URL", nats_url.as_str()),
    ];
    let (code, out, err) = crossdock(
        d,
        &live,
        &["state", "stock", "SKU-1", "--set", "3", "--actor", "ops"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "SKU-1: on hand 3, reserved 0, available 3");
    let (status, _) = engine
        .post("/hooks/orders", &order("o-1", "c-1", "SKU-1", 2))
        .await;
    assert_eq!(status, 202);
    let actions = d.join("out/actions.jsonl");
    eventually("the order", Duration::from_secs(30), || async {
        (json_lines(&actions).len() == 1).then_some(())
    })
    .await;
    let (code, out, err) = crossdock(d, &live, &["state", "stock", "SKU-1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "SKU-1: on hand 3, reserved 2, available 1");
    let outcome = dry_run(d, &live, &order("o-2", "c-1", "SKU-1", 2));
    assert_eq!(outcome["actions"][0]["payload"]["reservation"]["ok"], false);
    let (code, out, err) = crossdock(d, &live, &["state", "audit"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with("ops  stock set SKU-1 3"),
        "{out}"
    );
    // No token: told to set it, not handed an empty folder.
    let (code, _, err) = crossdock(d, &live[1..], &["state", "stock", "SKU-1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the project's state is in its cluster")
            && err.contains("CROSSDOCK_ADMIN_TOKEN"),
        "{err}"
    );
}

/// A folder held while no engine answers at `server.listen` is another command's: the command
/// waits for it as an open does, and when it stays held says how to reach an engine elsewhere.
#[test]
fn a_folder_held_by_another_process_is_waited_for() {
    let dir = project(&files());
    let d = dir.path();
    let (code, _, err) = crossdock(d, &[], &["state", "stock", "SKU-1", "--set", "4"]);
    assert_eq!(code, 0, "{err}");
    // Port 1: nothing listens there.
    let nobody = [("SHOP_LISTEN", "127.0.0.1:1")];
    let path = d.join(".crossdock/state");
    let held = crossdock::state::SledStore::open(&path).unwrap();
    let (code, _, err) = crossdock(d, &nobody, &["state", "stock", "SKU-1"]);
    assert_eq!(code, 1);
    assert!(err.contains("give it with --url"), "{err}");
    // Let go while the command waits: it opens the folder itself.
    let command = {
        let d = d.to_path_buf();
        std::thread::spawn(move || crossdock(&d, &nobody, &["state", "stock", "SKU-1"]))
    };
    std::thread::sleep(Duration::from_millis(200));
    drop(held);
    let (code, out, err) = command.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "SKU-1: on hand 4, reserved 0, available 4");
}
