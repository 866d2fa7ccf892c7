//! Unit tests of the parent module.

use super::*;

const CONNECTORS: &str = "connectors:\n  out: { kind: stdout }\n";

fn no_env(_: &str) -> Option<String> {
    None
}

/// Loads a project written to a temp folder from `(path, text)` pairs.
fn load_files(files: &[(&str, &str)]) -> Result<(Project, Diagnostics), Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    load(dir.path(), &no_env, CompileOptions::default())
}

/// Each error as `file:line:col: message`.
fn errors(diags: &Diagnostics) -> Vec<String> {
    diags
        .errors()
        .map(|d| format!("{}:{}: {}", d.file.display(), d.pos, d.message))
        .collect()
}

#[test]
fn server_and_state_settings_are_checked_where_they_are_written() {
    let project = format!(
        "{CONNECTORS}server:\n  grace: soon\n  header_timeout: 0s\n  body_timeout: 10s\n  \
         max_connections: 0\n  max_body: 12 parsecs\nstate:\n  cache: 64MB\n  min_free: lots\n"
    );
    let Err(diags) = load_files(&[("crossdock.yaml", &project)]) else {
        panic!("a project with bad settings loaded");
    };
    let errors = errors(&diags);
    let expected = [
        "crossdock.yaml:4:10: `soon` is not a duration",
        "crossdock.yaml:5:19: `header_timeout` must be longer than 0",
        "crossdock.yaml:7:20: `max_connections` must be at least 1",
        "crossdock.yaml:8:13: ",
        "crossdock.yaml:11:13: ",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(got.starts_with(want), "{got} should start with {want}");
    }
}

/// A project of `pipeline` and the mapping `m`, which must load.
fn with_mapping(pipeline: &str, mapping: &str) -> crate::flow::Project {
    let files = [
        ("crossdock.yaml", CONNECTORS),
        ("pipelines/p.yaml", pipeline),
        ("mappings/m.yaml", mapping),
    ];
    let (project, _) = load_files(&files).unwrap_or_else(|d| panic!("{:#?}", errors(&d)));
    project
}

#[test]
fn a_flow_parses_only_what_its_steps_read_until_a_map_replaces_the_record() {
    let pipeline = "pipeline: p\nsource:\n  webhook: { path: /p }\nsteps:\n  \
         - set: { total: { from: $.order.total } }\n  \
         - send: { to: out, op: print, payload: $.customer }\n  \
         - map: m\n  - send: { to: out, op: print, payload: $.unread }\n";
    let mapping = "mapping: m\nfields:\n  id: { from: $.order.id }\n";
    let project = with_mapping(pipeline, mapping);
    let flow = project.pipeline("p").unwrap();
    let body =
        br#"{"order":{"id":1,"total":2,"note":"x"},"customer":{"n":1},"unread":3,"other":4}"#;
    let parsed = flow.need.parse(body).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({"order":{"id":1,"total":2},"customer":{"n":1}})
    );
}

#[test]
fn each_runs_per_element_collects_into_and_keeps_its_budget() {
    let pipeline = "pipeline: p\nsource:\n  webhook: { path: /p }\nsteps:\n  \
         - each:\n      in: $.order.lines\n      as: line\n      max: 3\n      \
         into: priced\n      steps:\n        \
         - set: { total: { expr: 'record.line.qty * record.line.price' } }\n        \
         - send: { to: out, op: print, payload: $.total }\n  \
         - send: { to: out, op: print, payload: $.priced }\n";
    let (project, _) = load_files(&[
        ("crossdock.yaml", CONNECTORS),
        ("pipelines/p.yaml", pipeline),
    ])
    .unwrap_or_else(|d| panic!("{:#?}", errors(&d)));
    let flow = project.pipeline("p").unwrap();
    let state: Arc<dyn crate::state::StateStore> = Arc::new(crate::state::MemoryStore::new());
    let run = |body: serde_json::Value| {
        let event = crate::rules::EventInfo {
            id: "e".into(),
            pipeline: "p".into(),
            headers: BTreeMap::new(),
            received_at: "2026-11-21T09:30:00Z".into(),
            body: Arc::new(body),
        };
        flow.run(
            &project.rules,
            &event,
            &state,
            &crate::flow::GivenAnswers::default(),
        )
    };
    let out = run(serde_json::json!({"order": {"id": 7, "lines": [
        {"qty": 2, "price": 3}, {"qty": 1, "price": 5}]}}));
    assert!(out.ok(), "{:?}", out.errors);
    let payloads: Vec<_> = out.actions.iter().map(|a| a.payload.clone()).collect();
    assert_eq!(payloads[..2], [serde_json::json!(6), serde_json::json!(5)]);
    let effects: Vec<&str> = out.actions.iter().map(|a| &*a.effect).collect();
    assert_eq!(
        effects,
        [
            "steps[0].each.steps[1]#0",
            "steps[0].each.steps[1]#1",
            "steps[1]"
        ]
    );
    // Each element's final record, without the array it came from, in order.
    assert_eq!(
        payloads[2],
        serde_json::json!([
            {"order": {"id": 7}, "line": {"qty": 2, "price": 3}, "total": 6},
            {"order": {"id": 7}, "line": {"qty": 1, "price": 5}, "total": 5}
        ])
    );
    // The array is back in the record.
    assert_eq!(out.record["order"]["lines"][1]["qty"], 1);

    let out = run(serde_json::json!({"order": {"lines": [1, 2, 3, 4]}}));
    assert_eq!(
        out.errors[0].message,
        "`$.order.lines` has 4 elements, more than `max: 3`"
    );
    let out = run(serde_json::json!({"order": {"lines": "x"}}));
    assert_eq!(
        out.errors[0].message,
        "`$.order.lines` is a string, not an array"
    );
    assert!(out.actions.is_empty());
}

#[test]
fn rhai_that_reads_the_whole_event_keeps_the_whole_body() {
    let pipeline = "pipeline: p\nsource:\n  webhook: { path: /p }\nsteps:\n  \
         - filter: 'event.body.len() > 0'\n  - map: m\n  \
         - send: { to: out, op: print }\n";
    let mapping = "mapping: m\nfields:\n  id: { from: $.order.id }\n";
    let project = with_mapping(pipeline, mapping);
    assert!(project.pipeline("p").unwrap().need.is_all());
}
