//! What the console's overview reads from the admin API, through the real binary: each
//! pipeline's events per minute and p50/p99 duration (`GET /api/pipelines`), and the history
//! of versions with the files each reload changed (`GET /api/versions`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::engine::{eventually, project, write_files, Engine};
use support::upstream::Upstream;

const PIPELINE: &str = "pipeline: orders
source: { webhook: { path: /hooks/orders } }
steps:
  - map: order
  - send: { to: erp, op: create }
";

fn sum(series: &Value) -> u64 {
    series
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_counts_latency_and_the_versions_with_their_files() {
    let upstream = Upstream::start().await;
    let dir = project(&[
        ("crossdock.yaml", &upstream.project_file()),
        ("pipelines/orders.yaml", PIPELINE),
        (
            "mappings/order.yaml",
            "mapping: order\nfields:\n  sku: $.sku\n",
        ),
        ("scripts/unused.rhai", "1\n"),
    ]);
    let engine = Engine::start(dir.path());

    // Three events: two reach the upstream, one is refused for good (dead letter).
    upstream.fail_next(422, r#"{"error": "bad sku"}"#, None);
    for sku in ["A", "B", "C"] {
        let (status, _) = engine
            .post("/hooks/orders", &format!(r#"{{"sku": "{sku}"}}"#))
            .await;
        assert_eq!(status, 202);
    }
    let activity = eventually("the three events done", Duration::from_secs(20), || async {
        let (_, p) = engine.admin("/api/pipelines").await;
        let a = p["pipelines"][0]["activity"].clone();
        (sum(&a["per_minute"]["processed"]) + sum(&a["per_minute"]["dead_lettered"]) == 3)
            .then_some(a)
    })
    .await;
    let minutes = &activity["per_minute"];
    assert_eq!(minutes["received"].as_array().unwrap().len(), 60);
    assert_eq!(sum(&minutes["received"]), 3);
    assert_eq!(sum(&minutes["processed"]), 2);
    assert_eq!(sum(&minutes["dead_lettered"]), 1);
    assert!(sum(&minutes["failed"]) >= 1, "{activity}");
    // The minutes end with the current one.
    let start = minutes["start_minute"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        start % 60 == 0 && start + 60 * 60 > now && start <= now,
        "{start} {now}"
    );
    let latency = &activity["latency_ms"];
    assert_eq!(latency["events"], 2);
    let (p50, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{latency}");

    // Versions: the start, then one per reload that changed something.
    let (status, v) = engine.admin("/api/versions").await;
    assert_eq!(status, 200);
    let list = v["versions"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["trigger"], "start");
    assert_eq!(list[0]["version"], v["current"]);
    let added: Vec<&str> = list[0]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        [
            "crossdock.yaml",
            "mappings/order.yaml",
            "pipelines/orders.yaml",
            "scripts/unused.rhai"
        ]
    );

    write_files(
        dir.path(),
        &[(
            "mappings/order.yaml",
            "mapping: order\nfields:\n  code: $.sku\n",
        )],
    );
    let v = eventually("the edit's version", Duration::from_secs(20), || async {
        let (_, v) = engine.admin("/api/versions").await;
        (v["versions"].as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    let newest = &v["versions"][0];
    assert_eq!(newest["trigger"], "file change");
    assert_eq!(newest["version"], v["current"]);
    assert_eq!(
        newest["changed"],
        serde_json::json!(["mappings/order.yaml"])
    );
    assert_eq!(newest["added"], serde_json::json!([]));
    assert_eq!(newest["removed"], serde_json::json!([]));

    // A file removed and one added (one version or two, as the watcher's bursts fall).
    std::fs::remove_file(dir.path().join("scripts/unused.rhai")).unwrap();
    write_files(dir.path(), &[("scripts/other.rhai", "2\n")]);
    let v = eventually(
        "the removal and the addition",
        Duration::from_secs(20),
        || async {
            let _ = engine.admin_post("/api/reload").await;
            let (_, v) = engine.admin("/api/versions").await;
            let list = v["versions"].as_array().unwrap().clone();
            let since_edit = &list[..list.len() - 2];
            let any = |key: &str, file: &str| {
                since_edit
                    .iter()
                    .any(|n| n[key].as_array().unwrap().iter().any(|f| f == file))
            };
            (any("removed", "scripts/unused.rhai") && any("added", "scripts/other.rhai"))
                .then_some(list)
        },
    )
    .await;
    assert_eq!(v.last().unwrap()["trigger"], "start");
    assert!(engine.terminate().success());
}
