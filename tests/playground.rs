//! The console playground's API against the real binary: dry runs of an edited mapping,
//! saving a file (refused when the project does not pass check with it, off unless
//! `server.console_save: true`, confined to pipelines/, mappings/ and scripts/), fixtures as
//! payloads (confined to tests/fixtures), and the token every call needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::engine::{project, Engine, ADMIN_TOKEN};

const PROJECT: &str = r#"
server: { console_save: true }
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

const PIPELINE: &str = r#"
pipeline: orders
source:
  webhook: { path: /hooks/orders }
steps:
  - map: order
  - send: { to: out, op: append }
"#;

const MAPPING: &str = "mapping: order\nfields:\n  id: { from: $.id, type: string }\n";

fn files(save: bool) -> tempfile::TempDir {
    let config = if save {
        PROJECT.to_string()
    } else {
        PROJECT.replace("server: { console_save: true }\n", "")
    };
    project(&[
        ("crossdock.yaml", &config),
        ("pipelines/orders.yaml", PIPELINE),
        ("mappings/order.yaml", MAPPING),
        ("tests/fixtures/shop/order.json", r#"{"id": 7}"#),
        ("secret.json", r#"{"not": "a fixture"}"#),
    ])
}

async fn call(engine: &Engine, method: &str, path: &str, body: String) -> (u16, Value) {
    let r = Engine::client()
        .request(method.parse().unwrap(), engine.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_edited_mapping_is_dry_run_and_its_errors_are_located() {
    let dir = files(true);
    let engine = Engine::start(dir.path());
    let run = |text: &str| {
        json!({ "payload": {"id": 7}, "file": "mappings/order.yaml", "text": text }).to_string()
    };
    let (status, live) = call(
        &engine,
        "POST",
        "/api/playground/orders",
        json!({"payload": {"id": 7}}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["result"]["record"], json!({"id": "7"}));

    let edited = MAPPING.replace("  id:", "  order_id:");
    let (_, r) = call(&engine, "POST", "/api/playground/orders", run(&edited)).await;
    assert_eq!(r["result"]["record"], json!({"order_id": "7"}), "{r}");

    let broken = MAPPING.replace("type: string", "type: strung");
    let (status, r) = call(&engine, "POST", "/api/playground/orders", run(&broken)).await;
    assert_eq!(status, 200, "{r}");
    assert!(r.get("result").is_none(), "{r}");
    let d = &r["diagnostics"][0];
    assert_eq!(d["file"], "mappings/order.yaml", "{r}");
    assert_eq!(
        (d["line"].as_u64(), d["col"].as_u64()),
        (Some(3), Some(27)),
        "{r}"
    );
    // Nothing was written: the file on disk is as it was.
    let on_disk = std::fs::read_to_string(dir.path().join("mappings/order.yaml")).unwrap();
    assert_eq!(on_disk, MAPPING);
}

#[tokio::test]
async fn a_save_is_checked_written_and_reloaded() {
    let dir = files(true);
    let engine = Engine::start(dir.path());
    let (_, before) = engine.admin("/api/pipelines").await;

    let broken = MAPPING.replace("type: string", "type: strung");
    let (status, r) = call(&engine, "PUT", "/api/files/mappings/order.yaml", broken).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["diagnostics"][0]["file"], "mappings/order.yaml", "{r}");
    let on_disk = std::fs::read_to_string(dir.path().join("mappings/order.yaml")).unwrap();
    assert_eq!(on_disk, MAPPING, "a refused save leaves the file alone");

    let edited = MAPPING.replace("  id:", "  order_id:");
    let (status, r) = call(
        &engine,
        "PUT",
        "/api/files/mappings/order.yaml",
        edited.clone(),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "live", "{r}");
    let on_disk = std::fs::read_to_string(dir.path().join("mappings/order.yaml")).unwrap();
    assert_eq!(on_disk, edited);
    let (_, after) = engine.admin("/api/pipelines").await;
    assert_ne!(before["version"], after["version"]);
    assert_eq!(after["version"], r["version"]);
    let (_, live) = call(
        &engine,
        "POST",
        "/api/playground/orders",
        json!({"payload": {"id": 7}}).to_string(),
    )
    .await;
    assert_eq!(
        live["result"]["record"],
        json!({"order_id": "7"}),
        "the saved mapping runs"
    );
    let (_, read) = engine.admin("/api/files/mappings/order.yaml").await;
    assert_eq!(read["text"], edited.as_str());
}

#[tokio::test]
async fn paths_outside_the_editable_folders_and_fixtures_are_refused() {
    let dir = files(true);
    let engine = Engine::start(dir.path());
    for path in [
        "/api/files/crossdock.yaml",
        "/api/files/pipelines/..%2Fcrossdock.yaml",
        "/api/files/mappings/sub/x.yaml",
        "/api/files/scripts/x.yaml",
        "/api/files/secret.json",
    ] {
        let (status, r) = call(&engine, "PUT", path, "mapping: x\nfields: {}\n".into()).await;
        assert_eq!(status, 400, "{path}: {r}");
        let (status, _) = engine.admin(path).await;
        assert_eq!(status, 400, "{path}");
    }
    let config = std::fs::read_to_string(dir.path().join("crossdock.yaml")).unwrap();
    assert!(config.contains("console_save"), "crossdock.yaml untouched");

    let (_, list) = engine.admin("/api/fixtures").await;
    assert_eq!(list["fixtures"], json!(["shop/order.json"]));
    let (status, f) = engine.admin("/api/fixtures/shop/order.json").await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["text"], r#"{"id": 7}"#);
    for path in [
        "/api/fixtures/..%2F..%2Fsecret.json",
        "/api/fixtures/shop/..%2F..%2F..%2Fsecret.json",
    ] {
        let (status, r) = engine.admin(path).await;
        assert_eq!(status, 400, "{path}: {r}");
    }
    // A link inside the folder that leads out of it.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            dir.path().join("secret.json"),
            dir.path().join("tests/fixtures/shop/leak.json"),
        )
        .unwrap();
        let (status, r) = engine.admin("/api/fixtures/shop/leak.json").await;
        assert_eq!(status, 400, "{r}");
    }
}

#[tokio::test]
async fn saving_is_off_unless_crossdock_yaml_allows_it() {
    let dir = files(false);
    let engine = Engine::start(dir.path());
    let (_, list) = engine.admin("/api/files").await;
    assert_eq!(list["save"], false);
    assert_eq!(
        list["files"],
        json!(["mappings/order.yaml", "pipelines/orders.yaml"])
    );
    let edited = MAPPING.replace("  id:", "  order_id:");
    let (status, r) = call(&engine, "PUT", "/api/files/mappings/order.yaml", edited).await;
    assert_eq!(status, 403, "{r}");
    assert!(r["error"].as_str().unwrap().contains("console_save"), "{r}");
    let on_disk = std::fs::read_to_string(dir.path().join("mappings/order.yaml")).unwrap();
    assert_eq!(on_disk, MAPPING);
}

#[tokio::test]
async fn every_playground_call_needs_the_token() {
    let dir = files(true);
    let engine = Engine::start(dir.path());
    let client = Engine::client();
    for (method, path) in [
        ("GET", "/api/files"),
        ("GET", "/api/files/mappings/order.yaml"),
        ("PUT", "/api/files/mappings/order.yaml"),
        ("GET", "/api/fixtures"),
        ("GET", "/api/fixtures/shop/order.json"),
        ("POST", "/api/playground/orders"),
        ("POST", "/api/test-cases/orders"),
    ] {
        for token in [None, Some("wrong-token")] {
            let mut request = client.request(method.parse().unwrap(), engine.url(path));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let r = request.body(MAPPING).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {token:?}");
        }
    }
    let on_disk = std::fs::read_to_string(dir.path().join("mappings/order.yaml")).unwrap();
    assert_eq!(on_disk, MAPPING);
}

#[tokio::test]
async fn a_dry_run_becomes_a_test_case_that_passes_and_is_never_overwritten() {
    let dir = files(true);
    let engine = Engine::start(dir.path());
    let case = json!({ "name": "Order 7 / from the console", "payload": {"id": 7} }).to_string();
    let (status, r) = call(&engine, "POST", "/api/test-cases/orders", case.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["path"],
        "tests/pipelines/orders-order-7-from-the-console.yaml"
    );
    let written = std::fs::read_to_string(dir.path().join(r["path"].as_str().unwrap())).unwrap();
    assert!(written.contains(r#""action_count": 1"#), "{written}");
    let (status, again) = call(&engine, "POST", "/api/test-cases/orders", case).await;
    assert_eq!(status, 409, "{again}");
    let same = std::fs::read_to_string(dir.path().join(r["path"].as_str().unwrap())).unwrap();
    assert_eq!(same, written);
    let (status, _) = call(
        &engine,
        "POST",
        "/api/test-cases/orders",
        json!({"name": "../", "payload": {}}).to_string(),
    )
    .await;
    assert_eq!(status, 400);

    let test = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success() && said.contains("Order 7"), "{said}");
}
