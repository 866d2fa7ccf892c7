//! Pipeline test cases: `tests/pipelines/*.yaml`, run by `crossdock test`.
//!
//! Owns the test-case file format, running each case against a fresh in-memory state seeded
//! as the case says, and matching the outcome against what the case expects. Expected
//! actions and records match as subsets: a case names the fields it cares about, in order,
//! and extra fields or actions do not fail it. The CLI only prints what this returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::config::diag::{Code, Diagnostic, Diagnostics};
use crate::config::env::EnvLookup;
use crate::config::span::{PathSeg, Pos};
use crate::config::yaml::{self, from_doc};
pub use crate::flow::event::{event_info, EventSpec};
use crate::flow::input::{decode, Body, Decoded, InputFormat};
use crate::flow::{Action, Outcome, Project};
use crate::state::{MemoryStore, StateStore};

pub const TESTS_DIR: &str = "tests/pipelines";
pub const FIXTURES_DIR: &str = "tests/fixtures";

/// A file of test cases (its fields are the format's business; the type is public for its
/// schema).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pipeline: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    fixture: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    event: Option<EventSpec>,
    #[serde(default)]
    state: Option<Value>,
    /// Answers for the pipeline's `fetch` steps, by `connector.op`: a value, or
    /// `{ fixture: FILE }` for a file in tests/fixtures/.
    #[serde(default)]
    fetch: BTreeMap<String, Value>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    triggered: Option<bool>,
    #[serde(default)]
    actions: Option<Vec<Value>>,
    #[serde(default)]
    action_count: Option<usize>,
    #[serde(default)]
    errors: Option<Vec<String>>,
    #[serde(default)]
    record: Option<Value>,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: PathBuf,
    pub pipeline: String,
    pub name: String,
    /// Why the case failed; empty when it passed.
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case in `tests/pipelines/` of the project. Files that cannot be read or do not
/// fit the format come back as diagnostics; their cases do not run.
pub fn run_all(
    project: &Project,
    env: EnvLookup<'_>,
    filter: Option<&str>,
) -> (Vec<CaseResult>, Diagnostics) {
    let mut results = Vec::new();
    let mut diags = Diagnostics::default();
    let dir = project.root.join(TESTS_DIR);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for path in files {
        let rel = path
            .strip_prefix(&project.root)
            .unwrap_or(&path)
            .to_path_buf();
        match read_file(&path, &rel, env) {
            Ok((file, doc)) => {
                let Some(flow) = project.pipeline(&file.pipeline) else {
                    let at = doc.spans.value_pos(&[PathSeg::Key("pipeline".into())]);
                    diags.push(
                        Diagnostic::error(
                            &rel,
                            at,
                            format!("no pipeline named `{}`", file.pipeline),
                        )
                        .with_code(Code::UnknownName),
                    );
                    continue;
                };
                for case in &file.cases {
                    if filter.is_some_and(|f| !case.name.contains(f) && !file.pipeline.contains(f))
                    {
                        continue;
                    }
                    let failures = run_case(project, flow, case).unwrap_or_else(|e| vec![e]);
                    results.push(CaseResult {
                        file: rel.clone(),
                        pipeline: file.pipeline.clone(),
                        name: case.name.clone(),
                        failures: failures
                            .into_iter()
                            .map(|f| project.redactor.redact(&f))
                            .collect(),
                    });
                }
            }
            Err(d) => diags.push(d),
        }
    }
    (results, diags)
}

fn read_file(
    path: &Path,
    rel: &Path,
    env: EnvLookup<'_>,
) -> Result<(TestFile, yaml::Doc), Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::error(
            rel,
            Pos { line: 1, col: 1 },
            format!("cannot read file: {e}"),
        )
        .with_code(Code::Unreadable)
    })?;
    let (doc, problems) = yaml::parse(&text, env).map_err(|p| {
        Diagnostic::error(rel, p.pos, p.message)
            .with_code(Code::YamlSyntax)
            .with_source(&text)
    })?;
    if let Some(p) = problems.into_iter().next() {
        return Err(Diagnostic::error(rel, p.pos, p.message)
            .with_code(Code::YamlSyntax)
            .with_source(&text));
    }
    let file =
        from_doc::<TestFile>(&doc.value).map_err(|e| yaml::diagnostic(rel, &doc, &text, &e))?;
    Ok((file, doc))
}

/// Runs one case; `Err` when the case itself is malformed (missing fixture, …).
fn run_case(
    project: &Project,
    flow: &crate::flow::Flow,
    case: &Case,
) -> Result<Vec<String>, String> {
    let bytes = match &case.fixture {
        Some(f) => {
            let path = project.root.join(FIXTURES_DIR).join(f);
            std::fs::read(&path).map_err(|e| format!("fixture {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let events = match (&case.fixture, &case.input) {
        (Some(f), None) => decode(&bytes, InputFormat::for_path(f, Some(&flow.source))),
        (None, Some(input)) => vec![Decoded {
            label: "input".into(),
            body: Ok(Body::Value(input.clone())),
        }],
        (Some(_), Some(_)) => return Err("a case has either `fixture` or `input`, not both".into()),
        (None, None) => {
            return Err("a case needs `fixture` (a file in tests/fixtures/) or `input`".into())
        }
    };
    let base: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    if let Some(seed) = &case.state {
        crate::state::seed::seed(base.as_ref(), seed).map_err(|e| format!("state seed: {e}"))?;
    }
    let mut given = crate::flow::GivenAnswers {
        answers: BTreeMap::new(),
        hint: "give the answer under `fetch:` in the test case",
    };
    for (key, answer) in &case.fetch {
        let value = match answer.get("fixture").and_then(Value::as_str) {
            Some(f) if answer.as_object().is_some_and(|o| o.len() == 1) => {
                let path = project.root.join(FIXTURES_DIR).join(f);
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("fetch {key}: fixture {}: {e}", path.display()))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| format!("fetch {key}: fixture {}: {e}", path.display()))?
            }
            _ => answer.clone(),
        };
        given.answers.insert(key.clone(), value);
    }
    let spec = case.event.as_ref();
    let outcomes: Vec<Outcome> = events
        .into_iter()
        .enumerate()
        .map(|(i, decoded)| {
            let event = event_info(flow.name.as_str(), spec, i + 1, "test");
            flow.run_body(
                &project.rules,
                event,
                decoded.body,
                &decoded.label,
                &base,
                &given,
                crate::flow::RunOptions::keeping(crate::flow::Keep::Record),
            )
        })
        .collect();
    Ok(check_expectations(&case.expect, &outcomes))
}

fn check_expectations(expect: &Expect, outcomes: &[Outcome]) -> Vec<String> {
    let mut failures = Vec::new();
    let actions: Vec<&Action> = outcomes.iter().flat_map(|o| &o.actions).collect();
    let errors: Vec<String> = outcomes
        .iter()
        .enumerate()
        .flat_map(|(i, o)| {
            o.errors.iter().map(move |e| {
                if outcomes.len() > 1 {
                    format!("event {}: {e}", i + 1)
                } else {
                    e.to_string()
                }
            })
        })
        .collect();

    if let Some(want) = expect.triggered {
        let got = outcomes.iter().any(|o| o.triggered);
        if want != got {
            failures.push(format!("expected triggered: {want}, got {got}"));
        }
    }
    match &expect.errors {
        None if !errors.is_empty() => failures.push(format!(
            "unexpected errors:\n      {}",
            errors.join("\n      ")
        )),
        None => {}
        Some(want) => {
            for w in want {
                if !errors.iter().any(|e| e.contains(w.as_str())) {
                    failures.push(format!(
                        "expected an error containing {w:?}; errors were: {errors:?}"
                    ));
                }
            }
            if want.is_empty() && !errors.is_empty() {
                failures.push(format!("expected no errors, got: {errors:?}"));
            }
        }
    }
    if let Some(n) = expect.action_count {
        if actions.len() != n {
            failures.push(format!(
                "expected {n} actions, got {}:{}",
                actions.len(),
                list_actions(&actions)
            ));
        }
    }
    if let Some(want) = &expect.actions {
        let mut from = 0;
        for (i, w) in want.iter().enumerate() {
            let found = actions[from..].iter().position(|a| {
                let a = serde_json::to_value(a).unwrap_or(Value::Null);
                mismatch(w, &a, "").is_none()
            });
            match found {
                Some(at) => from += at + 1,
                None => {
                    let closest = actions[from..].iter().find_map(|a| {
                        let a = serde_json::to_value(a).unwrap_or(Value::Null);
                        let same_target = ["connector", "op", "object"]
                            .iter()
                            .all(|k| w.get(k).is_none_or(|v| Some(v) == a.get(k)));
                        if same_target {
                            mismatch(w, &a, "")
                        } else {
                            None
                        }
                    });
                    let why = closest
                        .map(|m| format!("\n      closest: {m}"))
                        .unwrap_or_default();
                    failures.push(format!(
                        "expected action {} {} not found{why}\n      actions:{}",
                        i + 1,
                        compact(w),
                        list_actions(&actions)
                    ));
                    break;
                }
            }
        }
    }
    if let Some(want) = &expect.record {
        let got = outcomes.last().map(|o| &o.record).unwrap_or(&Value::Null);
        if let Some(m) = mismatch(want, got, "record") {
            failures.push(m);
        }
    }
    failures
}

fn list_actions(actions: &[&Action]) -> String {
    if actions.is_empty() {
        return " none".into();
    }
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "\n        {}. {} {}{} {}",
                i + 1,
                a.connector,
                a.op,
                a.object
                    .as_ref()
                    .map(|o| format!(" {o}"))
                    .unwrap_or_default(),
                compact(&a.payload)
            )
        })
        .collect()
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// Where `actual` fails to contain `expected`, as `path: expected X, got Y`. Objects match as
/// subsets, arrays element by element with equal length, numbers by value (`612.5` = `612.50`).
pub fn mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    let at = if path.is_empty() {
        "the action".to_string()
    } else {
        path.to_string()
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match a.get(k) {
                Some(av) => mismatch(ev, av, &sub),
                None => Some(format!("{sub}: missing (expected {})", compact(ev))),
            }
        }),
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{at}: expected {} items, got {}", e.len(), a.len()));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (ev, av))| mismatch(ev, av, &format!("{path}[{i}]")))
        }
        (Value::Number(e), Value::Number(a)) => {
            let same = match (
                e.to_string().parse::<rust_decimal::Decimal>(),
                a.to_string().parse::<rust_decimal::Decimal>(),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => e.to_string() == a.to_string(),
            };
            (!same).then(|| format!("{at}: expected {e}, got {a}"))
        }
        (e, a) if e == a => None,
        (e, a) => Some(format!("{at}: expected {}, got {}", compact(e), compact(a))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_subsets_and_numbers_by_value() {
        let actual: Value =
            serde_json::from_str(r#"{"connector": "sf", "payload": {"Amount": 612.50, "Name": "x", "Items": [{"a": 1, "b": 2}]}}"#)
                .unwrap();
        let cases = [
            (json!({"connector": "sf"}), None),
            (json!({"payload": {"Amount": 612.5}}), None),
            (json!({"payload": {"Items": [{"a": 1}]}}), None),
            (
                json!({"payload": {"Amount": 612}}),
                Some("payload.Amount: expected 612, got 612.50"),
            ),
            (
                json!({"payload": {"Items": []}}),
                Some("payload.Items: expected 0 items, got 1"),
            ),
            (
                json!({"payload": {"Missing": 1}}),
                Some("payload.Missing: missing (expected 1)"),
            ),
        ];
        for (expected, want) in cases {
            assert_eq!(
                mismatch(&expected, &actual, "").as_deref(),
                want,
                "{expected}"
            );
        }
    }
}
