//! `crossdock test --watch` and `dry-run --watch` through the real binary: a project in a
//! temporary folder is edited while the command runs, and what it prints after each save is
//! read from its output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const PIPELINE: &str = "pipeline: orders
source: { webhook: { path: /hooks/orders } }
steps:
  - map: order
  - send: { to: out, op: print }
";
const MAPPING: &str = "mapping: order\nfields:\n  sku: $.sku\n";
const CASES: &str = "pipeline: orders
cases:
  - name: the sku is kept
    input: { sku: A-1 }
    expect:
      record: { sku: A-1 }
";

fn orders_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("crossdock.yaml", "connectors:\n  out: { kind: stdout }\n"),
        ("pipelines/orders.yaml", PIPELINE),
        ("mappings/order.yaml", MAPPING),
        ("tests/pipelines/orders.yaml", CASES),
    ] {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The command, its output and error lines as they come, each marked with its stream.
struct Watching {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// Per stream: how many of `seen` it has read.
    read: HashMap<String, usize>,
}

impl Watching {
    fn start(dir: &Path, args: &[&str]) -> Watching {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        for (mark, stream) in [
            (
                "out",
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            ),
            ("err", Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(format!("{mark}: {line}")).is_err() {
                        return;
                    }
                }
            });
        }
        Watching {
            child,
            lines,
            seen: Vec::new(),
            read: HashMap::new(),
        }
    }

    /// The next line of `stream` ("out" or "err") that contains `text`, reading more as
    /// needed. The two streams are read by two threads, so their lines interleave in any
    /// order: each stream has its own place, and lines of the other wait their turn. The bound
    /// only keeps a broken build from hanging the suite.
    fn until(&mut self, stream: &str, text: &str) -> String {
        let mark = format!("{stream}: ");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut at = *self.read.entry(stream.to_string()).or_default();
        loop {
            while at < self.seen.len() {
                let line = &self.seen[at];
                at += 1;
                if line.starts_with(&mark) && line.contains(text) {
                    let line = line.clone();
                    self.read.insert(stream.to_string(), at);
                    return line;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no {stream} line with {text:?}; the command printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Ctrl-C, then the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn test_watch_runs_the_cases_again_after_each_save() {
    let dir = orders_project();
    let mapping = dir.path().join("mappings/order.yaml");
    let mut w = Watching::start(dir.path(), &["test", "--watch"]);
    w.until("out", "PASS orders › the sku is kept");
    w.until("out", "1 passed, 0 failed");
    w.until("err", "watching for changes");

    std::fs::write(&mapping, MAPPING.replace("$.sku", "$.code")).unwrap();
    let separator = w.until("out", "changed:");
    assert!(separator.starts_with("out: ── "), "{separator}");
    assert!(separator.contains("mappings/order.yaml"), "{separator}");
    w.until("out", "FAIL orders › the sku is kept");
    w.until("out", "record.sku: missing");
    w.until("out", "0 passed, 1 failed");

    // A project that does not pass `check`: its problem is printed and the loop goes on.
    std::fs::write(&mapping, format!("{MAPPING}oops: [\n")).unwrap();
    w.until("out", "changed: mappings/order.yaml");
    w.until("err", "mappings/order.yaml:");
    w.until("err", "fix the project before testing it");

    std::fs::write(&mapping, MAPPING).unwrap();
    w.until("out", "changed: mappings/order.yaml");
    w.until("out", "1 passed, 0 failed");

    // A test case file is watched too.
    std::fs::write(
        dir.path().join("tests/pipelines/orders.yaml"),
        CASES.replace("record: { sku: A-1 }", "record: { sku: B-2 }"),
    )
    .unwrap();
    w.until("out", "changed: tests/pipelines/orders.yaml");
    w.until("out", "0 passed, 1 failed");

    let status = w.interrupt();
    assert!(status.success(), "{status:?}");
}

#[test]
fn dry_run_watch_runs_again_when_the_input_changes() {
    let dir = orders_project();
    let input = dir.path().join("order.json");
    std::fs::write(&input, r#"{"sku": "A-1"}"#).unwrap();
    let mut w = Watching::start(
        dir.path(),
        &["dry-run", "orders", "--input", "order.json", "--watch"],
    );
    w.until("out", r#""sku": "A-1""#);
    w.until("err", "watching for changes");

    std::fs::write(&input, r#"{"sku": "B-2"}"#).unwrap();
    w.until("out", "changed: order.json");
    w.until("out", r#""sku": "B-2""#);

    std::fs::write(
        dir.path().join("mappings/order.yaml"),
        "mapping: order\nfields:\n  code: $.sku\n",
    )
    .unwrap();
    w.until("out", "changed: mappings/order.yaml");
    w.until("out", r#""code": "B-2""#);

    let status = w.interrupt();
    assert!(status.success(), "{status:?}");
}

#[test]
fn dry_run_watch_refuses_standard_input() {
    let dir = orders_project();
    let out = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["dry-run", "orders", "--input", "-", "--watch"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--watch needs --input FILE"));
}
