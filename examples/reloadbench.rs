//! Hot reload benchmark against the release binary.
//!
//! ```sh
//! cargo build --release && cargo run --release --example reloadbench [-- PATH_TO_CROSSDOCK]
//! ```
//!
//! Phase A (no load): 50 edits, in turn to the mapping, the script and the pipeline; the time
//! from just before each write to the first `GET /api/pipelines` (polled every 2 ms) that shows
//! the new version. Beside it, the cost of the reload itself (`POST /api/reload` after a write,
//! before the watcher's debounce ends), so the total can be split into watcher + debounce and
//! compile + swap.
//!
//! Phase B (under load): 64 connections post small events as fast as they can for 20 s; an edit
//! every 2 s. Accepted (202) answers are counted in 100 ms buckets. Steady throughput is the
//! median of the buckets more than 500 ms from any edit; an edit's dip is its lowest bucket in
//! the 500 ms after it, as a fraction of steady, and its window the mean of the whole buckets
//! in those 500 ms (the throughput while the debounce, reload and swap run). Both come with a
//! control: the same statistic 1 s after each edit, where nothing reloads.
//!
//! The engine runs with the default debounce (crossdock.yaml sets no `reload_debounce`).
//! The last line printed is one JSON object with every figure.
//!
//! Environment: `CROSSDOCK_BIN` (the binary, if not given as the argument; default
//! `target/release/crossdock`), `CROSSDOCK_LOG` (passed to the engine), `RELOADBENCH_LOG=1`
//! (echo the engine's log to stderr), `RELOADBENCH_EDITS` (phase A edits, default 50),
//! `RELOADBENCH_SECS` (phase B length, default 20), `RELOADBENCH_PLACEBO=1` (phase B marks the
//! edit times but writes nothing: the same statistics without reloads, to tell a reload's dip
//! from the machine's noise).

// A benchmark's report goes to stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

const TOKEN: &str = "reloadbench-admin-token";
const HOOK: &str = "/hooks/bench";
const BUCKET: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(2);
/// Under load, polls every 10 ms: every 2 ms, the polls alone took a few % of a bucket.
const POLL_LOADED: Duration = Duration::from_millis(10);
const CONNECTIONS: usize = 64;
const EDIT_EVERY: Duration = Duration::from_secs(2);
const NEAR_EDIT: Duration = Duration::from_millis(500);

const PROJECT: &str = r#"
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

/// The three files an edit can change; `n` makes each write a real content change.
#[derive(Clone, Copy)]
enum Target {
    Mapping,
    Script,
    Pipeline,
}

impl Target {
    fn nth(i: usize) -> Target {
        [Target::Mapping, Target::Script, Target::Pipeline][i % 3]
    }

    fn path(self) -> &'static str {
        match self {
            Target::Mapping => "mappings/m.yaml",
            Target::Script => "scripts/s.rhai",
            Target::Pipeline => "pipelines/bench.yaml",
        }
    }

    fn text(self, n: usize) -> String {
        match self {
            Target::Mapping => format!(
                "mapping: m\nfields:\n  n: {{ from: $.n, type: integer }}\n  tag: {{ template: \"m{n}\" }}\n"
            ),
            Target::Script => format!("record.s = \"s{n}\";\nrecord\n"),
            Target::Pipeline => format!(
                "pipeline: bench\nsource:\n  webhook: {{ path: {HOOK} }}\nsteps:\n  - map: m\n  - script: s\n  - set: {{ p: \"p{n}\" }}\n  - send: {{ to: out, op: append }}\n"
            ),
        }
    }
}

/// The engine process; killed when dropped, so every exit path stops it.
struct Engine {
    child: Child,
    addr: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Engine {
    fn start(bin: &Path, dir: &Path) -> Result<Engine> {
        let echo = std::env::var_os("RELOADBENCH_LOG").is_some();
        let mut child = Command::new(bin)
            .arg("run")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("CROSSDOCK_ADMIN_TOKEN", TOKEN)
            .env(
                "CROSSDOCK_LOG",
                std::env::var("CROSSDOCK_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                if echo {
                    eprintln!("[engine] {line}");
                }
                if let Ok(mut l) = sink.lock() {
                    // Keep the start for a failure message; the rest only when echoed.
                    if l.len() < 64 * 1024 {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            }
        });
        let mut engine = Engine {
            child,
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => engine.addr = addr,
            Err(_) => {
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                bail!("the engine did not start:\n{log}");
            }
        }
        Ok(engine)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The admin API's view: (version, last_reload_error).
async fn pipelines(client: &reqwest::Client, engine: &Engine) -> Result<(String, Value)> {
    let r = client
        .get(engine.url("/api/pipelines"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    if r.status() != 200 {
        bail!("GET /api/pipelines: {}", r.status());
    }
    let v: Value = r.json().await?;
    let version = v["version"]
        .as_str()
        .ok_or_else(|| anyhow!("no version in {v}"))?
        .to_string();
    Ok((version, v["last_reload_error"].clone()))
}

/// Polls every 2 ms until the version differs from `before`; the instant of that poll.
async fn wait_new_version(
    client: &reqwest::Client,
    engine: &Engine,
    before: &str,
    every: Duration,
    timeout: Duration,
) -> Result<(Instant, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (now, err) = pipelines(client, engine).await?;
        let seen = Instant::now();
        if now != before {
            if !err.is_null() {
                bail!("the reload was refused: {err}");
            }
            return Ok((seen, now));
        }
        if seen > deadline {
            bail!("no new version after {timeout:?} (last_reload_error: {err})");
        }
        tokio::time::sleep(every).await;
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes the `n`th edit of `target`.
fn edit(dir: &Path, target: Target, n: usize) -> Result<()> {
    let path = dir.join(target.path());
    std::fs::write(&path, target.text(n)).with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> Result<()> {
    // On Ctrl-C or SIGTERM (tools/reload-bench.sh's timeout) the run is dropped, and with it
    // the engine, which is killed.
    tokio::select! {
        r = run() => r,
        s = interrupted() => bail!("stopped by {s}"),
    }
}

#[cfg(unix)]
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(not(unix))]
async fn interrupted() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

async fn run() -> Result<()> {
    let bin = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CROSSDOCK_BIN").ok())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/crossdock"));
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release`, or give its path",
            bin.display()
        );
    }
    let edits = env_usize("RELOADBENCH_EDITS", 50);
    let secs = env_usize("RELOADBENCH_SECS", 20) as u64;
    let placebo = std::env::var("RELOADBENCH_PLACEBO").is_ok_and(|v| !v.is_empty() && v != "0");

    let dir = tempfile::tempdir()?;
    let root = dir.path();
    for sub in ["pipelines", "mappings", "scripts", "out"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::write(root.join("crossdock.yaml"), PROJECT)?;
    // `n` counts every edit of the run, so no write repeats earlier content.
    let mut n = 0usize;
    for t in [Target::Mapping, Target::Script, Target::Pipeline] {
        edit(root, t, n)?;
    }
    let engine = Engine::start(&bin, root)?;
    eprintln!("engine {} on {}", bin.display(), engine.addr);
    let client = reqwest::Client::new();

    // The watcher starts just after the "serving" line: a first edit (not counted) shows it
    // is up, and warms up both sides.
    let (first, _) = pipelines(&client, &engine).await?;
    let warm = Instant::now() + Duration::from_secs(10);
    loop {
        n += 1;
        edit(root, Target::Mapping, n)?;
        match wait_new_version(&client, &engine, &first, POLL, Duration::from_secs(2)).await {
            Ok(_) => break,
            Err(_) if Instant::now() < warm => continue,
            Err(e) => return Err(e.context("the file watcher never reloaded")),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Phase A0: the reload itself (load, check, compile, swap), without watcher or debounce.
    let mut direct = Vec::new();
    for i in 0..9 {
        n += 1;
        let (before, _) = pipelines(&client, &engine).await?;
        edit(root, Target::nth(i), n)?;
        let t0 = Instant::now();
        let r = client
            .post(engine.url("/api/reload"))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        let took = t0.elapsed();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            bail!("POST /api/reload: {status} {body}");
        }
        let (after, _) = pipelines(&client, &engine).await?;
        if after == before {
            bail!("POST /api/reload did not change the version");
        }
        direct.push(ms(took));
        // Let the watcher's own (no-op) reload of this write pass.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    direct.sort_by(f64::total_cmp);
    let (mut version, _) = pipelines(&client, &engine).await?;

    // Phase A: save -> serving, no load.
    let mut lat = Vec::with_capacity(edits);
    let mut per_target: [Vec<f64>; 3] = Default::default();
    for i in 0..edits {
        n += 1;
        let target = Target::nth(i);
        let t0 = Instant::now();
        edit(root, target, n)?;
        let (seen, v) = wait_new_version(&client, &engine, &version, POLL, Duration::from_secs(10))
            .await
            .with_context(|| format!("edit {i} ({})", target.path()))?;
        let took = ms(seen - t0);
        lat.push(took);
        if std::env::var_os("RELOADBENCH_EACH").is_some() {
            eprintln!("edit {i} {} {took:.1} ms", target.path());
        }
        per_target[i % 3].push(took);
        version = v;
        // Longer than the debounce: a late event of this write reloads (a no-op) before the
        // next edit.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lat.sort_by(f64::total_cmp);
    let (a50, a99, amax) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        *lat.last().unwrap_or(&f64::NAN),
    );
    println!("phase A: {edits} edits, save -> serving, no load (default debounce 100 ms)");
    println!(
        "  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  min {:.1} ms",
        a50,
        a99,
        amax,
        lat.first().unwrap_or(&f64::NAN)
    );
    println!(
        "  median by file: mapping {:.1} ms, script {:.1} ms, pipeline {:.1} ms",
        median(&per_target[0]),
        median(&per_target[1]),
        median(&per_target[2])
    );
    println!(
        "  reload alone (POST /api/reload, {} runs): median {:.1} ms, max {:.1} ms",
        direct.len(),
        median(&direct),
        direct.last().unwrap_or(&f64::NAN)
    );

    // Phase B: throughput under load with an edit every 2 s.
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let n_buckets = (secs * 1000 / BUCKET.as_millis() as u64) as usize + 2;
    let buckets: Arc<Vec<AtomicU64>> =
        Arc::new((0..n_buckets).map(|_| AtomicU64::new(0)).collect());
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let url = engine.url(HOOK);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (stop, counting, buckets, failed, failures, start, url) = (
            stop.clone(),
            counting.clone(),
            buckets.clone(),
            failed.clone(),
            failures.clone(),
            start.clone(),
            url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // One client per task: one keep-alive connection each.
            let client = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"n":{},"c":{c}}}"#, i * CONNECTIONS as u64 + c as u64);
                i += 1;
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let problem = match r {
                    Ok(r) if r.status() == 202 => {
                        // Read the answer: the request is done when its body is.
                        match r.bytes().await {
                            Ok(_) => None,
                            Err(e) => Some(format!("reading the answer: {e}")),
                        }
                    }
                    Ok(r) => Some(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Some(e.to_string()),
                };
                if !counting.load(Ordering::Relaxed) {
                    continue;
                }
                match problem {
                    None => {
                        if let Some(t0) = start.get() {
                            let k = (t0.elapsed().as_millis() / BUCKET.as_millis()) as usize;
                            if let Some(b) = buckets.get(k) {
                                b.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(p) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                        if f.len() < 10 {
                            f.push(p);
                        }
                    }
                }
            }
        }));
    }
    // Warm-up: connections open, the engine's queue reaches its running state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t_start = Instant::now();
    let _ = start.set(t_start);
    counting.store(true, Ordering::SeqCst);
    let mut edit_at = Vec::new();
    let mut loaded_lat = Vec::new();
    let mut k = 0usize;
    loop {
        let next = t_start + EDIT_EVERY * (k as u32 + 1);
        if next + EDIT_EVERY / 2 > t_start + Duration::from_secs(secs) {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        n += 1;
        let target = Target::nth(k);
        let t0 = Instant::now();
        edit_at.push(t0 - t_start);
        k += 1;
        if placebo {
            // The same polling as after an edit, for as long as a reload takes.
            while t0.elapsed() < Duration::from_millis(110) {
                pipelines(&client, &engine).await?;
                tokio::time::sleep(POLL_LOADED).await;
            }
            continue;
        }
        edit(root, target, n)?;
        let (seen, v) = wait_new_version(
            &client,
            &engine,
            &version,
            POLL_LOADED,
            Duration::from_secs(10),
        )
        .await
        .with_context(|| format!("phase B edit {} ({})", k - 1, target.path()))?;
        loaded_lat.push(ms(seen - t0));
        version = v;
    }
    tokio::time::sleep_until((t_start + Duration::from_secs(secs)).into()).await;
    counting.store(false, Ordering::SeqCst);
    let elapsed = t_start.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }

    // Only whole buckets inside the measured span.
    let whole = (ms(Duration::from_secs(secs)) / ms(BUCKET)) as usize;
    let counts: Vec<f64> = buckets
        .iter()
        .take(whole)
        .map(|b| b.load(Ordering::Relaxed) as f64)
        .collect();
    let total: f64 = counts.iter().sum();
    let bucket_start = |b: usize| BUCKET * b as u32;
    let near_edit = |b: usize| {
        let (s, e) = (bucket_start(b), bucket_start(b + 1));
        edit_at
            .iter()
            .any(|&t| e + NEAR_EDIT > t && s < t + NEAR_EDIT)
    };
    let steady_buckets: Vec<f64> = (0..counts.len())
        .filter(|&b| !near_edit(b))
        .map(|b| counts[b])
        .collect();
    let steady = median(&steady_buckets);
    // An edit's dip: its lowest bucket among those overlapping the 500 ms after it.
    let lowest_in = |from: Duration| {
        (0..counts.len())
            .filter(|&b| bucket_start(b + 1) > from && bucket_start(b) < from + NEAR_EDIT)
            .map(|b| counts[b] / steady)
            .fold(f64::INFINITY, f64::min)
    };
    let dips: Vec<f64> = edit_at.iter().map(|&t| lowest_in(t)).collect();
    // The throughput of the whole 500 ms after an edit (debounce, reload, swap): what the
    // edit cost, where the lowest single bucket mostly measures the machine's noise.
    let mean_in = |from: Duration| {
        let v: Vec<f64> = (0..counts.len())
            .filter(|&b| bucket_start(b) >= from && bucket_start(b + 1) <= from + NEAR_EDIT)
            .map(|b| counts[b] / steady)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let windows: Vec<f64> = edit_at.iter().map(|&t| mean_in(t)).collect();
    let window_controls: Vec<f64> = edit_at
        .iter()
        .map(|&t| mean_in(t + EDIT_EVERY / 2))
        .collect();
    // The same statistic over the 500 ms starting 1 s after each edit, where no reload runs:
    // how low a bucket goes without one (scheduling noise on a shared machine).
    let controls: Vec<f64> = edit_at
        .iter()
        .map(|&t| lowest_in(t + EDIT_EVERY / 2))
        .collect();
    // Mean of each 100 ms bucket from 300 ms before to 1 s after an edit, over all edits.
    let profile: Vec<f64> = (-3i64..10)
        .map(|k| {
            let v: Vec<f64> = edit_at
                .iter()
                .filter_map(|&t| {
                    let b = (t.as_millis() / BUCKET.as_millis()) as i64 + k;
                    usize::try_from(b).ok().and_then(|b| counts.get(b))
                })
                .map(|c| c / steady)
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        })
        .collect();
    let worst_dip = dips.iter().copied().fold(f64::INFINITY, f64::min);
    let worst_window = windows.iter().copied().fold(f64::INFINITY, f64::min);
    let worst_window_control = window_controls
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let median_dip = median(&dips);
    let worst_control = controls.iter().copied().fold(f64::INFINITY, f64::min);
    let median_control = median(&controls);
    let steady_rps = steady * 1000.0 / ms(BUCKET);
    let failed_n = failed.load(Ordering::Relaxed);
    loaded_lat.sort_by(f64::total_cmp);
    println!(
        "phase B: {CONNECTIONS} connections, {:.1} s, {} edits (one every {} s){}",
        elapsed.as_secs_f64(),
        edit_at.len(),
        EDIT_EVERY.as_secs(),
        if placebo {
            "; PLACEBO: the edit times are marked, nothing is written"
        } else {
            ""
        }
    );
    println!(
        "  steady {:.0} req/s (median 100 ms bucket {:.0}); mean {:.0} req/s; {} accepted",
        steady_rps,
        steady,
        total / elapsed.as_secs_f64(),
        total
    );
    println!(
        "  dip after an edit (lowest bucket in 500 ms / steady): worst {:.0}%, median {:.0}%",
        worst_dip * 100.0,
        median_dip * 100.0
    );
    println!(
        "  per edit: {}",
        dips.iter()
            .map(|d| format!("{:.0}%", d * 100.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  control (same statistic 1 s after each edit, no reload): worst {:.0}%, median {:.0}%",
        worst_control * 100.0,
        median_control * 100.0
    );
    println!(
        "  throughput of the 500 ms after an edit / steady: worst {:.0}%, median {:.0}% (control: worst {:.0}%)",
        worst_window * 100.0,
        median(&windows) * 100.0,
        worst_window_control * 100.0
    );
    println!(
        "  mean bucket / steady from -300 ms to +1 s around an edit: {}",
        profile
            .iter()
            .map(|d| format!("{:.0}", d * 100.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  save -> serving under load: median {:.1} ms, max {:.1} ms",
        median(&loaded_lat),
        loaded_lat.last().unwrap_or(&f64::NAN)
    );
    println!("  failed requests (non-202 or errors): {failed_n}");
    for f in failures.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("    {f}");
    }

    let report = json!({
        "bench": "reload",
        "debounce_ms": 100,
        "phase_a": {
            "edits": edits,
            "p50_ms": round1(a50),
            "p99_ms": round1(a99),
            "max_ms": round1(amax),
            "median_mapping_ms": round1(median(&per_target[0])),
            "median_script_ms": round1(median(&per_target[1])),
            "median_pipeline_ms": round1(median(&per_target[2])),
            "reload_alone_median_ms": round1(median(&direct)),
            "reload_alone_max_ms": round1(*direct.last().unwrap_or(&f64::NAN)),
        },
        "phase_b": {
            "connections": CONNECTIONS,
            "seconds": round1(elapsed.as_secs_f64()),
            "edits": edit_at.len(),
            "placebo": placebo,
            "accepted": total,
            "steady_rps": steady_rps.round(),
            "worst_dip_pct": round1(worst_dip * 100.0),
            "median_dip_pct": round1(median_dip * 100.0),
            "control_worst_pct": round1(worst_control * 100.0),
            "control_median_pct": round1(median_control * 100.0),
            "profile_pct_from_minus_300ms": profile.iter().map(|d| round1(d * 100.0)).collect::<Vec<_>>(),
            "dips_pct": dips.iter().map(|d| round1(d * 100.0)).collect::<Vec<_>>(),
            "window_pct": windows.iter().map(|d| round1(d * 100.0)).collect::<Vec<_>>(),
            "worst_window_pct": round1(worst_window * 100.0),
            "control_worst_window_pct": round1(worst_window_control * 100.0),
            "reload_under_load_median_ms": round1(median(&loaded_lat)),
            "reload_under_load_max_ms": round1(*loaded_lat.last().unwrap_or(&f64::NAN)),
            "failed": failed_n,
        },
        "targets": {
            "p50_under_300ms": a50 < 300.0,
            "dip_not_below_80pct": worst_dip >= 0.8,
            "window_not_below_80pct": worst_window >= 0.8,
            "no_failures": failed_n == 0,
        },
    });
    println!("{report}");
    drop(engine);
    Ok(())
}
