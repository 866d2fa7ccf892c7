//! Runaway scripts under `crossdock run`: the real binary, real HTTP, real sled. A script that
//! loops must not stall ingress or other pipelines, flood the log, or leave state behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::engine::{eventually, json_lines, project, Engine};

const PROJECT: &str = r#"
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

/// Every event loops until the Rhai limits stop it; 32 may run at once.
const SPIN: &str = r#"
pipeline: spin
concurrency: 32
source:
  webhook: { path: /hooks/spin }
steps:
  - script: spin
  - send: { to: out, op: append }
"#;

/// Even events spin until the operations limit, odd ones do heavy work until the deadline.
const SPIN_RHAI: &str = r#"
if record.n % 2 == 0 {
    loop { }
}
let a = [];
for i in 0..20000 { a.push(i); }
loop { a.reverse(); }
record
"#;

const GOOD: &str = r#"
pipeline: good
source:
  webhook: { path: /hooks/good }
steps:
  - set: { seen: true }
  - send: { to: out, op: append }
"#;

const CHATTY: &str = r#"
pipeline: chatty
source:
  webhook: { path: /hooks/chatty }
steps:
  - script: chatty
  - send: { to: out, op: append }
"#;

const CHATTY_RHAI: &str = r#"
for i in 0..1000 { print("chatty line " + i); }
record
"#;

const BULK: &str = r#"
pipeline: bulk
source:
  webhook: { path: /hooks/bulk }
steps:
  - script: bulk
  - send: { to: out, op: append }
"#;

/// Writes one key more than an event may (50 here: a debug build on a loaded machine cannot be
/// trusted to write the default 10,000 within a script's 250 ms), the first one a key of its own; with `swallow`, it catches
/// the error and carries on as if nothing happened.
const BULK_RHAI: &str = r#"
stock.set("first-" + record.n, 1);
if record.swallow {
    try { for i in 0..50 { stock.set("bulk-" + record.n + "-" + i, 1); } } catch (e) { }
} else {
    for i in 0..50 { stock.set("bulk-" + record.n + "-" + i, 1); }
}
record
"#;

/// Writes, then fails.
const HALF: &str = r#"
pipeline: half
source:
  webhook: { path: /hooks/half }
steps:
  - script: half
  - send: { to: out, op: append }
"#;

const HALF_RHAI: &str = r#"
kv.set("seen", record.n);
stock.set("half", 5);
throw "refused after writing";
"#;

/// Waits for the trail of `id` to leave `queued`, and returns it.
async fn finished(engine: &Engine, id: &str) -> Value {
    eventually(
        &format!("event {id} to finish"),
        Duration::from_secs(60),
        || async {
            let (status, t) = engine.admin(&format!("/api/events/{id}")).await;
            (status == 200 && t["status"] != "queued" && t["status"] != "retrying").then_some(t)
        },
    )
    .await
}

async fn post(engine: &Engine, path: &str, body: &str) -> String {
    let (status, answer) = engine.post(path, body).await;
    assert_eq!(status, 202, "{answer}");
    answer["event_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn runaway_scripts_stall_neither_health_nor_other_pipelines() {
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/spin.yaml", SPIN),
        ("pipelines/good.yaml", GOOD),
        ("scripts/spin.rhai", SPIN_RHAI),
    ]);
    let engine = Engine::start(dir.path());
    let client = Engine::client();
    // A first answer sets up the connection the probes reuse.
    client.get(engine.url("/health")).send().await.unwrap();

    let mut spinning = Vec::new();
    for n in 0..32 {
        spinning.push(post(&engine, "/hooks/spin", &format!(r#"{{"n":{n}}}"#)).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let asked = Instant::now();
        let r = client.get(engine.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        worst = worst.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eprintln!("worst /health of 10 with 32 runaway events in flight: {worst:?}");
    // Stuck behind the backlog, an answer would wait for it: 32 runaway events of 250 ms on the
    // flow threads take several seconds. The bound is far from both that and a loaded machine.
    assert!(worst < Duration::from_secs(1), "{worst:?}");

    // Another pipeline's event goes through while the runaway ones still queue.
    let posted = Instant::now();
    let good = post(&engine, "/hooks/good", r#"{"n":1000}"#).await;
    let trail = finished(&engine, &good).await;
    let took = posted.elapsed();
    eprintln!("a good event with 32 runaway events in flight: done in {took:?}");
    assert_eq!(trail["status"], "processed", "{trail}");
    let (_, last) = engine.admin(&format!("/api/events/{}", spinning[31])).await;
    assert_eq!(
        last["status"], "queued",
        "the good event did not wait for the runaway backlog: {last}"
    );

    // The runaway events fail, each on its own limits, and none of them sent anything.
    for id in &spinning {
        let trail = finished(&engine, id).await;
        assert_eq!(trail["status"], "dead_lettered", "{trail}");
        let error = trail["errors"][0]["message"].as_str().unwrap();
        assert!(
            error.contains("too many operations") || error.contains("exceeded 250 ms"),
            "{error}"
        );
    }
    let out = json_lines(&dir.path().join("out/actions.jsonl"));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["payload"]["n"], 1000);
}

#[tokio::test]
async fn a_print_loop_logs_at_most_the_cap() {
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/chatty.yaml", CHATTY),
        ("scripts/chatty.rhai", CHATTY_RHAI),
    ]);
    let engine = Engine::start(dir.path());
    let id = post(&engine, "/hooks/chatty", r#"{"n":1}"#).await;
    let trail = finished(&engine, &id).await;
    assert_eq!(trail["status"], "processed", "{trail}");
    let log = eventually("the suppressed count", Duration::from_secs(10), || async {
        let log = engine.log();
        log.contains("were suppressed").then_some(log)
    })
    .await;
    let printed = log.lines().filter(|l| l.contains("chatty line ")).count();
    assert_eq!(printed, 100, "{log}");
    assert!(log.contains("900 more script print/debug lines"), "{log}");
    assert!(log.contains("chatty line 99"));
    assert!(!log.contains("chatty line 100"));
}

#[tokio::test]
async fn a_stock_set_loop_fails_its_event_and_leaves_no_keys_behind() {
    let dir = project(&[
        (
            "crossdock.yaml",
            &format!("server: {{ max_event_writes: 50 }}\n{PROJECT}"),
        ),
        ("pipelines/bulk.yaml", BULK),
        ("scripts/bulk.rhai", BULK_RHAI),
        ("pipelines/half.yaml", HALF),
        ("scripts/half.rhai", HALF_RHAI),
    ]);
    let engine = Engine::start(dir.path());
    let thrown = post(&engine, "/hooks/bulk", r#"{"n":1,"swallow":false}"#).await;
    let caught = post(&engine, "/hooks/bulk", r#"{"n":2,"swallow":true}"#).await;
    let half = post(&engine, "/hooks/half", r#"{"n":3}"#).await;

    let trail = finished(&engine, &thrown).await;
    assert_eq!(trail["status"], "dead_lettered", "{trail}");
    let error = trail["errors"][0]["message"].as_str().unwrap();
    assert!(error.contains("at most 50 state keys"), "{error}");
    // The script swallowed the error; the event fails all the same.
    let trail = finished(&engine, &caught).await;
    assert_eq!(trail["status"], "dead_lettered", "{trail}");
    let error = trail["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains("more than 50 state keys") && error.contains("none were kept"),
        "{error}"
    );
    let trail = finished(&engine, &half).await;
    assert_eq!(trail["status"], "dead_lettered", "{trail}");

    let (status, _) = engine.admin("/api/state/stock/first-1").await;
    assert_eq!(status, 404);
    let (status, _) = engine.admin("/api/state/stock/half").await;
    assert_eq!(status, 404);
    assert!(engine.terminate().success());

    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["state", "stock", "bulk-2-5", "--project"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(shown.status.success());
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        "bulk-2-5: unknown SKU (available 0)"
    );
    // Nothing at all: no SKU, no kv key.
    let store = crossdock::state::SledStore::open(dir.path().join(".crossdock/state")).unwrap();
    let kept = crossdock::state::StateStore::scan_prefix(&store, "").unwrap();
    assert!(kept.is_empty(), "{kept:?}");
}

const RESERVE_RHAI: &str = r#"
let answer = stock.reserve(record.order_id, [#{sku: "S", qty: 1}]);
// Some work after the reservation: the other pipeline's flow reads the level meanwhile.
let x = 0;
for i in 0..5000 { x += i; }
record.ok = answer.ok;
record
"#;

fn reserving(name: &str) -> String {
    format!(
        "pipeline: {name}\nsource:\n  webhook: {{ path: /hooks/{name} }}\nsteps:\n  - script: reserve\n  - send: {{ to: out, op: append }}\n"
    )
}

#[tokio::test]
async fn two_pipelines_reserving_the_same_sku_at_once_never_over_reserve() {
    let (a, b) = (reserving("reserve-a"), reserving("reserve-b"));
    let dir = project(&[
        ("crossdock.yaml", PROJECT),
        ("pipelines/reserve-a.yaml", &a),
        ("pipelines/reserve-b.yaml", &b),
        ("scripts/reserve.rhai", RESERVE_RHAI),
    ]);
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["state", "stock", "S", "--set", "10", "--project"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(seeded.status.success());
    let engine = Engine::start(dir.path());
    // Both pipelines' flows run at once, on flow threads of their own.
    let mut posts = Vec::new();
    for n in 0..30 {
        let url = engine.url(if n % 2 == 0 {
            "/hooks/reserve-a"
        } else {
            "/hooks/reserve-b"
        });
        posts.push(tokio::spawn(async move {
            let r = Engine::client()
                .post(url)
                .header("content-type", "application/json")
                .body(format!(r#"{{"order_id":"o-{n}"}}"#))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
        }));
    }
    for p in posts {
        p.await.unwrap();
    }
    let out = dir.path().join("out/actions.jsonl");
    let lines = eventually("30 actions", Duration::from_secs(30), || async {
        let lines = json_lines(&out);
        (lines.len() >= 30).then_some(lines)
    })
    .await;
    let won = lines
        .iter()
        .filter(|l| l["payload"]["ok"] == Value::Bool(true))
        .count();
    assert_eq!(won, 10, "orders that got a unit, of 30 for 10 units");
    let (_, level) = engine.admin("/api/state/stock/S").await;
    assert_eq!(level["reserved"], 10, "{level}");
    assert_eq!(level["available"], 0, "{level}");
}

/// Each thread of process `pid` as (name, nice), from `/proc`.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // `pid (comm) state ppid ...`: nice is the 19th field, the 17th after the comm.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let nice: i32 = stat[close + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        threads.push((name, nice));
    }
    threads
}

/// The threads that run events sit `work_nice` below the ones that serve HTTP (which keep the
/// process's priority, as sled's I/O threads do), and events still run on them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn events_run_below_the_priority_of_ingress() {
    let me = threads_of(std::process::id())[0].1;
    for (server, lowered) in [
        ("server: { work_nice: 7 }\n", 7),
        ("", 0),
        ("server: { work_nice: 12 }\n", 12),
    ] {
        let dir = project(&[
            ("crossdock.yaml", &format!("{server}{PROJECT}")),
            ("pipelines/good.yaml", GOOD),
        ]);
        let engine = Engine::start(dir.path());
        let id = post(&engine, "/hooks/good", r#"{"n":1}"#).await;
        let trail = finished(&engine, &id).await;
        assert_eq!(trail["status"], "processed", "{trail}");
        let threads = threads_of(engine.pid());
        let nice_of = |prefix: &str| -> Vec<i32> {
            threads
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, nice)| *nice)
                .collect()
        };
        let below = (me + lowered).min(19);
        let (work, flow) = (nice_of("crossdock-work"), nice_of("crossdock-flow"));
        assert!(!work.is_empty() && !flow.is_empty(), "{threads:?}");
        assert!(
            work.iter().chain(&flow).all(|n| *n == below),
            "{server}: {threads:?}"
        );
        let (http, sled) = (nice_of("tokio-rt"), nice_of("sled-io"));
        assert!(!http.is_empty() && !sled.is_empty(), "{threads:?}");
        assert!(
            http.iter().chain(&sled).all(|n| *n == me),
            "{server}: {threads:?}"
        );
        // Both runtimes stop cleanly.
        assert!(engine.terminate().success());
    }
}
