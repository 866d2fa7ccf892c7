//! The JSON Schemas under schemas/: generated from the config types by the real binary, they
//! must equal the committed copies, and every YAML file the repository ships (the example
//! project at the root, the `crossdock init` templates and the projects under examples/) must
//! validate against its schema and name it on its first line for the YAML language server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const REGENERATE: &str = "cargo run -- schema --write schemas";

/// (kind for `crossdock schema`, file under schemas/, files of that kind from a project root)
const KINDS: [(&str, &str, &str); 4] = [
    ("project", "crossdock.schema.json", ""),
    ("pipeline", "pipeline.schema.json", "pipelines"),
    ("mapping", "mapping.schema.json", "mappings"),
    ("test", "test.schema.json", "tests/pipelines"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated(kind: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["schema", kind])
        .output()
        .unwrap();
    assert!(out.status.success(), "crossdock schema {kind} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn committed(file: &str) -> String {
    std::fs::read_to_string(root().join("schemas").join(file)).unwrap_or_default()
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    let mut stale = Vec::new();
    for (kind, file, _) in KINDS {
        if generated(kind) != committed(file) {
            stale.push(format!("schemas/{file}"));
        }
    }
    assert!(
        stale.is_empty(),
        "{} differ from what the config types generate; regenerate them with `{REGENERATE}` \
         and commit the result",
        stale.join(", ")
    );
}

/// The YAML file as the engine reads it (its own parser, no environment), as JSON.
fn yaml_value(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let none = |_: &str| None;
    let (doc, problems) = crossdock::config::yaml::parse(&text, &none)
        .unwrap_or_else(|p| panic!("{}: {}", path.display(), p.message));
    assert!(problems.is_empty(), "{}: {problems:?}", path.display());
    doc.value
}

fn validator(file: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&committed(file)).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(v: &jsonschema::Validator, value: &Value) -> Vec<String> {
    v.iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// Every project the repository ships: the root, each template and each example project.
fn projects() -> Vec<PathBuf> {
    let mut out = vec![root()];
    for folder in ["templates", "examples"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("crossdock.yaml").is_file())
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

fn files_of(project: &Path, dir: &str) -> Vec<PathBuf> {
    if dir.is_empty() {
        return vec![project.join("crossdock.yaml")];
    }
    // A template keeps only its crossdock.yaml; its other files are the root's.
    let Ok(entries) = std::fs::read_dir(project.join(dir)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_file_validates_and_names_its_schema() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for project in projects() {
        for (_, schema_file, dir) in KINDS {
            let v = validator(schema_file);
            // An example's files name the repository's schemas, two folders up; a template's
            // crossdock.yaml names those of the project `crossdock init` makes.
            let below_root = if project.starts_with(root().join("examples")) {
                2
            } else {
                0
            };
            let depth = below_root
                + if dir.is_empty() {
                    0
                } else {
                    dir.split('/').count()
                };
            let modeline = format!(
                "# yaml-language-server: $schema={}schemas/{schema_file}",
                "../".repeat(depth)
            );
            for file in files_of(&project, dir) {
                checked += 1;
                let shown = file.strip_prefix(root()).unwrap().display().to_string();
                let text = std::fs::read_to_string(&file).unwrap();
                if text.lines().next() != Some(modeline.as_str()) {
                    problems.push(format!("{shown}: first line is not `{modeline}`"));
                }
                for e in errors(&v, &yaml_value(&file)) {
                    problems.push(format!("{shown}: {e}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The root's 1 + 5 + 4 + 5 files, the templates' crossdock.yaml and the examples' 40 files
    // at the time of writing.
    assert!(checked >= 57, "only {checked} files found");
}

#[test]
fn a_broken_file_fails_its_schema() {
    let pipeline = validator("pipeline.schema.json");
    let good = yaml_value(&root().join("pipelines/shopify-stock.yaml"));
    assert!(errors(&pipeline, &good).is_empty());

    // A misspelt key at the top, a misspelt step kind, a connector option of the wrong type.
    let mut typo = good.clone();
    typo["stpes"] = typo["steps"].clone();
    assert!(!errors(&pipeline, &typo).is_empty(), "unknown key accepted");

    let mut step = good.clone();
    step["steps"][0] = serde_json::json!({ "mpa": "shopify-order-lines" });
    assert!(
        !errors(&pipeline, &step).is_empty(),
        "unknown step kind accepted"
    );

    let mut scheme = good;
    scheme["source"]["webhook"]["verify"]["scheme"] = "shopfy".into();
    assert!(
        !errors(&pipeline, &scheme).is_empty(),
        "unknown scheme accepted"
    );

    let project = validator("crossdock.schema.json");
    let mut conn = yaml_value(&root().join("crossdock.yaml"));
    conn["connectors"]["erp"]["operations"]["backorder"]["method"] = "SEND".into();
    assert!(
        !errors(&project, &conn).is_empty(),
        "unknown HTTP method accepted"
    );
    let mut kind = yaml_value(&root().join("crossdock.yaml"));
    kind["connectors"]["erp"]["kind"] = "htp".into();
    assert!(
        !errors(&project, &kind).is_empty(),
        "unknown connector kind accepted"
    );

    let mapping = validator("mapping.schema.json");
    let mut field = yaml_value(&root().join("mappings/shopify-order-lines.yaml"));
    field["fields"]["order_id"] = serde_json::json!({ "form": "$.id" });
    assert!(
        !errors(&mapping, &field).is_empty(),
        "unknown field key accepted"
    );

    let tests = validator("test.schema.json");
    let mut case = yaml_value(&root().join("tests/pipelines/shopify-stock.yaml"));
    case["cases"][0]["expect"]["action_cuont"] = 1.into();
    assert!(
        !errors(&tests, &case).is_empty(),
        "unknown expect key accepted"
    );
}
