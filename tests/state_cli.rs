//! `crossdock state` and dry runs against a real sled store in a temp copy of the shipped
//! project: a dry run reads the stored stock, reports the reservation it would make, and
//! leaves the store as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::engine::copy_dir;

fn crossdock(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)),
    )
}

#[test]
fn dry_runs_read_the_store_and_never_write_it() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo.join("crossdock.yaml"),
        dir.path().join("crossdock.yaml"),
    )
    .unwrap();
    for sub in ["pipelines", "mappings", "scripts", "tests/fixtures/shopify"] {
        copy_dir(&repo.join(sub), &dir.path().join(sub));
    }
    let d = dir.path();

    let (code, out) = crossdock(d, &["state", "stock", "IPOD2009BLACK", "--set", "5"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "IPOD2009BLACK: on hand 5, reserved 0, available 5"
    );

    let (code, out) = crossdock(
        d,
        &[
            "dry-run",
            "shopify-stock",
            "--input",
            "tests/fixtures/shopify/orders-create.json",
            "--header",
            "X-Shopify-Topic=orders/create",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let outcome: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let changes = outcome["state_changes"].as_array().unwrap();
    let reserved = changes
        .iter()
        .find(|c| c["key"] == "stock/IPOD2009BLACK")
        .expect("a stock change");
    assert_eq!(reserved["before"]["reserved"], 0);
    assert_eq!(reserved["after"]["reserved"], 1);
    let reservation = changes
        .iter()
        .find(|c| c["key"].as_str().unwrap_or("").starts_with("reservation/"))
        .unwrap();
    assert_eq!(reservation["after"]["answer"]["ok"], true);

    // Nothing was written.
    let (_, out) = crossdock(d, &["state", "stock", "IPOD2009BLACK"]);
    assert_eq!(
        out.trim(),
        "IPOD2009BLACK: on hand 5, reserved 0, available 5"
    );
    let (_, out) = crossdock(d, &["state", "reservation", "1073459980"]);
    assert_eq!(out.trim(), "reservation 1073459980: none");
}
