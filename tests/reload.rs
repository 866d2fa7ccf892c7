//! Hot reload against the real binary under a steady stream of webhooks: good and broken edits
//! to a mapping, a script and a pipeline; pipelines added and removed while they get traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::engine::{eventually, json_lines, project, write_files, Engine};

const PROJECT: &str = r#"
server: { reload_debounce: 50ms }
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

fn pipeline(extra_step: &str) -> String {
    format!(
        r#"
pipeline: live
source:
  webhook: {{ path: /hooks/live }}
steps:
  - map: m
  - script: s
{extra_step}
  - send: {{ to: out, op: append }}
"#
    )
}

fn mapping(tag: &str) -> String {
    format!(
        r#"
mapping: m
fields:
  n: {{ from: $.n, type: integer }}
  tag: {{ template: "{tag}" }}
"#
    )
}

fn script(mark: &str) -> String {
    format!("record.s = \"{mark}\";\nrecord\n")
}

/// One accepted request: when it was answered, and its event id.
struct Sent {
    at: Instant,
    id: String,
    n: i64,
}

/// What the traffic saw: accepted requests, failures, and the tasks sending them.
type Traffic = (
    Arc<Mutex<Vec<Sent>>>,
    Arc<Mutex<Vec<String>>>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Posts to /hooks/live from 4 tasks until told to stop; every answer must be 202.
fn traffic(engine: &Engine, stop: Arc<AtomicBool>) -> Traffic {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (sent, failures, stop) = (sent.clone(), failures.clone(), stop.clone());
        let url = engine.url("/hooks/live");
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = t;
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .post(&url)
                    .body(format!(r#"{{"n":{n}}}"#))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let v: Value = r.json().await.unwrap();
                        sent.lock().unwrap().push(Sent {
                            at: Instant::now(),
                            id: v["event_id"].as_str().unwrap().to_string(),
                            n: n as i64,
                        });
                    }
                    Ok(r) => {
                        let line = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
                        failures.lock().unwrap().push(line);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                n += 4;
                // Up to about 200 requests a second per task.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    (sent, failures, tasks)
}

async fn version(engine: &Engine) -> (String, Value) {
    let (_, p) = engine.admin("/api/pipelines").await;
    (p["version"].as_str().unwrap().to_string(), p)
}

/// Makes `change` to the project's files, then waits until the engine serves a new version;
/// returns when it did.
async fn live_after(engine: &Engine, what: &str, change: impl FnOnce()) -> Instant {
    let (before, _) = version(engine).await;
    change();
    eventually(what, Duration::from_secs(10), || async {
        let (now, p) = version(engine).await;
        (now != before && p["last_reload_error"].is_null()).then(Instant::now)
    })
    .await
}

/// Writes `files`, then waits until the engine serves a new version; returns when it did.
async fn good_edit(engine: &Engine, dir: &Path, files: &[(&str, &str)]) -> Instant {
    live_after(engine, "the edit to go live", || write_files(dir, files)).await
}

/// Writes a broken `files`, waits until the refusal is reported; the version must not change.
async fn broken_edit(engine: &Engine, dir: &Path, files: &[(&str, &str)], expect: &str) {
    let (before, _) = version(engine).await;
    write_files(dir, files);
    let p = eventually("the refusal", Duration::from_secs(10), || async {
        let (_, p) = version(engine).await;
        (!p["last_reload_error"].is_null()).then_some(p)
    })
    .await;
    assert_eq!(p["version"], before.as_str(), "a broken edit went live");
    let message = p["last_reload_error"]["message"].as_str().unwrap();
    assert!(message.contains(expect), "{message}");
    // The API may show the refusal a moment before the engine's log line is read.
    eventually(
        "the refusal in the log",
        Duration::from_secs(10),
        || async { engine.log().contains(expect).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn edits_under_traffic_lose_nothing_and_never_run_a_broken_version() {
    let m1 = mapping("m1");
    let s1 = script("s1");
    let p1 = pipeline("");
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/live.yaml", &p1),
        ("mappings/m.yaml", &m1),
        ("scripts/s.rhai", &s1),
    ]);
    let engine = Engine::start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failures, tasks) = traffic(&engine, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Each good edit is live from the returned instant: events accepted after it must show it.
    let mut live_from: Vec<(Instant, &str, &str)> = Vec::new();
    let m2 = mapping("m2");
    live_from.push((
        good_edit(&engine, dir.path(), &[("mappings/m.yaml", &m2)]).await,
        "tag",
        "m2",
    ));
    let broken_mapping = mapping("BROKEN").replace("$.n", "$.[n");
    broken_edit(
        &engine,
        dir.path(),
        &[("mappings/m.yaml", &broken_mapping)],
        "mappings/m.yaml",
    )
    .await;
    let m3 = mapping("m3");
    live_from.push((
        good_edit(&engine, dir.path(), &[("mappings/m.yaml", &m3)]).await,
        "tag",
        "m3",
    ));
    let s2 = script("s2");
    live_from.push((
        good_edit(&engine, dir.path(), &[("scripts/s.rhai", &s2)]).await,
        "s",
        "s2",
    ));
    broken_edit(
        &engine,
        dir.path(),
        &[("scripts/s.rhai", "record.s = \"BROKEN\";\nlet = ;\n")],
        "scripts/s.rhai",
    )
    .await;
    let s3 = script("s3");
    live_from.push((
        good_edit(&engine, dir.path(), &[("scripts/s.rhai", &s3)]).await,
        "s",
        "s3",
    ));
    let p2 = pipeline("  - set: { p: p2 }");
    live_from.push((
        good_edit(&engine, dir.path(), &[("pipelines/live.yaml", &p2)]).await,
        "p",
        "p2",
    ));
    let broken_pipeline = pipeline("  - set: { p: BROKEN }\n  - sned: { to: out }");
    broken_edit(
        &engine,
        dir.path(),
        &[("pipelines/live.yaml", &broken_pipeline)],
        "pipelines/live.yaml",
    )
    .await;
    // An editor's save: a temporary file renamed over the original.
    let p3 = pipeline("  - set: { p: p3 }");
    let at = live_after(&engine, "the renamed file to go live", || {
        std::fs::write(dir.path().join("pipelines/.live.yaml.tmp"), &p3).unwrap();
        std::fs::rename(
            dir.path().join("pipelines/.live.yaml.tmp"),
            dir.path().join("pipelines/live.yaml"),
        )
        .unwrap();
    })
    .await;
    live_from.push((at, "p", "p3"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    // Traffic ran through the edits (how much depends on the machine's load, not checked).
    assert!(sent.len() > 20, "only {} requests", sent.len());

    let out = dir.path().join("out/actions.jsonl");
    let lines = eventually("every accepted event", Duration::from_secs(30), || async {
        let lines = json_lines(&out);
        (lines.len() >= sent.len()).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), sent.len(), "an event ran twice");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("BROKEN"), "an event ran a broken version");

    // `n` links a request to its output line.
    let by_n: BTreeMap<i64, &Value> = lines
        .iter()
        .map(|l| (l["payload"]["n"].as_i64().unwrap(), &l["payload"]))
        .collect();
    assert_eq!(by_n.len(), sent.len(), "an event is missing or ran twice");
    let mut checked = 0;
    for s in &sent {
        let payload = by_n[&s.n];
        for (from, field, value) in &live_from {
            if s.at > *from {
                // Accepted after this edit went live, so it started on it or a later version;
                // the edits only ever move each field forward (m2 < m3, s2 < s3, p2 < p3).
                let got = payload[*field].as_str().unwrap_or("");
                assert!(
                    got >= *value,
                    "event {} ran without `{field}: {value}`: {payload}",
                    s.id
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} checks");
    let (_, trail) = engine.admin(&format!("/api/events/{}", sent[0].id)).await;
    assert_eq!(trail["status"], "processed", "{trail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_added_and_removed_under_traffic() {
    // The added pipeline delivers to a slow upstream one event at a time, so that most of its
    // events are still queued when its file is removed.
    let upstream = support::upstream::Upstream::start().await;
    upstream.set_delay(Duration::from_millis(100));
    let config = format!(
        r#"{PROJECT}
  slow:
    kind: http
    base_url: "{}"
    operations:
      post: {{ method: POST, path: /events }}
"#,
        upstream.url
    );
    let dir = project(&[
        ("crossdock.yaml", &config),
        ("pipelines/live.yaml", &pipeline("")),
        ("mappings/m.yaml", &mapping("m1")),
        ("scripts/s.rhai", &script("s1")),
    ]);
    let engine = Engine::start(dir.path());
    // The other pipeline gets traffic the whole time; none of it may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failures, tasks) = traffic(&engine, stop.clone());
    let extra = r#"
pipeline: extra
source:
  webhook: { path: /hooks/extra }
concurrency: 1
steps:
  - set: { extra: true }
  - send: { to: slow, op: post }
"#;
    let (status, _) = engine.post("/hooks/extra", r#"{"n":-1}"#).await;
    assert_eq!(status, 404);
    good_edit(&engine, dir.path(), &[("pipelines/extra.yaml", extra)]).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let (status, a) = engine
            .post("/hooks/extra", &format!(r#"{{"n":{}}}"#, 1000 + n))
            .await;
        assert_eq!(status, 202);
        ids.push(a["event_id"].as_str().unwrap().to_string());
    }
    live_after(&engine, "the removal to go live", || {
        std::fs::remove_file(dir.path().join("pipelines/extra.yaml")).unwrap();
    })
    .await;
    let (status, a) = engine.post("/hooks/extra", r#"{"n":-2}"#).await;
    assert_eq!(status, 404, "{a}");

    // Every accepted event of the removed pipeline was delivered, or is a dead letter that
    // says why; none is lost and none is both.
    let dead: Vec<Value> = eventually(
        "every extra event accounted for",
        Duration::from_secs(20),
        || async {
            let delivered = upstream.received().len();
            let (_, dlq) = engine.admin("/api/dlq?limit=1000").await;
            let dead = dlq["items"].as_array().cloned().unwrap_or_default();
            (delivered + dead.len() == ids.len()).then_some(dead)
        },
    )
    .await;
    assert!(
        !dead.is_empty(),
        "no event was still queued at the removal: the dead-letter path was not exercised"
    );
    for item in &dead {
        let reason = item["reason"].as_str().unwrap();
        assert!(
            reason.contains("pipeline `extra` is not in the running version"),
            "{reason}"
        );
        assert!(
            ids.contains(&item["event_id"].as_str().unwrap_or("").to_string()),
            "{item}"
        );
    }

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let sent = sent.lock().unwrap().len();
    let out = dir.path().join("out/actions.jsonl");
    eventually(
        "the other pipeline's events",
        Duration::from_secs(20),
        || async { (json_lines(&out).len() == sent).then_some(()) },
    )
    .await;
}

/// Peak resident memory of a process in KiB (`VmHWM`), where the OS says (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn an_alias_bomb_is_refused_and_the_running_version_keeps_serving() {
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/live.yaml", &pipeline("")),
        ("mappings/m.yaml", &mapping("m1")),
        ("scripts/s.rhai", &script("s1")),
    ]);
    let engine = Engine::start(dir.path());
    let (status, _) = engine.post("/hooks/live", r#"{"n":1}"#).await;
    assert_eq!(status, 202);

    // Seven levels of ten aliases each, a few hundred bytes: 10^7 nodes (gigabytes) if built.
    let mut bomb = pipeline("");
    bomb.push_str("x0: &x0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let alias = format!("*x{}", i - 1);
        bomb.push_str(&format!("x{i}: &x{i} [{}]\n", vec![alias; 10].join(", ")));
    }
    assert!(bomb.len() < 1024, "{}", bomb.len());
    // The alias that takes the copies past the limit is on the `x3` line.
    let line = bomb.lines().position(|l| l.starts_with("x3:")).unwrap() + 1;
    let at = format!("pipelines/live.yaml:{line}:");
    broken_edit(&engine, dir.path(), &[("pipelines/live.yaml", &bomb)], &at).await;
    let log = engine.log();
    assert!(
        log.contains(&format!("{at}45: this alias makes the file too large")),
        "{log}"
    );

    // Still the old version: /health answers and a webhook runs the old pipeline.
    let (status, health) = engine.admin("/health").await;
    assert_eq!(status, 200, "{health}");
    let (status, _) = engine.post("/hooks/live", r#"{"n":2}"#).await;
    assert_eq!(status, 202);
    let out = dir.path().join("out/actions.jsonl");
    let lines = eventually("both events", Duration::from_secs(10), || async {
        let lines = json_lines(&out);
        (lines.len() == 2).then_some(lines)
    })
    .await;
    assert_eq!(lines[1]["payload"]["tag"], "m1", "{}", lines[1]);
    // Refused without being built: the engine stays far from the gigabytes the aliases ask for.
    if let Some(kib) = peak_rss_kib(engine.pid()) {
        assert!(kib < 512 * 1024, "peak memory {kib} KiB");
    }
}

fn relay_project(upstream: &str, token: &str) -> String {
    format!(
        r#"
server: {{ reload_debounce: 50ms }}
connectors:
  up:
    kind: http
    base_url: "{upstream}"
    auth: {{ bearer: {{ token: "{token}" }} }}
    operations:
      post: {{ method: POST, path: /events }}
"#
    )
}

const RELAY: &str = r#"
pipeline: relay
source:
  webhook: { path: /hooks/relay }
steps:
  - send: { to: up, op: post }
"#;

#[tokio::test]
async fn a_credential_change_under_load_fails_nothing() {
    let upstream = support::upstream::Upstream::start().await;
    // Slow enough that calls are in flight when the reload lands.
    upstream.set_delay(Duration::from_millis(300));
    let old = relay_project(&upstream.url, "token-one");
    let dir = project(&[("crossdock.yaml", &old), ("pipelines/relay.yaml", RELAY)]);
    let engine = Engine::start(dir.path());
    // Webhooks keep coming while the credentials change: each answer, with when it came.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let poster = {
        let (stop, accepted, refused) = (stop.clone(), accepted.clone(), refused.clone());
        let url = engine.url("/hooks/relay");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0i64;
            while !stop.load(Ordering::SeqCst) {
                match client
                    .post(&url)
                    .body(format!(r#"{{"n":{n}}}"#))
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 202 => {
                        accepted.lock().unwrap().push((n, Instant::now()))
                    }
                    Ok(r) => refused.lock().unwrap().push(r.status().to_string()),
                    Err(e) => refused.lock().unwrap().push(e.to_string()),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually("calls under way", Duration::from_secs(10), || async {
        (upstream.hits() >= 10).then_some(())
    })
    .await;
    let new = relay_project(&upstream.url, "token-two");
    let swapped = good_edit(&engine, dir.path(), &[("crossdock.yaml", &new)]).await;
    // Calls had reached the upstream and not been answered when the new version went live.
    let in_flight = upstream.hits() - upstream.received().len();
    assert!(in_flight > 0, "no call was in flight at the swap");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    poster.await.unwrap();
    let refused = refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "refused webhooks: {refused:?}");
    let accepted = accepted.lock().unwrap().clone();
    let received = eventually("every event delivered", Duration::from_secs(60), || async {
        let r = upstream.received();
        (r.len() >= accepted.len()).then_some(r)
    })
    .await;
    assert_eq!(
        received.len(),
        accepted.len(),
        "an event was delivered twice"
    );
    let token =
        |r: &support::upstream::Received| r.headers["authorization"].to_str().unwrap().to_string();
    let by_n: BTreeMap<i64, String> = received
        .iter()
        .map(|r| (r.body["n"].as_i64().unwrap(), token(r)))
        .collect();
    // Events accepted after the swap started after it, so they went out with the new token;
    // the calls in flight at the swap finished with the old one and did not fail.
    for (n, at) in &accepted {
        if *at > swapped {
            assert_eq!(by_n[n], "Bearer token-two", "event {n}");
        }
    }
    assert!(by_n.values().any(|t| t == "Bearer token-one"));
    assert!(by_n.values().any(|t| t == "Bearer token-two"));
    let (_, health) = engine.admin("/health").await;
    assert_eq!(health["dead_letters"], 0);
}

#[tokio::test]
async fn an_unchanged_connector_keeps_its_token_across_reloads() {
    use support::mock_salesforce::{MockSalesforce, CLIENT_ID, CLIENT_SECRET};
    let sf = MockSalesforce::start().await;
    let project_file = format!(
        r#"
server: {{ reload_debounce: 50ms }}
connectors:
  sf:
    kind: salesforce
    instance_url: "{}"
    auth: {{ oauth2: {{ token_url: "{}", client_id: "{CLIENT_ID}", client_secret: "{CLIENT_SECRET}" }} }}
"#,
        sf.base_url(),
        sf.token_url()
    );
    let accounts = |name: &str| {
        format!(
            r#"
pipeline: accounts
source:
  webhook: {{ path: /hooks/accounts }}
steps:
  - set: {{ Description: "{name}" }}
  - send: {{ to: sf, op: create, object: Account }}
"#
        )
    };
    let first = accounts("v1");
    let dir = project(&[
        ("crossdock.yaml", &project_file),
        ("pipelines/accounts.yaml", &first),
    ]);
    let engine = Engine::start(dir.path());
    let (status, _) = engine.post("/hooks/accounts", r#"{"Name":"A"}"#).await;
    assert_eq!(status, 202);
    eventually("the first Account", Duration::from_secs(10), || async {
        (sf.records("Account").len() == 1).then_some(())
    })
    .await;
    // A pipeline edit: the connector's config is unchanged, so it is kept with its token.
    let second = accounts("v2");
    good_edit(&engine, dir.path(), &[("pipelines/accounts.yaml", &second)]).await;
    let (status, _) = engine.post("/hooks/accounts", r#"{"Name":"B"}"#).await;
    assert_eq!(status, 202);
    eventually("the second Account", Duration::from_secs(10), || async {
        (sf.records("Account").len() == 2).then_some(())
    })
    .await;
    assert_eq!(sf.find("Account", "Name", "B")[0]["Description"], "v2");
    assert_eq!(
        sf.token_requests(),
        1,
        "the kept connector asked for a new token"
    );
}

/// The `crossdock_reloads_total` lines of /metrics, as one string.
async fn reload_count(engine: &Engine) -> String {
    let text = engine.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("crossdock_reloads_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn one_save_gives_one_reload_and_an_idle_engine_does_not_reload() {
    let m1 = mapping("m1");
    let s1 = script("s1");
    let p1 = pipeline("");
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/live.yaml", &p1),
        ("mappings/m.yaml", &m1),
        ("scripts/s.rhai", &s1),
    ]);
    let engine = Engine::start(dir.path());
    let m2 = mapping("m2");
    good_edit(&engine, dir.path(), &[("mappings/m.yaml", &m2)]).await;
    // A reload reads every project file; those reads must not schedule another reload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = reload_count(&engine).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reload_count(&engine).await, before, "{}", engine.log());
    assert!(
        before
            .lines()
            .any(|l| l.contains(r#"result="ok""#) && l.ends_with("} 1")),
        "not exactly one reload: {before}"
    );
}

/// `crossdock run` from inside the project folder (the project is the relative `.`): saves are
/// seen, also in a folder replaced by another; a refused edit undone clears the failing gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_project_reloads_on_save_also_in_a_replaced_folder() {
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/live.yaml", &pipeline("")),
        ("mappings/m.yaml", &mapping("one")),
        ("scripts/s.rhai", &script("one")),
    ]);
    let engine = Engine::start_inside(dir.path());

    good_edit(&engine, dir.path(), &[("mappings/m.yaml", &mapping("two"))]).await;
    let (status, _) = engine.post("/hooks/live", r#"{"n":1}"#).await;
    assert_eq!(status, 202);
    let out = dir.path().join("out/actions.jsonl");
    let tag = eventually("the event", Duration::from_secs(10), || async {
        json_lines(&out)
            .into_iter()
            .find(|l| l["payload"]["n"] == 1)
            .map(|l| l["payload"]["tag"].clone())
    })
    .await;
    assert_eq!(tag, "two", "the event did not run the saved mapping");

    // A refused edit sets the gauge; putting the live content back clears it.
    let failing = |m: String| {
        m.lines()
            .find(|l| l.starts_with("crossdock_reload_failing"))
            .map(|l| l.trim_end().ends_with(" 1"))
    };
    broken_edit(
        &engine,
        dir.path(),
        &[("scripts/s.rhai", "record.s = ;\n")],
        "s.rhai",
    )
    .await;
    assert_eq!(failing(engine.metrics().await), Some(true));
    write_files(dir.path(), &[("scripts/s.rhai", &script("one"))]);
    eventually("the gauge to clear", Duration::from_secs(10), || async {
        (failing(engine.metrics().await) == Some(false)).then_some(())
    })
    .await;

    // An editor or a checkout that swaps the whole folder: the new one is watched.
    let fresh = dir.path().join("scripts.new");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::write(fresh.join("s.rhai"), script("swapped")).unwrap();
    live_after(&engine, "the swapped folder to load", || {
        std::fs::rename(dir.path().join("scripts"), dir.path().join("scripts.old")).unwrap();
        std::fs::rename(&fresh, dir.path().join("scripts")).unwrap();
    })
    .await;
    good_edit(&engine, dir.path(), &[("scripts/s.rhai", &script("three"))]).await;
    let _ = engine.terminate();
}

/// A connector that passes `check` but fails to build (a URL its kind parses only then) is a
/// refused reload, located at the connector in crossdock.yaml as `check`'s errors are.
#[tokio::test]
async fn a_connector_that_does_not_build_is_refused_at_its_line() {
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/live.yaml", &pipeline("")),
        ("mappings/m.yaml", &mapping("m1")),
        ("scripts/s.rhai", &script("s1")),
    ]);
    let engine = Engine::start(dir.path());
    let broken = format!(
        "{PROJECT}  sf:\n    kind: salesforce\n    instance_url: \"not a url\"\n    \
         auth: {{ oauth2: {{ token_url: \"http://127.0.0.1:9/token\", client_id: \"id\", \
         client_secret: \"secret\" }} }}\n"
    );
    let line = broken.lines().position(|l| l == "  sf:").unwrap() + 1;
    let at = format!("crossdock.yaml:{line}:3: connector `sf`: instance_url `not a url`");
    broken_edit(&engine, dir.path(), &[("crossdock.yaml", &broken)], &at).await;
    let (_, p) = version(&engine).await;
    let files = &p["last_reload_error"]["files"];
    let listed = files["crossdock.yaml"][0].as_str().unwrap_or_default();
    assert!(
        listed.starts_with(&format!("{line}:3: connector `sf`: instance_url")),
        "{files}"
    );
    let (status, _) = engine.post("/hooks/live", r#"{"n":1}"#).await;
    assert_eq!(status, 202);
}
