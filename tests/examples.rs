//! The shipped example project at the repository root checks clean and passes its own pipeline
//! tests through the real binary, so the examples cannot rot.

use std::process::Command;

fn crossdock(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("run crossdock: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_project_checks_clean() {
    let (code, stdout, stderr) = crossdock(&["check", "--strict"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: 5 pipelines"), "{stdout}");
    assert!(stderr.is_empty(), "warnings on a fresh machine: {stderr}");
}

#[test]
fn the_shipped_pipeline_tests_pass() {
    let (code, stdout, stderr) = crossdock(&["test"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 30, "only {passed} cases ran");
}

#[test]
fn a_dry_run_of_an_abandoned_cart_shows_the_promised_actions() {
    let (code, stdout, stderr) = crossdock(&[
        "dry-run",
        "bigcommerce-carts",
        "--input",
        "tests/fixtures/bigcommerce/webhook-cart-abandoned.json",
        "--fetch",
        "bigcommerce.get_cart=tests/fixtures/bigcommerce/cart-high-value.json",
        "--received-at",
        "2026-11-21T09:30:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let out: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let actions = out["actions"].as_array().cloned().unwrap_or_default();
    let shape: Vec<(String, String, String)> = actions
        .iter()
        .map(|a| {
            (
                a["connector"].to_string(),
                a["op"].to_string(),
                a["object"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                r#""salesforce""#.into(),
                r#""upsert""#.into(),
                r#""Opportunity""#.into()
            ),
            (
                r#""salesforce""#.into(),
                r#""create""#.into(),
                r#""Task""#.into()
            ),
        ]
    );
    assert_eq!(actions[1]["payload"]["Priority"], "High");
    assert_eq!(actions[1]["payload"]["ActivityDate"], "2026-11-22");
    assert_eq!(out["state_changes"], serde_json::json!([]));
}

/// examples/marketplace-pushes (docs/marketplace-pushes.md) checks clean with no accounts and
/// passes its own cases; `tests/tenants.rs` runs it through the binary against an ERP on loopback.
#[test]
fn the_marketplace_pushes_example_checks_clean_and_passes_its_tests() {
    let (code, stdout, stderr) = crossdock(&["check", "--strict", "examples/marketplace-pushes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: 2 pipelines"), "{stdout}");
    assert!(stderr.is_empty(), "warnings on a fresh machine: {stderr}");
    let (code, stdout, stderr) = crossdock(&["test", "examples/marketplace-pushes"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("4 passed, 0 failed"),
        "{stdout}"
    );
}

/// examples/marketplace-polls (orders from Shopee, TikTok Shop, Lazada and Tokopedia into one
/// ERP format, their stock reserved) checks clean with no environment and passes its own cases;
/// tests/marketplaces.rs runs it against the mock platforms.
#[test]
fn the_marketplace_polls_example_checks_and_passes_its_tests() {
    example_checks_and_passes("marketplace-polls", 4, 5);
}

/// `check --strict` of examples/NAME says `ok: {pipelines} pipelines` with no warning, and its
/// own `crossdock test` passes `cases` cases.
fn example_checks_and_passes(name: &str, pipelines: usize, cases: usize) {
    let dir = format!("examples/{name}");
    let (code, stdout, stderr) = crossdock(&["check", "--strict", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("ok: {pipelines} pipelines")),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "warnings on a fresh machine: {stderr}");
    let (code, stdout, stderr) = crossdock(&["test", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.ends_with(&format!("{cases} passed, 0 failed\n")),
        "{stdout}"
    );
}

/// examples/stock-to-listings (docs/stock-to-listings.md) checks clean with no environment and
/// passes its own cases; tests/stock_to_listings.rs runs it against the mock marketplaces.
#[test]
fn the_stock_to_listings_example_checks_and_passes_its_tests() {
    example_checks_and_passes("stock-to-listings", 1, 4);
}

/// examples/commerce-hub (docs/commerce-hub.md) checks clean with no environment and passes its
/// own cases; tests/commerce_hub.rs runs it against the mock commerce clouds.
#[test]
fn the_commerce_hub_example_checks_and_passes_its_tests() {
    example_checks_and_passes("commerce-hub", 5, 8);
}
