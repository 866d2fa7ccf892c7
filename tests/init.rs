//! `crossdock init` through the real binary: every template makes a project that checks clean
//! and passes its own test cases, and a second init into the same folder writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn crossdock(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(args)
        .current_dir(dir)
        // The templates' connectors read these; unset, they stand in with the console.
        .env_remove("SF_INSTANCE_URL")
        .env_remove("ERP_BASE_URL")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn templates() -> Vec<String> {
    let out = crossdock(Path::new("."), &["init", "--list"]);
    assert!(out.status.success());
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_template_checks_clean_and_passes_its_tests() {
    let names = templates();
    assert!(names.len() >= 2, "{names:?}");
    for name in names {
        let tmp = tempfile::tempdir().unwrap();
        let init = crossdock(tmp.path(), &["init", "shop", "--template", &name]);
        assert!(init.status.success(), "{name}: {}", text(&init.stderr));
        let project = tmp.path().join("shop");
        for part in [
            "pipelines",
            "mappings",
            "scripts",
            "tests/pipelines",
            "tests/fixtures",
            "schemas",
        ] {
            assert!(project.join(part).is_dir(), "{name}: no {part}/");
        }

        let check = crossdock(&project, &["check"]);
        assert!(check.status.success(), "{name}: {}", text(&check.stderr));
        assert_eq!(text(&check.stderr), "", "{name}: check is not clean");
        assert!(text(&check.stdout).starts_with("ok: "), "{name}");
        assert!(!text(&check.stdout).starts_with("ok: 0 "), "{name}");
        // Every file that names a schema names one the new project has.
        for dir in ["", "pipelines", "mappings", "tests/pipelines"] {
            for entry in std::fs::read_dir(project.join(dir)).unwrap() {
                let file = entry.unwrap().path();
                if file.extension().is_none_or(|e| e != "yaml") {
                    continue;
                }
                let body = std::fs::read_to_string(&file).unwrap();
                let Some(schema) = body
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# yaml-language-server: $schema="))
                else {
                    continue;
                };
                let target = file.parent().unwrap().join(schema);
                assert!(
                    target.is_file(),
                    "{name}: {} names {schema}",
                    file.display()
                );
            }
        }

        let test = crossdock(&project, &["test"]);
        let summary = text(&test.stdout);
        assert!(
            test.status.success(),
            "{name}: {summary}{}",
            text(&test.stderr)
        );
        assert!(summary.contains(" passed, 0 failed"), "{name}: {summary}");
        assert!(!summary.contains("\n0 passed"), "{name}: no case ran");
    }
}

#[test]
fn init_into_a_project_refuses_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/shopify-stock.yaml"), "mine\n").unwrap();
    let out = crossdock(dir, &["init", "--template", "shopify-erp-stock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    // Refused before the first write: neither the clashing file nor any other changed.
    assert_eq!(
        std::fs::read_to_string(dir.join("pipelines/shopify-stock.yaml")).unwrap(),
        "mine\n"
    );
    assert!(!dir.join("crossdock.yaml").exists());
}
