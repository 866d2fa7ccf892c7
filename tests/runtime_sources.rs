//! The poll, schedule and file sources of `crossdock run`, through a real [`Runtime`]: a
//! project in a temp dir, sled state, the workers and a `file` connector whose output is read
//! back. The poll source calls a real HTTP server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossdock::runtime::sources::poll::cursor_key;
use crossdock::runtime::{Runtime, Settings};
use serde_json::{json, Value};

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // Flows run rules on blocking threads, which need the stack the rules ask for.
        .thread_stack_size(crossdock::rules::engine::MIN_STACK)
        .build()
        .unwrap()
}

/// A project with a `file` connector `out` writing to out/events.jsonl, and the given
/// pipelines.
fn project(extra_connectors: &str, pipelines: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crossdock.yaml"),
        format!(
            "state: {{ path: state }}\nconnectors:\n  out: {{ kind: file, path: out/events.jsonl }}\n{extra_connectors}"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    for (name, text) in pipelines {
        write_pipeline(dir.path(), name, text);
    }
    dir
}

fn write_pipeline(root: &Path, name: &str, text: &str) {
    std::fs::write(root.join("pipelines").join(format!("{name}.yaml")), text).unwrap();
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The payloads the `out` connector wrote, in order.
fn sent(root: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(root.join("out/events.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["payload"].clone())
        .collect()
}

/// Polls `cond` every 50 ms until it holds; fails the test after `secs`.
async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a file as an exporter would: under a `.part` name, then renamed.
fn drop_file(folder: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(folder).unwrap();
    let part = folder.join(format!("{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(part, folder.join(name)).unwrap();
}

const FILE_PIPELINE: &str = r#"
pipeline: stock
source:
  file: { path: drop, format: csv, delimiter: ";" }
steps:
  - set:
      file: { expr: 'event.headers["x-crossdock-file"]' }
      source: { expr: 'event.headers["x-crossdock-source"]' }
  - send: { to: out, op: append }
"#;

#[test]
fn file_rows_become_events_once_and_the_file_moves_out() {
    let dir = project("", &[("stock", FILE_PIPELINE)]);
    let root = dir.path().to_path_buf();
    let drop = root.join("drop");
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();

        drop_file(&drop, "stock-1.csv", b"sku;qty\nA-1;5\nB-2;0\nC-3;12\n");
        // Files writers are still busy with are never taken.
        std::fs::write(drop.join("stock-2.csv.tmp"), b"sku;qty\nZ-9;1\n").unwrap();
        std::fs::write(drop.join(".stock-3.csv"), b"sku;qty\nZ-9;1\n").unwrap();

        wait_for("3 rows sent", 15, || sent(&root).len() == 3).await;
        let mut rows = sent(&root);
        rows.sort_by_key(|r| r["sku"].as_str().map(str::to_string));
        assert_eq!(
            rows[0],
            json!({"sku": "A-1", "qty": "5", "file": "stock-1.csv", "source": "file"})
        );
        assert_eq!(rows[2]["qty"], "12");
        wait_for("the file in processed/", 5, || {
            drop.join("processed/stock-1.csv").exists()
        })
        .await;
        assert!(!drop.join("stock-1.csv").exists());

        // Not decodable at all: to failed/, with the reason beside it, and no event.
        drop_file(&drop, "garbage.csv", b"\xff\xfe\x00\x01;\xc3\x28\n\x80;1\n");
        wait_for("the file in failed/", 15, || {
            drop.join("failed/garbage.csv.error.txt").exists()
        })
        .await;
        assert!(drop.join("failed/garbage.csv").exists());
        assert!(!drop.join("garbage.csv").exists());
        let why = std::fs::read_to_string(drop.join("failed/garbage.csv.error.txt")).unwrap();
        assert!(why.contains("not valid CSV"), "{why}");

        // One bad row: the good ones go, the bad one is listed in failed/.
        drop_file(&drop, "mixed.csv", b"sku;qty\nD-4;1\nE-5\nF-6;3\n");
        wait_for("5 rows sent", 15, || sent(&root).len() == 5).await;
        wait_for("mixed.csv processed", 5, || {
            drop.join("processed/mixed.csv").exists()
        })
        .await;
        let why = std::fs::read_to_string(drop.join("failed/mixed.csv.error.txt")).unwrap();
        assert!(why.starts_with("row 3: not valid CSV"), "{why}");
        assert_eq!(why.lines().count(), 1);
        let skus: Vec<_> = sent(&root)[3..]
            .iter()
            .map(|r| r["sku"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(skus.len(), 2);
        assert!(skus.contains(&"D-4".to_string()) && skus.contains(&"F-6".to_string()));

        // The same name again, new content: processed too, kept beside the first copy.
        drop_file(&drop, "stock-1.csv", b"sku;qty\nG-7;2\n");
        wait_for("6 rows sent", 15, || sent(&root).len() == 6).await;
        wait_for("second copy kept", 5, || {
            drop.join("processed/stock-1.1.csv").exists()
        })
        .await;

        assert!(drop.join("stock-2.csv.tmp").exists() && drop.join(".stock-3.csv").exists());
        assert_eq!(sent(&root).len(), 6);
    });
}

#[test]
fn a_file_resumed_after_a_crash_sends_no_row_twice() {
    let dir = project("", &[("stock", FILE_PIPELINE)]);
    let root = dir.path().to_path_buf();
    let drop = root.join("drop");
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        // An earlier run accepted row 1 of this very file (same name, size and time), then
        // died before the rest: that is what its dedup key records.
        std::fs::create_dir_all(&drop).unwrap();
        let part = drop.join("resume.csv.part");
        std::fs::write(&part, b"sku;qty\nA-1;1\nB-2;2\nC-3;3\n").unwrap();
        let meta = std::fs::metadata(&part).unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let key = format!("file:resume.csv:{}:{mtime}:1", meta.len());
        let body = json!({"sku": "A-1", "qty": "1", "file": "resume.csv", "source": "file"});
        runtime
            .submit(
                "stock",
                &[&key],
                BTreeMap::new(),
                body.to_string().as_bytes(),
            )
            .await
            .unwrap();
        std::fs::rename(&part, drop.join("resume.csv")).unwrap();

        wait_for("the file in processed/", 15, || {
            drop.join("processed/resume.csv").exists()
        })
        .await;
        wait_for("3 rows sent", 10, || sent(&root).len() >= 3).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut skus: Vec<_> = sent(&root)
            .iter()
            .map(|r| r["sku"].as_str().unwrap().to_string())
            .collect();
        skus.sort();
        assert_eq!(skus, ["A-1", "B-2", "C-3"]);
    });
}

#[test]
fn file_sources_follow_reloads() {
    let dir = project("", &[("stock", FILE_PIPELINE)]);
    let root = dir.path().to_path_buf();
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        drop_file(&root.join("drop"), "a.csv", b"sku;qty\nA-1;1\n");
        wait_for("a.csv sent", 15, || sent(&root).len() == 1).await;

        // The pipeline now watches another folder: the old one is let go.
        write_pipeline(
            &root,
            "stock",
            &FILE_PIPELINE.replace("path: drop,", "path: drop2,"),
        );
        runtime.reload("test").await.unwrap();
        drop_file(&root.join("drop2"), "b.csv", b"sku;qty\nB-2;2\n");
        wait_for("b.csv sent", 15, || sent(&root).len() == 2).await;
        assert_eq!(sent(&root)[1]["sku"], "B-2");
        drop_file(&root.join("drop"), "c.csv", b"sku;qty\nC-3;3\n");

        // A pipeline removed: its source stops.
        write_pipeline(
            &root,
            "other",
            "pipeline: other\nsource: { webhook: { path: /hooks/other } }\nsteps:\n  - send: { to: out, op: append }\n",
        );
        std::fs::remove_file(root.join("pipelines/stock.yaml")).unwrap();
        runtime.reload("test").await.unwrap();
        drop_file(&root.join("drop2"), "d.csv", b"sku;qty\nD-4;4\n");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(sent(&root).len(), 2);
        assert!(root.join("drop/c.csv").exists());
        assert!(root.join("drop2/d.csv").exists());
    });
}

// ---- schedule ----

#[test]
fn a_schedule_fires_tick_events() {
    // Six fields, seconds first: every second, so the test need not wait a minute.
    let dir = project(
        "",
        &[(
            "ticker",
            r#"
pipeline: ticker
source: { schedule: { cron: "* * * * * *" } }
steps:
  - set: { source: { expr: 'event.headers["x-crossdock-source"]' } }
  - send: { to: out, op: append }
"#,
        )],
    );
    let root = dir.path().to_path_buf();
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        wait_for("2 ticks", 15, || sent(&root).len() >= 2).await;
        let ticks = sent(&root);
        let mut at: Vec<_> = ticks
            .iter()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t["tick"].as_str().unwrap()).unwrap())
            .collect();
        at.sort();
        // Scheduled times, whole seconds, each one once (workers may finish them out of order).
        assert!(at.iter().all(|t| t.timestamp_subsec_nanos() == 0));
        assert!(at[1] > at[0]);
        assert_eq!(ticks[0]["schedule"], "* * * * * *");
        assert_eq!(ticks[0]["source"], "schedule");
        // The same tick again (a restart within the second) is a duplicate.
        let again = runtime
            .submit(
                "ticker",
                &[&format!(
                    "tick:ticker:{}",
                    ticks[0]["tick"].as_str().unwrap()
                )],
                BTreeMap::new(),
                b"{}",
            )
            .await
            .unwrap();
        assert!(matches!(again, crossdock::runtime::Submitted::Duplicate(_)));
    });
}

// ---- poll ----

/// The remote API: items with an `updated_at`, `GET /list_items?since=T&page=N`, two per page,
/// those updated at or after `since`, oldest first.
#[derive(Default)]
struct Shop {
    items: Vec<Value>,
    requests: Vec<HashMap<String, String>>,
    /// Answer every request with a 503.
    down: bool,
}

fn serve_shop(shop: Arc<Mutex<Shop>>) -> String {
    use axum::extract::{Query, State};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/list_items",
                    axum::routing::get(
                        |State(shop): State<Arc<Mutex<Shop>>>,
                         Query(q): Query<HashMap<String, String>>| async move {
                            let mut shop = shop.lock().unwrap();
                            shop.requests.push(q.clone());
                            if shop.down {
                                return (
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    axum::Json(json!({"error": "down"})),
                                );
                            }
                            let since = q.get("since").cloned().unwrap_or_default();
                            let page: usize =
                                q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                            let matching: Vec<Value> = shop
                                .items
                                .iter()
                                .filter(|i| i["updated_at"].as_str().unwrap() >= since.as_str())
                                .cloned()
                                .collect();
                            let chunk: Vec<Value> = matching
                                .iter()
                                .skip((page - 1) * 2)
                                .take(2)
                                .cloned()
                                .collect();
                            let next = if matching.len() > page * 2 {
                                json!(page + 1)
                            } else {
                                Value::Null
                            };
                            (
                                axum::http::StatusCode::OK,
                                axum::Json(json!({ "items": chunk, "next_page": next })),
                            )
                        },
                    ),
                )
                .with_state(shop);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

const POLL_PIPELINE: &str = r#"
pipeline: feed
source:
  poll:
    connector: shop
    op: list_items
    every: 200ms
    items: $.items
    cursor: { param: since, from: $.updated_at, initial: "2026-01-01T00:00:00Z" }
    next: { from: $.next_page, param: page }
steps:
  - send: { to: out, op: append }
"#;

/// `shop`: the http connector, on the test's shop server.
fn shop_connector(base: &str) -> String {
    format!(
        "  shop:\n    kind: http\n    base_url: \"{base}\"\n    operations:\n      list_items: {{ method: GET, path: /list_items }}\n"
    )
}

fn item(id: u32, day: u32) -> Value {
    json!({"id": id, "name": format!("item {id}"), "updated_at": format!("2026-02-{day:02}T10:00:00Z")})
}

fn ids(root: &Path) -> Vec<u64> {
    sent(root)
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn poll_items_become_one_event_each_and_the_cursor_survives_a_restart() {
    let shop = Arc::new(Mutex::new(Shop {
        items: (1..=5).map(|i| item(i, i)).collect(),
        ..Shop::default()
    }));
    let base = serve_shop(shop.clone());
    let dir = project(&shop_connector(&base), &[("feed", POLL_PIPELINE)]);
    let root: PathBuf = dir.path().to_path_buf();

    let rt = tokio();
    rt.block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();

        wait_for("5 items sent", 15, || sent(&root).len() >= 5).await;
        let cursor = || runtime.state().get(&cursor_key("feed")).unwrap();
        wait_for("the cursor at item 5", 5, || {
            cursor() == Some(json!("2026-02-05T10:00:00Z"))
        })
        .await;
        {
            let shop = shop.lock().unwrap();
            assert_eq!(shop.requests[0]["since"], "2026-01-01T00:00:00Z");
            assert!(!shop.requests[0].contains_key("page"));
            // Pages 2 and 3 asked with the cursor the first page was asked with.
            assert_eq!(shop.requests[1]["page"], "2");
            assert_eq!(shop.requests[2]["page"], "3");
            assert_eq!(shop.requests[2]["since"], "2026-01-01T00:00:00Z");
        }

        // A new item and an update of item 2: both are new events.
        {
            let mut shop = shop.lock().unwrap();
            shop.items.push(item(6, 6));
            shop.items.retain(|i| i["id"] != 2);
            shop.items.push(item(2, 7));
        }
        wait_for("7 events", 15, || sent(&root).len() >= 7).await;
        wait_for("the cursor at the update", 5, || {
            cursor() == Some(json!("2026-02-07T10:00:00Z"))
        })
        .await;
        // Several more polls, each seeing the newest item again: no new event.
        let seen = shop.lock().unwrap().requests.len();
        wait_for("more polls", 10, || {
            shop.lock().unwrap().requests.len() >= seen + 3
        })
        .await;
        runtime.drain().await;
    });
    // Ends every task of the first run, which closes its sled database.
    rt.shutdown_timeout(Duration::from_secs(5));
    let mut got = ids(&root);
    got.sort_unstable();
    assert_eq!(got, [1, 2, 2, 3, 4, 5, 6]);
    let update = sent(&root)
        .into_iter()
        .filter(|p| p["id"] == 2)
        .map(|p| p["updated_at"].clone())
        .collect::<Vec<_>>();
    assert_eq!(update.len(), 2);
    assert_ne!(update[0], update[1]);

    let before_restart = shop.lock().unwrap().requests.len();
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        wait_for("polls after the restart", 10, || {
            shop.lock().unwrap().requests.len() >= before_restart + 3
        })
        .await;
        // Resumed from the stored cursor, not from `initial`.
        let first = shop.lock().unwrap().requests[before_restart].clone();
        assert_eq!(first["since"], "2026-02-07T10:00:00Z");
        tokio::time::sleep(Duration::from_millis(300)).await;
        runtime.drain().await;
    });
    assert_eq!(ids(&root).len(), 7, "no item sent again after the restart");
}

#[test]
fn a_failing_poll_is_tried_again_at_the_next_interval() {
    let shop = Arc::new(Mutex::new(Shop {
        down: true,
        ..Shop::default()
    }));
    let base = serve_shop(shop.clone());
    let dir = project(&shop_connector(&base), &[("feed", POLL_PIPELINE)]);
    let root = dir.path().to_path_buf();
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        wait_for("three tries", 10, || {
            shop.lock().unwrap().requests.len() >= 3
        })
        .await;
        assert!(sent(&root).is_empty());
        assert_eq!(runtime.state().get(&cursor_key("feed")).unwrap(), None);
        // Back up: the next interval gets through.
        shop.lock().unwrap().down = false;
        shop.lock().unwrap().items.push(item(1, 1));
        wait_for("the item", 10, || sent(&root).len() == 1).await;
        runtime.drain().await;
    });
}

#[test]
fn a_poll_whose_connector_is_not_configured_calls_nothing() {
    // SHOP_URL is unset: `shop` stands in as `out`, a file. Polling it would write the poll's
    // payload into that file at every interval.
    let unconfigured = r#"  shop:
    kind: http
    base_url: "${SHOP_URL}"
    unconfigured: out
    operations:
      list_items: { method: GET, path: /list_items }
"#;
    let dir = project(unconfigured, &[("feed", POLL_PIPELINE)]);
    let root = dir.path().to_path_buf();
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!root.join("out/events.jsonl").exists());
        runtime.drain().await;
    });
}

#[test]
fn a_poll_on_a_cron_schedule_polls_at_each_time_and_resumes_from_its_cursor() {
    let shop = Arc::new(Mutex::new(Shop::default()));
    shop.lock().unwrap().items.push(item(1, 1));
    let base = serve_shop(shop.clone());
    // Six fields, seconds first: every second, so the test need not wait a minute.
    let pipeline = POLL_PIPELINE.replace("every: 200ms", r#"cron: "* * * * * *""#);
    let dir = project(&shop_connector(&base), &[("feed", &pipeline)]);
    let root = dir.path().to_path_buf();
    tokio().block_on(async {
        let (runtime, _, rx) = Runtime::open(&root, no_env, Settings::default()).unwrap();
        runtime.start(rx).unwrap();
        wait_for("the first item", 10, || ids(&root) == [1]).await;
        // An item updated later is found by a later poll, which asks from the stored cursor.
        shop.lock().unwrap().items.push(item(2, 2));
        wait_for("the second item", 10, || ids(&root) == [1, 2]).await;
        let requests = shop.lock().unwrap().requests.clone();
        assert!(requests.len() >= 2, "{requests:?}");
        assert_eq!(requests[0]["since"], "2026-01-01T00:00:00Z");
        assert!(
            requests
                .iter()
                .any(|r| r["since"] == "2026-02-01T10:00:00Z"),
            "no poll resumed from the cursor: {requests:?}"
        );
        runtime.drain().await;
    });
}
