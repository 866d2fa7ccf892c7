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
use support::mock_salesforce::{MockSalesforce, CLIENT_ID, CLIENT_SECRET};
use support::upstream::Upstream;

const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A pipeline whose one call goes to a remote of its own, which refuses the first: its event is
/// the dead letter the console's "retry all matching" retries.
const BULK_ORDERS: &str = r#"
pipeline: bulk-orders
source:
  webhook: { path: /hooks/bulk/orders }
keys: { order: $.id }
steps:
  - send: { to: bulk, op: create }
on_error:
  retry: { attempts: 1 }
  dead_letter: true
"#;

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

const BC_TOKEN: &str = "console-bigcommerce-access-token";

/// BigCommerce's V3 carts API behind its X-Auth-Token, holding the high-value cart of
/// tests/fixtures (612.5 USD); any other cart is a 404, as after checkout.
async fn bigcommerce_carts() -> String {
    use axum::extract::Path as UrlPath;
    use axum::http::{HeaderMap, StatusCode};
    async fn cart(
        headers: HeaderMap,
        UrlPath((_, id)): UrlPath<(String, String)>,
    ) -> (StatusCode, axum::Json<Value>) {
        if headers.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(BC_TOKEN) {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"status": 401})));
        }
        let path = repo().join("tests/fixtures/bigcommerce/cart-high-value.json");
        let cart: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        if cart["data"]["id"] == id.as_str() {
            return (StatusCode::OK, axum::Json(cart));
        }
        let missing = json!({"status": 404, "title": "Cart not found"});
        (StatusCode::NOT_FOUND, axum::Json(missing))
    }
    let app = axum::Router::new().route("/stores/{store}/v3/carts/{id}", axum::routing::get(cart));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
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
    // The abandoned cart: the store's API for its fetch, an org for its Opportunity and Task.
    let bc = bigcommerce_carts().await;
    let sf = MockSalesforce::start().await;
    let (sf_url, sf_token_url) = (sf.base_url(), sf.token_url());
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
    let bulk = Upstream::start().await;
    bulk.fail_next(400, r#"{"error":"not yet"}"#, None);
    std::fs::write(dir.path().join("pipelines/bulk-orders.yaml"), BULK_ORDERS).unwrap();
    let config = std::fs::read_to_string(dir.path().join("crossdock.yaml")).unwrap();
    let bulk_connector = format!(
        "connectors:\n  bulk:\n    kind: http\n    base_url: {}\n    operations:\n      create: {{ method: POST, path: /orders }}\n",
        bulk.url
    );
    std::fs::write(
        dir.path().join("crossdock.yaml"),
        config.replacen("connectors:\n", &bulk_connector, 1),
    )
    .unwrap();
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("ERP_BASE_URL", erp.url.as_str()),
            ("ERP_API_TOKEN", "erp-test-token"),
            ("BC_API_URL", bc.as_str()),
            ("BC_STORE_HASH", "abc123"),
            ("BC_ACCESS_TOKEN", BC_TOKEN),
            ("SF_INSTANCE_URL", sf_url.as_str()),
            ("SF_TOKEN_URL", sf_token_url.as_str()),
            ("SF_CLIENT_ID", CLIENT_ID),
            ("SF_CLIENT_SECRET", CLIENT_SECRET),
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
    // The bulk retry reached the remote the second time.
    let bulk_sent = bulk.received();
    assert_eq!(bulk_sent.len(), 1, "{bulk_sent:?}");
    assert_eq!(bulk_sent[0].body["id"], 5005);
    // The Opportunity whose payload the explained trail showed is in the org.
    let opportunities = sf.find(
        "Opportunity",
        "External_Id__c",
        "BC-CART-09346904-4175-44fd-be53-f7e598531b6c",
    );
    assert_eq!(opportunities.len(), 1, "{:?}", sf.records("Opportunity"));
    assert_eq!(opportunities[0]["StageName"], "Prospecting");
    assert!(sf.records("Lead").is_empty());
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
    for file in [
        "/ui",
        "/ui/app.js",
        "/ui/events.js",
        "/ui/overview.js",
        "/ui/trail.js",
        "/ui/playground.js",
        "/ui/style.css",
    ] {
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
        ("GET", "/api/events?key=order:1001&tenant=t1"),
        ("GET", "/api/events/evt_0000000000000000/raw"),
        ("GET", "/api/events/evt_0000000000000000/body"),
        ("GET", "/api/refused"),
        ("POST", "/api/dlq/retry"),
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
