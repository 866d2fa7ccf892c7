//! The engine's log through the real binary: `--log-format json` writes one JSON object per
//! line, with one `Event finished` line per event (pipeline, event id, outcome, ms, actions),
//! and `--log-level` turns that line down on its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::engine::{eventually, project, Engine};

const FILES: &[(&str, &str)] = &[
    ("crossdock.yaml", "connectors:\n  console: { kind: stdout }\n"),
    (
        "pipelines/echo.yaml",
        "pipeline: echo\nsource: { webhook: { path: /hooks/echo } }\ntrigger: { when: 'record.send' }\nsteps:\n  - send: { to: console, op: print }\n",
    ),
];

fn finished_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "Event finished")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_has_one_line_per_finished_event() {
    let dir = project(FILES);
    let engine = Engine::start_args(dir.path(), &["--log-format", "json"]);
    assert_eq!(engine.post("/hooks/echo", r#"{"send": true}"#).await.0, 202);
    assert_eq!(
        engine.post("/hooks/echo", r#"{"send": false}"#).await.0,
        202
    );
    let lines = eventually("two finished events", Duration::from_secs(20), || {
        let lines = finished_lines(&engine.log());
        async move { (lines.len() == 2).then_some(lines) }
    })
    .await;
    let mut outcomes: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            let f = &l["fields"];
            assert_eq!(l["level"], "INFO");
            assert_eq!(l["target"], "crossdock::event");
            assert_eq!(f["pipeline"], "echo");
            assert!(
                f["event_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("evt_")),
                "{l}"
            );
            assert!(f["ms"].as_u64().is_some(), "{l}");
            (
                f["outcome"].as_str().unwrap().to_string(),
                f["actions"].as_u64().unwrap(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![("processed".to_string(), 1), ("skipped".to_string(), 0)]
    );
    // Every line written through the log is a JSON object with a time and a level (the other
    // lines are the start-up banner and diagnostics, printed outside the log).
    let logged: Vec<Value> = engine
        .log()
        .lines()
        .filter(|l| l.starts_with("{\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(logged.len() >= 2);
    assert!(logged
        .iter()
        .all(|l| l["timestamp"].is_string() && l["level"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_line_can_be_turned_down_alone() {
    let dir = project(FILES);
    let engine = Engine::start_args(
        dir.path(),
        &[
            "--log-format",
            "json",
            "--log-level",
            "info,crossdock::event=warn",
        ],
    );
    let (status, answer) = engine.post("/hooks/echo", r#"{"send": true}"#).await;
    assert_eq!(status, 202);
    let id = answer["event_id"].as_str().unwrap().to_string();
    // The line is written before the trail: once the trail says processed, it would be there.
    eventually("the event finished", Duration::from_secs(20), || async {
        let (_, trail) = engine.admin(&format!("/api/events/{id}")).await;
        (trail.to_string().contains("processed")).then_some(())
    })
    .await;
    assert!(finished_lines(&engine.log()).is_empty(), "{}", engine.log());
}
