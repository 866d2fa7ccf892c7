//! The console playground's part of the admin API (under `/api`, behind its token check):
//! the project's editable files (`pipelines/`, `mappings/`, `scripts/`), read and saved; a dry
//! run of a pipeline over the project as it would be with one file's text edited; and the
//! fixtures under the project's `tests/fixtures/` as payloads.
//!
//! Paths from a request are names, never joined blindly: a file is `FOLDER/NAME.EXT` with one
//! of the three folders and no other component, a fixture a path of plain components inside
//! `tests/fixtures`, and neither may be reached through a symbolic link. A save compiles the
//! project with the new text first (what `check` runs) and refuses it on any error; it is off
//! unless `server.console_save: true`. This module must not run events for real: its dry runs
//! write state to an overlay and answer fetches from what the request gives.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::config::diag::Diagnostics;
use crate::config::Edit;
use crate::flow::input::Body;
use crate::flow::{Flow, Project};
use crate::runtime::Runtime;
use crate::state::overlay::Overlay;
use crate::state::StateStore;

type Rt = State<Arc<Runtime>>;

/// The folders the console may read and write, with the extensions their files have.
const EDITABLE: &[(&str, &[&str])] = &[
    ("pipelines", &["yaml", "yml"]),
    ("mappings", &["yaml", "yml"]),
    ("scripts", &["rhai"]),
];
/// Files listed at most, per listing: a folder of generated files must not make the answer
/// as large as the project.
const MAX_LISTED: usize = 1000;
/// Folders a fixture may be nested in, at most.
const MAX_FIXTURE_DEPTH: usize = 4;
/// Largest fixture returned as a payload.
const MAX_FIXTURE_BYTES: u64 = 1024 * 1024;
pub(super) const FIXTURES: &str = "tests/fixtures";
/// Where `crossdock test` reads its cases (`testing::TESTS_DIR`, a module `server` must not use).
const TEST_CASES: &str = "tests/pipelines";

pub(super) fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/files", get(list_files))
        .route("/files/{*path}", get(read_file).put(save_file))
        .route("/fixtures", get(list_fixtures))
        .route("/fixtures/{*path}", get(read_fixture))
        .route("/playground/{pipeline}", post(playground))
        .route("/test-cases/{pipeline}", post(save_test_case))
}

/// `FOLDER/NAME.EXT` of [`EDITABLE`], else why not.
fn editable(path: &str) -> Result<PathBuf, ApiError> {
    let refuse = || {
        ApiError::BadRequest(format!(
            "`{path}` is not a file the console edits: pipelines/NAME.yaml, mappings/NAME.yaml \
             or scripts/NAME.rhai"
        ))
    };
    let (folder, name) = path.split_once('/').ok_or_else(refuse)?;
    let (_, exts) = EDITABLE
        .iter()
        .find(|(f, _)| *f == folder)
        .ok_or_else(refuse)?;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e));
    if plain {
        Ok(PathBuf::from(folder).join(name))
    } else {
        Err(refuse())
    }
}

/// A file there that is not a regular file (a link, a folder) is neither read nor replaced.
fn not_a_link(full: &Path, shown: &str) -> Result<bool, ApiError> {
    match std::fs::symlink_metadata(full) {
        Ok(m) if m.file_type().is_file() => Ok(true),
        Ok(_) => Err(ApiError::BadRequest(format!(
            "`{shown}` is not a plain file; the console leaves it alone"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ApiError::Internal(format!("cannot read `{shown}`: {e}"))),
    }
}

async fn list_files(State(rt): Rt) -> Result<Json<Value>, ApiError> {
    let root = rt.root().to_path_buf();
    let mut files = Vec::new();
    for (folder, exts) in EDITABLE {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok).take(MAX_LISTED) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let ext_ok = Path::new(&name)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e));
            if is_file && ext_ok && !name.starts_with('.') {
                files.push(format!("{folder}/{name}"));
            }
        }
    }
    files.sort();
    files.truncate(MAX_LISTED);
    Ok(Json(json!({
        "files": files,
        "save": rt.live().project.config.server.console_save,
    })))
}

async fn read_file(State(rt): Rt, UrlPath(path): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    let rel = editable(&path)?;
    let full = rt.root().join(&rel);
    if !not_a_link(&full, &path)? {
        return Err(ApiError::NotFound(format!("no file `{path}`")));
    }
    let text = std::fs::read_to_string(&full)
        .map_err(|e| ApiError::Internal(format!("cannot read `{path}`: {e}")))?;
    Ok(Json(json!({ "path": path, "text": text })))
}

/// Each error (and warning) as the page marks it.
fn diagnostics_json(diags: &Diagnostics) -> Vec<Value> {
    diags
        .iter()
        .map(|d| {
            json!({
                "severity": if d.is_error() { "error" } else { "warning" },
                "file": d.file.to_string_lossy().replace('\\', "/"),
                "line": d.pos.line,
                "col": d.pos.col,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect()
}

/// The project compiled with `text` in place of `rel`, off the async threads.
async fn compile_edited(
    rt: &Arc<Runtime>,
    rel: PathBuf,
    text: String,
) -> Result<Result<Project, Diagnostics>, ApiError> {
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || {
        rt.compile_edited(Edit {
            path: &rel,
            text: &text,
        })
        .map(|(project, _)| project)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the compile failed: {e}")))
}

/// Refuses a write from the console unless crossdock.yaml's `server.console_save` allows it.
fn saving_allowed(rt: &Arc<Runtime>) -> Result<(), ApiError> {
    if rt.live().project.config.server.console_save {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "saving from the console is off: set `server.console_save: true` in crossdock.yaml to \
         allow it"
            .into(),
    ))
}

/// Writes the file when the project compiles with it, then reloads so the engine runs it at
/// once (the file watcher would too, after its debounce).
async fn save_file(
    State(rt): Rt,
    UrlPath(path): UrlPath<String>,
    text: String,
) -> Result<Response, ApiError> {
    saving_allowed(&rt)?;
    let rel = editable(&path)?;
    let full = rt.root().join(&rel);
    not_a_link(&full, &path)?;
    if let Err(diags) = compile_edited(&rt, rel.clone(), text.clone()).await? {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": format!("`{path}` was not saved: the project does not pass check with it"),
                "diagnostics": diagnostics_json(&diags),
            })),
        )
            .into_response());
    }
    // Written beside and renamed over, so the watcher never reloads half a file; the temporary
    // name starts with a dot and has no project extension, so no listing picks it up.
    let tmp = full.with_file_name(format!(
        ".{}.console-save",
        rel.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, &full))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ApiError::Internal(format!("cannot write `{path}`: {e}"))
        })?;
    let answer = match rt.reload("console save").await {
        Ok(version) => json!({ "path": path, "status": "live", "version": version }),
        Err(e) => json!({
            "path": path,
            "status": "saved, reload refused",
            "version": rt.live().project.version,
            "error": e,
        }),
    };
    Ok(Json(answer).into_response())
}

/// Fixture files (JSON) under the project's `tests/fixtures`, as paths relative to it.
async fn list_fixtures(State(rt): Rt) -> Result<Json<Value>, ApiError> {
    let base = rt.root().join(FIXTURES);
    let mut found = Vec::new();
    let mut folders = vec![(base.clone(), 0usize)];
    while let Some((dir, depth)) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if found.len() >= MAX_LISTED {
                break;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() && depth + 1 < MAX_FIXTURE_DEPTH {
                folders.push((path, depth + 1));
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
                if let Ok(rel) = path.strip_prefix(&base) {
                    found.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    found.sort();
    Ok(Json(json!({ "fixtures": found })))
}

/// One fixture's text. The path has plain components only, and what it names must lie inside
/// the fixtures folder once links are resolved.
async fn read_fixture(
    State(rt): Rt,
    UrlPath(path): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let refuse = || {
        ApiError::BadRequest(format!(
            "`{path}` is not a fixture: a path inside {FIXTURES}, without `..`"
        ))
    };
    let rel = Path::new(&path);
    if path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse());
    }
    let base = rt.root().join(FIXTURES);
    let not_found = || ApiError::NotFound(format!("no fixture `{path}`"));
    let real_base = base.canonicalize().map_err(|_| not_found())?;
    let real = base.join(rel).canonicalize().map_err(|_| not_found())?;
    if !real.starts_with(&real_base) {
        return Err(refuse());
    }
    let meta = std::fs::metadata(&real).map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    if meta.len() > MAX_FIXTURE_BYTES {
        return Err(ApiError::TooLarge(format!(
            "`{path}` is larger than a payload the playground takes (1 MiB)"
        )));
    }
    let text = std::fs::read_to_string(&real)
        .map_err(|e| ApiError::Internal(format!("cannot read `{path}`: {e}")))?;
    Ok(Json(json!({ "path": path, "text": text })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaygroundRun {
    /// The event body.
    payload: Value,
    /// A file of the project and its text as edited; without them, the live version runs.
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// Answers for the pipeline's `fetch` steps, by `connector.op`.
    #[serde(default)]
    answers: BTreeMap<String, Value>,
}

/// A dry run of the pipeline over the project as the edit would make it: `{"diagnostics"}`
/// with every problem when it does not compile, else `{"diagnostics", "result"}`.
async fn playground(
    State(rt): Rt,
    UrlPath(name): UrlPath<String>,
    Json(run): Json<PlaygroundRun>,
) -> Result<Json<Value>, ApiError> {
    let project = match (run.file, run.text) {
        (Some(file), Some(text)) => {
            let rel = editable(&file)?;
            match compile_edited(&rt, rel, text).await? {
                Ok(project) => Arc::new(project),
                Err(diags) => {
                    return Ok(Json(json!({ "diagnostics": diagnostics_json(&diags) })));
                }
            }
        }
        _ => rt.live().project.clone(),
    };
    let Some(flow) = project.pipeline(&name).cloned() else {
        return Err(ApiError::NotFound(format!("no pipeline `{name}`")));
    };
    let body = serde_json::to_vec(&run.payload).map_err(|e| ApiError::Internal(e.to_string()))?;
    let result = dry_run(
        &rt,
        project,
        flow,
        body,
        None,
        run.answers,
        "paste the fetch's answer in the playground, or pick an event whose trail has it",
    )
    .await?;
    Ok(Json(json!({ "diagnostics": [], "result": result })))
}

/// Runs `body` through `flow` with the engine's state under an overlay (its changes reported,
/// none written) and fetches answered from `answers`; the outcome as JSON, secrets masked.
pub(super) async fn dry_run(
    rt: &Arc<Runtime>,
    project: Arc<Project>,
    flow: Arc<Flow>,
    body: Vec<u8>,
    received_at: Option<String>,
    answers: BTreeMap<String, Value>,
    hint: &'static str,
) -> Result<Value, ApiError> {
    let overlay = Arc::new(Overlay::new(rt.state().clone()));
    let state: Arc<dyn StateStore> = overlay.clone();
    let spec = crate::flow::event::EventSpec {
        id: None,
        received_at,
        headers: BTreeMap::new(),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let event = crate::flow::event::event_info(&flow.name, Some(&spec), 1, "dry-run");
        let mut outcome = flow.run_body(
            &project.rules,
            event,
            Ok(Body::Json(&body)),
            "body",
            &state,
            &crate::flow::GivenAnswers { answers, hint },
            crate::flow::RunOptions::keeping(crate::flow::Keep::Record),
        );
        outcome.state_changes = overlay.changes();
        let text = outcome.to_json().unwrap_or_default();
        project.redactor.redact(&text)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the dry run failed: {e}")))?;
    serde_json::from_str(&outcome).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Longest name a test case made here may have.
const MAX_CASE_NAME: usize = 80;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCase {
    name: String,
    payload: Value,
    #[serde(default)]
    answers: BTreeMap<String, Value>,
}

/// `name` as a file name: letters and digits kept, everything else one `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// "Save as test case": runs the payload on the live version, at a time written into the case,
/// and writes `tests/pipelines/{pipeline}-{name}.yaml` expecting what it did (trigger, actions
/// in order). Never replaces a file. The case runs against an empty state, as `crossdock test`
/// does, while this run read the engine's: a pipeline that reads state needs the case's
/// `state:` filled in by hand.
async fn save_test_case(
    State(rt): Rt,
    UrlPath(name): UrlPath<String>,
    Json(case): Json<NewCase>,
) -> Result<Response, ApiError> {
    saving_allowed(&rt)?;
    let live = rt.live();
    let Some(flow) = live.project.pipeline(&name).cloned() else {
        return Err(ApiError::NotFound(format!("no pipeline `{name}`")));
    };
    let (pipeline_slug, case_slug) = (slug(&name), slug(&case.name));
    if case_slug.is_empty() || case.name.chars().count() > MAX_CASE_NAME {
        return Err(ApiError::BadRequest(format!(
            "a test case needs a name of 1 to {MAX_CASE_NAME} characters, with letters or digits"
        )));
    }
    let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::to_vec(&case.payload).map_err(|e| ApiError::Internal(e.to_string()))?;
    let result = dry_run(
        &rt,
        live.project.clone(),
        flow,
        body,
        Some(received_at.clone()),
        case.answers.clone(),
        "paste the fetch's answer in the playground before saving the case",
    )
    .await?;
    let actions = result["actions"].as_array().cloned().unwrap_or_default();
    let mut entry = json!({
        "name": case.name,
        "input": case.payload,
        "event": { "received_at": received_at },
        "expect": {
            "triggered": result["triggered"].as_bool().unwrap_or(false),
            "action_count": actions.len(),
            "actions": actions,
        },
    });
    if !case.answers.is_empty() {
        entry["fetch"] = json!(case.answers);
    }
    // JSON is YAML: the case is written in its flow style, which `crossdock test` reads as is.
    let doc = json!({ "pipeline": name, "cases": [entry] });
    let text = format!(
        "# yaml-language-server: $schema=../../schemas/test.schema.json\n# Made by the console's \
         playground from a dry run on version {}.\n{}\n",
        crate::runtime::short(&live.project.version),
        serde_json::to_string_pretty(&doc).map_err(|e| ApiError::Internal(e.to_string()))?
    );
    let rel = format!("{TEST_CASES}/{pipeline_slug}-{case_slug}.yaml");
    let full = rt.root().join(&rel);
    if let Some(dir) = full.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ApiError::Internal(format!("cannot make {}: {e}", dir.display())))?;
    }
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&full)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => Ok(
            Json(json!({ "path": rel, "status": "written", "actions": actions.len() }))
                .into_response(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((
            StatusCode::CONFLICT,
            Json(json!({ "error": format!("`{rel}` exists already: pick another name") })),
        )
            .into_response()),
        Err(e) => Err(ApiError::Internal(format!("cannot write `{rel}`: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_files_of_the_three_folders_are_editable() {
        for ok in [
            "pipelines/a.yaml",
            "mappings/cart.yml",
            "scripts/decide.rhai",
        ] {
            assert!(editable(ok).is_ok(), "{ok}");
        }
        for bad in [
            "crossdock.yaml",
            "pipelines/../crossdock.yaml",
            "pipelines/..",
            "pipelines/.hidden.yaml",
            "pipelines/sub/a.yaml",
            "scripts/a.yaml",
            "mappings/a.rhai",
            "tests/fixtures/a.json",
            "/etc/passwd",
            "pipelines/a.yaml\0",
            "pipelines\\..\\x.yaml",
        ] {
            assert!(editable(bad).is_err(), "{bad}");
        }
    }
}
