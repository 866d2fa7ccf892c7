//! Hours of load in miniature, through the real binary on real sled: the counters `/health` and
//! `/metrics` show equal a scan of the store after every kind of outcome, a reload and a
//! restart; with small retention limits the state folder stops growing while events keep
//! arriving, and nothing pending is expired.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossdock::runtime::inbox::{Inbox, Tally};
use crossdock::runtime::FlushPolicy;
use crossdock::state::SledStore;
use support::engine::{project, Engine};
use support::upstream::Upstream;

/// `relay` delivers to an upstream that fails now and then (retries); `picky` dead-letters odd
/// numbers at once (a rule error); `echo` skips what its trigger does not match; `stuck`
/// sends to an upstream that is always down, with retries far apart: its events stay pending.
fn files(up: &str, down: &str, retention: &str) -> Vec<(String, String)> {
    vec![
        (
            "crossdock.yaml".into(),
            format!(
                r#"
server: {{ {retention} }}
connectors:
  up:
    kind: http
    base_url: "{up}"
    breaker: {{ failures: 1000, cooldown: 1s }}
    operations:
      post: {{ method: POST, path: /events }}
  down:
    kind: http
    base_url: "{down}"
    breaker: {{ failures: 1000, cooldown: 1s }}
    operations:
      post: {{ method: POST, path: /events }}
  out: {{ kind: file, path: out/actions.jsonl }}
"#
            ),
        ),
        (
            "pipelines/relay.yaml".into(),
            r#"
pipeline: relay
source:
  webhook: { path: /hooks/relay }
steps:
  - send: { to: up, op: post }
on_error:
  retry: { attempts: 10, initial: 50ms, max: 200ms }
"#
            .into(),
        ),
        (
            "pipelines/picky.yaml".into(),
            r#"
pipeline: picky
source:
  webhook: { path: /hooks/picky }
steps:
  - script: picky
  - send: { to: out, op: append }
"#
            .into(),
        ),
        (
            "scripts/picky.rhai".into(),
            "if record.n % 2 == 1 { throw \"odd\"; }\nrecord\n".into(),
        ),
        (
            "pipelines/echo.yaml".into(),
            r#"
pipeline: echo
source:
  webhook: { path: /hooks/echo }
trigger:
  when: '"n" in record'
steps:
  - send: { to: out, op: append }
"#
            .into(),
        ),
        (
            "pipelines/stuck.yaml".into(),
            r#"
pipeline: stuck
source:
  webhook: { path: /hooks/stuck }
steps:
  - send: { to: down, op: post }
on_error:
  retry: { attempts: 10, initial: 10m, max: 10m }
"#
            .into(),
        ),
    ]
}

fn project_of(files: &[(String, String)]) -> tempfile::TempDir {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    project(&refs)
}

/// The tables counted by reading them, with the engine stopped (sled locks the folder).
fn scan(dir: &Path) -> Tally {
    let store = Arc::new(SledStore::open(dir.join(".crossdock/state")).unwrap());
    Inbox::open(store, FlushPolicy::Group)
        .unwrap()
        .audit()
        .unwrap()
}

/// A gauge's value in the Prometheus text.
fn gauge(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

/// What the running engine says in `/health` and in the `/metrics` gauges, read one after the
/// other: equal unless an event moved in between.
async fn shown(engine: &Engine) -> (Tally, Tally) {
    let (_, health) = engine.admin("/health").await;
    let metrics = engine.metrics().await;
    let gauges = Tally {
        pending: gauge(&metrics, "crossdock_inbox_pending"),
        pending_bytes: gauge(&metrics, "crossdock_inbox_pending_bytes"),
        dead_letters: gauge(&metrics, "crossdock_dead_letters"),
        trails: gauge(&metrics, "crossdock_trails"),
        trail_bytes: gauge(&metrics, "crossdock_trail_bytes"),
    };
    let field = |name: &str| health[name].as_u64().unwrap();
    let health = Tally {
        pending: field("pending"),
        pending_bytes: field("pending_bytes"),
        dead_letters: field("dead_letters"),
        ..gauges
    };
    (health, gauges)
}

/// Waits until `/health` and the gauges agree and stay the same for half a second: nothing
/// left to do but the retries that are minutes away.
async fn settled(engine: &Engine) -> Tally {
    let mut last = shown(engine).await;
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = shown(engine).await;
        if now != last || now.0 != now.1 {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_millis(500) {
            return now.1;
        }
        assert!(Instant::now() < deadline, "never settled: {now:?}");
    }
}

#[tokio::test]
async fn counters_equal_a_scan_of_the_store_after_every_outcome_a_reload_and_a_restart() {
    let up = Upstream::start().await;
    let down = Upstream::start().await;
    down.set_down(Some(503));
    let dir = project_of(&files(&up.url, &down.url, "dedup_window: 1h"));
    let engine = Arc::new(Engine::start(dir.path()));

    // Retries: the upstream fails a share of the calls with 503 or 429.
    for n in 0..40 {
        up.fail_next(if n % 2 == 0 { 503 } else { 429 }, "busy", None);
    }
    // Eight clients post at once, mixing every outcome; every tenth body is posted twice (the
    // second a duplicate by the body's hash).
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (engine, accepted) = (engine.clone(), accepted.clone());
        // Of the ten `picky` events of each client, the five with an odd number fail.
        clients.push(tokio::spawn(async move {
            for i in 0..60 {
                let n = c * 1000 + if i % 6 == 3 { i / 6 } else { i };
                let path = match i % 6 {
                    0..=2 => "/hooks/relay",
                    3 => "/hooks/picky",
                    4 => "/hooks/echo",
                    _ => "/hooks/stuck",
                };
                let body = if i % 6 == 4 && i % 12 == 4 {
                    r#"{"skip":true,"m":N}"#.replace('N', &n.to_string())
                } else {
                    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(n % 300))
                };
                let times = if i % 10 == 0 { 2 } else { 1 };
                for t in 0..times {
                    let (status, answer) = engine.post(path, &body).await;
                    if t == 0 {
                        assert_eq!(status, 202, "{answer}");
                        accepted.fetch_add(1, Ordering::SeqCst);
                    } else {
                        assert_eq!(answer["duplicate"], true, "{answer}");
                    }
                }
            }
        }));
    }
    // A reload in the middle of it (a changed pipeline), through the admin API.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(
        dir.path().join("pipelines/echo.yaml"),
        "pipeline: echo\nsource:\n  webhook: { path: /hooks/echo }\ntrigger:\n  when: '\"n\" in record'\nsteps:\n  - set: { seen: true }\n  - send: { to: out, op: append }\n",
    )
    .unwrap();
    let (status, answer) = engine.admin_post("/api/reload").await;
    assert_eq!(status, 200, "{answer}");
    for c in clients {
        c.await.unwrap();
    }
    let before = settled(&engine).await;
    assert_eq!(
        before.pending, 80,
        "the stuck pipeline's events wait: {before:?}"
    );
    assert_eq!(before.dead_letters, 8 * 5, "{before:?}");

    // By hand: a dead letter retried (it fails again at once), one dropped, a pending event
    // dropped.
    let (_, dlq) = engine.admin("/api/dlq?limit=2").await;
    let ids: Vec<String> = dlq["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{dlq}");
    engine
        .admin_post(&format!("/api/dlq/{}/retry", ids[0]))
        .await;
    let r = Engine::client()
        .delete(engine.url(&format!("/api/dlq/{}", ids[1])))
        .bearer_auth(support::engine::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, pending) = engine.admin("/api/inbox?limit=1").await;
    let first = pending["items"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Engine::client()
        .delete(engine.url(&format!("/api/inbox/{first}")))
        .bearer_auth(support::engine::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let running = settled(&engine).await;
    assert_eq!((running.pending, running.dead_letters), (79, 39));

    // Stopped: the store, read whole, holds exactly what the engine said.
    let engine = Arc::try_unwrap(engine).ok().unwrap();
    assert!(engine.terminate().success());
    let truth = scan(dir.path());
    assert_eq!(running, truth);
    assert!(truth.trails as usize >= accepted.load(Ordering::SeqCst) - 80);

    // Started again: the same, and events taken since are counted as they go.
    let engine = Engine::start(dir.path());
    assert_eq!(settled(&engine).await, truth);
    for n in 0..20 {
        let (status, _) = engine
            .post("/hooks/relay", &format!(r#"{{"n":{}}}"#, 90_000 + n))
            .await;
        assert_eq!(status, 202);
    }
    let after = settled(&engine).await;
    assert_eq!(after.pending, truth.pending);
    assert!(engine.terminate().success());
    assert_eq!(after, scan(dir.path()));
}

/// Bytes of the files in `dir`, as `du --apparent-size` counts them.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => folder_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn with_small_limits_the_state_folder_stops_growing_and_nothing_pending_expires() {
    let up = Upstream::start().await;
    let down = Upstream::start().await;
    down.set_down(Some(503));
    let dir = project_of(&files(
        &up.url,
        &down.url,
        "dedup_window: 2s, keep_trails: 1h, keep_trails_bytes: 64KB",
    ));
    let engine = Arc::new(Engine::start(dir.path()));
    let state = dir.path().join(".crossdock/state");
    // One event that waits for its retry for the whole test.
    let (_, stuck) = engine.post("/hooks/stuck", r#"{"n":-1}"#).await;
    let stuck = stuck["event_id"].as_str().unwrap().to_string();

    // Eight rounds: four clients post 2.5 KB bodies, 750 a round; then the engine is left to
    // deliver them all and to sweep, and the folder's size is taken. Rounds, not a stream: on
    // a loaded machine delivery falls behind ingress, and a backlog's bodies (which are
    // pending, never swept) would read as growth.
    let mut samples = Vec::new();
    let mut posted = 0usize;
    for round in 0..8 {
        let mut clients = Vec::new();
        for c in 0..4 {
            let engine = engine.clone();
            clients.push(tokio::spawn(async move {
                for i in 0..750 / 4 {
                    let body = format!(
                        r#"{{"n":{},"pad":"{}"}}"#,
                        round * 1_000_000 + c * 1_000 + i,
                        "x".repeat(2500)
                    );
                    let (status, answer) = engine.post("/hooks/relay", &body).await;
                    assert_eq!(status, 202, "{answer}");
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        posted += 4 * (750 / 4);
        let left = settled(&engine).await;
        assert_eq!(left.pending, 1, "{left:?}");
        // A sweep runs every second with these windows: two of them have run since.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let metrics = engine.metrics().await;
        samples.push((
            posted,
            folder_bytes(&state),
            gauge(&metrics, "crossdock_trail_bytes"),
        ));
    }
    // The trails are within their bound (a trail here is under 1 KB, and with the delivery
    // kept beside it, the 2.5 KB body and its headers, under 4 KB; the waiting event's trail
    // is never swept).
    for &(_, _, trail_bytes) in &samples {
        assert!(trail_bytes < 64 * 1024 + 2 * 4096, "{samples:?}");
    }
    // The last four rounds wrote as many events as the first four and the folder grew by
    // sled's steps of a segment (512 KB) or two: it reuses the space the sweeps freed (under
    // 300 bytes an event on a quiet machine). Without the sweeps it keeps every trail and
    // dedup key: about 3.7 KB an event.
    let most = |part: &[(usize, u64, u64)]| part.iter().map(|s| s.1).max().unwrap_or(0);
    let events = (samples[7].0 - samples[3].0) as u64;
    let grown = most(&samples[4..]).saturating_sub(most(&samples[..4]));
    assert!(
        grown < (1 << 20) + events * 1000,
        "the folder grew {grown} bytes for {events} events: {samples:?}"
    );
    // Nothing pending was expired: the waiting event and its trail are there.
    let (_, event) = engine.admin(&format!("/api/events/{stuck}")).await;
    assert_eq!(event["status"], "retrying", "{event}");
    assert!(event["last_attempt"].is_object(), "{event}");
    let left = settled(&engine).await;
    assert_eq!(left.pending, 1, "{left:?}");
}

/// The count of a labelled counter in the Prometheus text (0 when it was never counted).
fn counted(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// The store closed and opened again while clients keep posting (every 1,000 writes, the
/// least the engine takes, where the default waits for 300,000) loses nothing: every post is
/// answered 202, every event is delivered once, and nothing is left pending.
#[tokio::test]
async fn a_store_reopened_under_load_loses_no_event() {
    let up = Upstream::start().await;
    let config = format!("state: {{ reopen_every: 1000 }}\n{}", up.project_file());
    let dir = project(&[
        ("crossdock.yaml", &config),
        (
            "pipelines/relay.yaml",
            "pipeline: relay\nsource:\n  webhook: { path: /hooks/relay }\nsteps:\n  - send: { to: erp, op: create }\n",
        ),
    ]);
    let engine = Arc::new(Engine::start(dir.path()));
    let under_load = r#"crossdock_state_reopens_total{why="under_load"}"#;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8u64 {
        let (engine, stop) = (engine.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let n = c * 1_000_000 + sent;
                let (status, answer) = engine
                    .post(
                        "/hooks/relay",
                        &format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(500)),
                    )
                    .await;
                assert_eq!(status, 202, "{answer}");
                sent += 1;
            }
            sent
        }));
    }
    // Generous: the debug build on a loaded machine; the clients never pause meanwhile.
    support::engine::eventually("three reopens under load", Duration::from_secs(180), || {
        let engine = engine.clone();
        async move { (counted(&engine.metrics().await, under_load) >= 3).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    support::engine::eventually("every event delivered", Duration::from_secs(120), || {
        let up = up.clone();
        async move { (up.received().len() as u64 >= sent).then_some(()) }
    })
    .await;
    let after = settled(&engine).await;
    assert_eq!(after.pending, 0, "{after:?}");
    assert_eq!(after.dead_letters, 0, "{after:?}");
    let mut delivered: Vec<u64> = up
        .received()
        .iter()
        .map(|r| r.body["n"].as_u64().unwrap())
        .collect();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered.len() as u64, sent, "each event delivered once");
    assert_eq!(up.received().len() as u64, sent);
    // And the store, read whole once the engine stopped, holds every event's trail.
    let engine = Arc::try_unwrap(engine).ok().unwrap();
    assert!(engine.terminate().success());
    let truth = scan(dir.path());
    assert_eq!((truth.pending, truth.trails), (0, sent));
}
