//! The web console at `/ui`: its pages in Debian's Chromium (tests/browser/console.mjs, driven
//! by playwright-core) against the real binary serving the shipped project, and the admin API
//! under it refusing every call without the token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{copy_dir, eventually, project, Engine, ADMIN_TOKEN};
use support::upstream::Upstream;

const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's project (configuration, pipelines, mappings, scripts) in a fresh folder.
fn shipped_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("crossdock.yaml"),
        dir.path().join("crossdock.yaml"),
    )
    .unwrap();
    for folder in ["pipelines", "mappings", "scripts"] {
        copy_dir(&repo().join(folder), &dir.path().join(folder));
    }
    dir
}

/// tests/browser's node_modules, installed from its lock file when missing (as `.ci/run` does).
fn browser_tests_ready() -> std::path::PathBuf {
    let browser = repo().join("tests/browser");
    if !browser.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser)
            .status()
            .expect("npm is needed for the browser tests (apt-get install -y npm)");
        assert!(status.success(), "npm ci in tests/browser failed");
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is needed for the browser tests: apt-get install -y chromium (.ci/run does)"
    );
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_pipelines_events_trails_and_retries_a_dead_letter_in_a_browser() {
    let browser = browser_tests_ready();
    // The ERP refuses the first backorder (400: no retry can fix it, so a dead letter at once)
    // and takes the next, the retry.
    let erp = Upstream::start().await;
    erp.fail_next(400, r#"{"error":"warehouse closed"}"#, None);
    let dir = shipped_project();
    // The fixtures the playground offers as payloads.
    copy_dir(
        &repo().join("tests/fixtures/bigcommerce"),
        &dir.path().join("tests/fixtures/bigcommerce"),
    );
    // The playground's saves are on for this engine.
    let config_path = dir.path().join("crossdock.yaml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        config.contains("server: { listen:"),
        "the shipped server line"
    );
    std::fs::write(
        &config_path,
        config.replace("server: { listen:", "server: { console_save: true, listen:"),
    )
    .unwrap();
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("ERP_BASE_URL", erp.url.as_str()),
            ("ERP_API_TOKEN", "erp-test-token"),
        ],
    );
    let where_ = format!("console at http://{}/ui/", engine.addr);
    eventually(
        "the start-up line for the console",
        Duration::from_secs(10),
        || async { engine.log().contains(&where_).then_some(()) },
    )
    .await;
    let shots = match std::env::var_os("CROSSDOCK_SCREENSHOTS") {
        Some(d) => std::path::PathBuf::from(d),
        None => dir.path().join("screenshots"),
    };
    let url = engine.url("");
    let project = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("console.mjs")
            .current_dir(&browser)
            .env("CROSSDOCK_URL", url)
            .env("CROSSDOCK_TOKEN", ADMIN_TOKEN)
            .env("CROSSDOCK_REPO", repo())
            .env("CROSSDOCK_PROJECT", &project)
            .env("CROSSDOCK_SCREENSHOTS", &shots)
            .env("CHROMIUM", CHROMIUM)
            .output()
            .expect("node is needed for the browser tests")
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser test failed:\n{out}\n{err}\nengine log:\n{}",
        engine.log()
    );
    // The case the playground saved passes `crossdock test` on the edited project.
    let test = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["test", "--filter", "from the console"])
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && said.contains("High value cart from the console"),
        "{said}\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
    // What the page showed happened: the retry reached the ERP with the backorder, and no dead
    // letter is left.
    let sent = erp.received();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, "/v1/backorders");
    assert_eq!(
        sent[0].headers.get("authorization").unwrap(),
        "Bearer erp-test-token"
    );
    assert_eq!(sent[0].body["order_id"], "1073459980");
    let (_, dlq) = engine.admin("/api/dlq").await;
    assert_eq!(dlq["total"], 0);
}

#[tokio::test]
async fn every_console_api_call_is_refused_without_the_token() {
    let dir = shipped_project();
    let engine = Engine::start(dir.path());
    let client = Engine::client();
    // The page itself is public (a login form, no data), with a policy that runs only its own
    // script and forbids framing.
    let page = client.get(engine.url("/ui/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<form id="login""#));
    assert!(
        !html.contains("shopify-stock"),
        "no data in the page itself"
    );
    for file in ["/ui", "/ui/app.js", "/ui/style.css"] {
        let r = client.get(engine.url(file)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{file}");
    }
    assert_eq!(
        client
            .get(engine.url("/ui/secrets.txt"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    // Every call the console makes, with no token and with a wrong one.
    let calls = [
        ("GET", "/api/pipelines"),
        ("GET", "/api/events"),
        ("GET", "/api/events?outcome=processed&limit=5"),
        ("GET", "/api/events/evt_0000000000000000"),
        ("GET", "/api/dlq?limit=200"),
        ("GET", "/api/dlq/evt_0000000000000000"),
        ("POST", "/api/dlq/evt_0000000000000000/retry"),
        ("DELETE", "/api/dlq/evt_0000000000000000"),
        ("POST", "/api/pipelines/bigcommerce-carts/dry-run"),
    ];
    for (method, path) in calls {
        for token in [None, Some("wrong-token")] {
            let mut request = client.request(method.parse().unwrap(), engine.url(path));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let r = request.body("{}").send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {token:?}");
        }
        let r = client
            .request(method.parse().unwrap(), engine.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status().as_u16(), 401, "{method} {path} with the token");
    }
}

#[tokio::test]
async fn the_console_is_off_when_the_admin_api_is() {
    let dir = shipped_project();
    let engine = Engine::start_with(dir.path(), &[("CROSSDOCK_ADMIN_TOKEN", "")]);
    let r = Engine::client()
        .get(engine.url("/ui/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let answer: Value = r.json().await.unwrap();
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("CROSSDOCK_ADMIN_TOKEN"));
    assert!(!engine.log().contains("console at"));
}

const PAGED_PROJECT: &str = r#"
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

const PAGED: &str = r#"
pipeline: paged
source:
  webhook: { path: /hooks/paged }
trigger:
  when: 'record.n != 0'
steps:
  - send: { to: out, op: append }
"#;

const OTHER: &str = r#"
pipeline: other
source:
  webhook: { path: /hooks/other }
steps:
  - send: { to: out, op: append }
"#;

#[tokio::test]
async fn the_events_list_pages_newest_first_and_filters_on_the_server() {
    let dir = project(&[
        ("crossdock.yaml", PAGED_PROJECT),
        ("pipelines/paged.yaml", PAGED),
        ("pipelines/other.yaml", OTHER),
    ]);
    let engine = Engine::start(dir.path());
    let mut ids = Vec::new();
    for n in 0..7 {
        let (status, a) = engine
            .post("/hooks/paged", &format!(r#"{{"n":{n}}}"#))
            .await;
        assert_eq!(status, 202);
        ids.push(a["event_id"].as_str().unwrap().to_string());
    }
    let (_, a) = engine.post("/hooks/other", r#"{"n":1}"#).await;
    let other = a["event_id"].as_str().unwrap().to_string();
    eventually("eight trails", Duration::from_secs(15), || async {
        let (_, page) = engine.admin("/api/events?limit=100").await;
        (page["items"].as_array().unwrap().len() == 8).then_some(())
    })
    .await;

    // Newest first, three at a time, following `next`.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = engine
            .admin(&format!(
                "/api/events?pipeline=paged&limit=3&cursor={cursor}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["pipeline"], "paged");
            seen.push(item["event_id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // The outcome filter: n = 0 did not match the trigger.
    let (_, skipped) = engine.admin("/api/events?outcome=skipped").await;
    let items = skipped["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{skipped}");
    assert_eq!(items[0]["event_id"], ids[0].as_str());
    assert_eq!(items[0]["actions"], 0);
    let (_, newest) = engine.admin("/api/events?limit=1").await;
    assert_eq!(newest["items"][0]["event_id"], other.as_str());
    assert_eq!(newest["items"][0]["status"], "processed");
    assert_eq!(newest["items"][0]["actions"], 1);
    let (_, none) = engine.admin("/api/events?pipeline=nope").await;
    assert_eq!(none, json!({"items": [], "next": null, "scanned": 8}));
}
