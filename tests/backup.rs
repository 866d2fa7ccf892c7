//! Backup and restore of the state folder as docs/deploy.md says to do it: with the engine
//! stopped, the whole folder copied; after a loss, the copy put back whole. Events pending at
//! the backup (accepted, their upstream down) run after the restore, against a real upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::engine::{copy_dir, eventually, project, Engine};
use support::upstream::Upstream;

/// `crossdock inbox list` on the stopped engine's folder.
fn pending(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["inbox", "list", "--project"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_stopped_state_folder_restores_pending_events() {
    let upstream = Upstream::start().await;
    upstream.set_down(Some(503));
    let config = upstream.project_file();
    let dir = project(&[
        ("crossdock.yaml", &config),
        (
            "pipelines/orders.yaml",
            "pipeline: orders\nsource: { webhook: { path: /hooks/orders } }\nsteps:\n  - send: { to: erp, op: create }\non_error: { retry: { attempts: 1000, initial: 100ms, max: 1s } }\n",
        ),
    ]);
    let engine = Engine::start(dir.path());
    for n in 1..=3 {
        let (status, _) = engine
            .post("/hooks/orders", &format!(r#"{{"order": {n}}}"#))
            .await;
        assert_eq!(status, 202);
    }
    eventually("every event tried", Duration::from_secs(20), || {
        let hits = upstream.hits();
        async move { (hits >= 3).then_some(()) }
    })
    .await;
    assert!(engine.terminate().success());
    assert!(upstream.received().is_empty());

    let state = dir.path().join(".crossdock/state");
    let listed = pending(dir.path());
    assert_eq!(listed.matches("evt_").count(), 3, "{listed}");
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&state, &backup.path().join("state"));

    // The disk is lost; the copy goes back whole.
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&backup.path().join("state"), &state);
    assert_eq!(pending(dir.path()), listed);

    upstream.set_down(None);
    let engine = Engine::start(dir.path());
    let orders = eventually(
        "the restored events delivered",
        Duration::from_secs(30),
        || {
            let got = upstream.received();
            async move { (got.len() == 3).then_some(got) }
        },
    )
    .await;
    let mut seen: Vec<i64> = orders
        .iter()
        .map(|r| r.body["order"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3]);
    assert!(
        engine.log().contains("resuming 3 events"),
        "{}",
        engine.log()
    );
    assert!(engine.terminate().success());
    assert_eq!(pending(dir.path()).matches("evt_").count(), 0);
}

#[test]
fn an_engine_refuses_a_state_folder_written_by_a_newer_one() {
    let dir = project(&[
        ("crossdock.yaml", "connectors:\n  console: { kind: stdout }\n"),
        (
            "pipelines/p.yaml",
            "pipeline: p\nsource: { webhook: { path: /hooks/p } }\nsteps:\n  - send: { to: console, op: print }\n",
        ),
    ]);
    let engine = Engine::start(dir.path());
    assert!(engine.terminate().success());
    // What a newer engine with another layout would have stamped (src/state/sled/mod.rs).
    {
        let db = sled::open(dir.path().join(".crossdock/state")).unwrap();
        assert_eq!(
            db.get("crossdock.format").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        db.insert("crossdock.format", "99").unwrap();
        db.flush().unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("format 99, written by a newer crossdock"),
        "{stderr}"
    );
    // Refused before anything was written: the stamp is still the newer one.
    let db = sled::open(dir.path().join(".crossdock/state")).unwrap();
    assert_eq!(
        db.get("crossdock.format").unwrap().as_deref(),
        Some(&b"99"[..])
    );
}
